/**
 * A tiny model learns the toy task (reverse a word of letters a–h) by GRPO through the real pieces: grpoRun on
 * Temporal, rollout activities against the reference trainer's inference server, the grpo-server trainer host,
 * rewards from the eval suite's checker (with partial credit by similarity). Fixed seeds; asynchronous with
 * max_off_policy_steps 1. Checks: the mean reward of the last steps is clearly above the first; no update ever used a
 * rollout older than the bound (from the versions the history recorded, and from the trainer's log); the run's
 * outputs carry every step's metrics.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
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

const home = tempDir('forge-rl-learn-');
const q = queues('test-rl-learn');
const STEPS = 30;
const K = 1;
const KEYS = ['step', 'policy_version', 'reward_mean', 'reward_std', 'loss', 'kl', 'staleness_mean', 'staleness_max', 'trainer_idle_fraction', 'rollout_tokens_per_s', 'step_seconds'];

let client: Client;
let connection: Connection;
let served: Served;
const stops: InProcess<unknown>[] = [];

beforeAll(async () => {
  ({ client, connection } = await testClient());
  const model = await tinyModel();
  served = await serveModel(model, path.join(home, 'serve.log'));
  stops.push(await startRunWorker(q, home));
  stops.push(await startRollout(rolloutEnv(q, served.url, home, 'r1')));
  stops.push(await startGrpo(grpoEnv(q, home, 'g1')));
}, 60_000);

afterAll(async () => {
  for (const s of stops.reverse()) await s.stop();
  await served?.stop();
  await connection?.close();
});

test('reward rises, staleness stays within max_off_policy_steps, every step is logged', async () => {
  const jobId = '7d0c5d1e-0b7a-4a57-9e4c-1e0f6a3b2c01';
  const input = runInput({ jobId, maxSteps: STEPS, model: await tinyModel(), rl: { max_off_policy_steps: K }, settings: testSettings(q), checkpointInterval: 10 });
  const handle = await startRun(client, q, input);
  const result = (await handle.result()) as GrpoRunResult;
  expect(result.steps).toBe(STEPS);
  expect(result.policy.version).toBe(STEPS);
  expect(result.hostLosses).toBe(0);

  const steps = readSteps(readFileSync(path.join(result.outputDir, 'training_log.jsonl'), 'utf8'));
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
  // Asynchronous: some updates did use a rollout one version old (the pipeline overlapped).
  expect(recorded.updates.some((u) => u.versions.some((v) => u.step - 1 - v === 1))).toBe(true);

  const status = await handle.query('status');
  expect(status).toMatchObject({ phase: 'done', policy_version: STEPS, latest: { step: STEPS } });
  const files = result.files.map((f) => f.path);
  expect(files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'training_log.jsonl', 'metrics.json']));
});
