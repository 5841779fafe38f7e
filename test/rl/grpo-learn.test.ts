/**
 * A tiny model learns the toy task (reverse a word of letters a–h) by GRPO through the real pieces: grpoRun on
 * Temporal, rollout activities against the reference trainer's inference server, the grpo-server trainer host,
 * rewards from the eval suite's checker (with partial credit by similarity). Fixed seeds; asynchronous with
 * max_off_policy_steps 1. Checks: the mean reward of the last steps is clearly above the first; no update ever used a
 * rollout older than the bound (from the versions the history recorded, and from the trainer's log); the run's
 * outputs carry every step's metrics. With an MQTT broker on 127.0.0.1:1883 (Mosquitto; .ci/run starts it), the run
 * also announces every policy version on forge/jobs/<job_id>/policy (Tashi coordination), and the rollout worker
 * prefetches announced weights before its activities ask for them.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import mqtt, { type MqttClient } from 'mqtt';
import { policyTopic } from '../../activities/rl/policy-bus';
import type { RolloutWorker } from '../../workers/rollout';
import type { GrpoRunResult } from '../../workflows/grpo-run';
import { tempDir } from '../helpers/forge';
import {
  grpoEnv,
  queues,
  readSteps,
  rolloutEnv,
  runInput,
  serveModel,
  startGrpo,
  startRollout,
  startRun,
  startRunWorker,
  testClient,
  testSettings,
  tinyModel,
  type InProcess,
  type Served,
} from './harness';
import { recordedVersions } from './history';

const MQTT_URL = process.env.FORGE_TEST_MQTT_URL ?? 'mqtt://127.0.0.1:1883';

/** Whether the broker answers (checked once, synchronously, so that the MQTT test can be skipped by name). */
function brokerUp(url: string): boolean {
  const { hostname, port } = new URL(url);
  const probe = `const s=require('net').connect(${Number(port) || 1883},'${hostname}');s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1));setTimeout(()=>process.exit(1),2000)`;
  try {
    execFileSync(process.execPath, ['-e', probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const MQTT = brokerUp(MQTT_URL);
if (!MQTT) console.warn(`MQTT test skipped: no MQTT broker at ${MQTT_URL} (install mosquitto; .ci/run starts it, or set FORGE_TEST_MQTT_URL)`);

const home = tempDir('forge-rl-learn-');
const q = queues('test-rl-learn');
const STEPS = 30;
const K = 1;
const KEYS = ['step', 'policy_version', 'reward_mean', 'reward_std', 'loss', 'kl', 'staleness_mean', 'staleness_max', 'trainer_idle_fraction', 'rollout_tokens_per_s', 'step_seconds'];

let client: Client;
let connection: Connection;
let served: Served;
const stops: InProcess<unknown>[] = [];
const JOB = '7d0c5d1e-0b7a-4a57-9e4c-1e0f6a3b2c01';
let rollout: InProcess<RolloutWorker>;
let subscriber: MqttClient | undefined;
const announced: { retain: boolean; payload: string }[] = [];
let logged: { step: number; sha256: string }[] = [];

beforeAll(async () => {
  ({ client, connection } = await testClient());
  const model = await tinyModel();
  served = await serveModel(model, path.join(home, 'serve.log'));
  const mqttEnv: Record<string, string> = MQTT ? { FORGE_MQTT_URL: MQTT_URL } : {};
  if (MQTT) {
    subscriber = await mqtt.connectAsync(MQTT_URL, { protocolVersion: 5, clientId: `forge-test-${process.pid}` });
    subscriber.on('message', (_topic, payload, packet) => announced.push({ retain: packet.retain, payload: payload.toString('utf8') }));
    await subscriber.subscribeAsync(policyTopic(JOB), { qos: 1 });
  }
  stops.push(await startRunWorker(q, home));
  rollout = await startRollout(rolloutEnv(q, served.url, home, 'r1', mqttEnv));
  stops.push(rollout);
  stops.push(await startGrpo(grpoEnv(q, home, 'g1', mqttEnv)));
}, 60_000);

afterAll(async () => {
  for (const s of stops.reverse()) await s.stop();
  await served?.stop();
  await subscriber?.endAsync();
  await connection?.close();
});

test('reward rises, staleness stays within max_off_policy_steps, every step is logged', async () => {
  const input = runInput({
    jobId: JOB,
    maxSteps: STEPS,
    model: await tinyModel(),
    rl: { max_off_policy_steps: K },
    settings: testSettings(q),
    checkpointInterval: 10,
  });
  const handle = await startRun(client, q, input);
  const result = (await handle.result()) as GrpoRunResult;
  expect(result.steps).toBe(STEPS);
  expect(result.policy.version).toBe(STEPS);
  expect(result.hostLosses).toBe(0);

  const steps = readSteps(readFileSync(path.join(result.outputDir, 'training_log.jsonl'), 'utf8'));
  logged = steps.map((s) => ({ step: s.step, sha256: (s as unknown as { sha256: string }).sha256 }));
  expect(steps.map((s) => s.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
  for (const s of steps) for (const k of KEYS) expect(s).toHaveProperty(k);
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const first = mean(steps.slice(0, 5).map((s) => s.reward_mean));
  const last = mean(steps.slice(-5).map((s) => s.reward_mean));
  console.log(`reward: first 5 steps ${first.toFixed(3)}, last 5 ${last.toFixed(3)}; idle ${mean(steps.map((s) => s.trainer_idle_fraction)).toFixed(2)}`);
  expect(last).toBeGreaterThan(first + 0.04);
  expect(last).toBeGreaterThan(first * 1.5);

  // Bounded staleness, from the trainer's log and from the versions the workflow history recorded.
  expect(Math.max(...steps.map((s) => s.staleness_max))).toBeLessThanOrEqual(K);
  const recorded = await recordedVersions(client, handle.workflowId);
  expect(recorded.updates.map((u) => u.step)).toEqual(steps.map((s) => s.step));
  for (const u of recorded.updates) for (const v of u.versions) expect(u.step - 1 - v).toBeLessThanOrEqual(K);
  // Rollout ids: one per dispatch, each ending in a random part the workflow drew (nobody can upload under it first).
  const ids = recorded.rollouts.map((r) => r.rolloutId);
  expect(new Set(ids).size).toBe(ids.length);
  for (const id of ids) expect(id).toMatch(/^job-.+-grpo-1\.s\d+\.p\d+\.v\d+\.[0-9a-f]{20}$/);
  expect(new Set(ids.map((id) => id.slice(-20))).size).toBe(ids.length);
  // Asynchronous: some updates did use a rollout one version old (the pipeline overlapped).
  expect(recorded.updates.some((u) => u.versions.some((v) => u.step - 1 - v === 1))).toBe(true);

  const status = await handle.query('status');
  expect(status).toMatchObject({ phase: 'done', policy_version: STEPS, latest: { step: STEPS } });
  // An honest worker: the trainer host's re-scoring (the eval suite's checker) agrees with every reward it reported.
  expect(status).toMatchObject({ rejected_rollouts: [] });
  const files = result.files.map((f) => f.path);
  expect(files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'training_log.jsonl', 'metrics.json']));
});

(MQTT ? test : test.skip)('Tashi coordination: every version is announced retained over MQTT 5, and rollout workers prefetch it', async () => {
  expect(logged).toHaveLength(STEPS);
  const messages = announced
    .filter((m) => m.payload.length > 0)
    .map((m) => JSON.parse(m.payload) as { job_id: string; version: number; sha256: string; url: string });
  const byVersion = new Map(messages.map((m) => [m.version, m]));
  for (const line of logged) expect(byVersion.get(line.step)).toMatchObject({ job_id: JOB, version: line.step, sha256: line.sha256 });
  expect(byVersion.get(0)?.url).toMatch(/\/v1\/policy\/0\/model\.safetensors$/);
  // The run's end clears the retained announcement (an empty retained message).
  expect(announced.at(-1)?.payload).toBe('');
  // Weights the rollout worker fetched because of an announcement, before an activity asked for them.
  expect(rollout.value.prefetched().length).toBeGreaterThan(0);
});
