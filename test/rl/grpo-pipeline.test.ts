/**
 * Pipelined updates: grpoRun sends a step's update as soon as its batch is complete, even while the update of the step
 * before still runs; the trainer host runs them in order, so that the trainer starts the next step without waiting
 * for the workflow's round trip. Here updates are padded to UPDATE_SECONDS (longer than the step's rollouts take), so
 * with max_off_policy_steps 1 every batch is ready before the update before it ends: the updates go out pipelined and
 * the trainer is hardly ever idle. Synchronous RL (max_off_policy_steps 0) never pipelines: a batch needs the version
 * the update before produces. A host whose trainer takes one update at a time (FORGE_GRPO_PIPELINE_DEPTH=1, or a trainer
 * from before pipelining, which reports no depth) is never sent two.
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
  recordHistory,
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

const home = tempDir('forge-rl-pipe-');
const q = queues('test-rl-pipe');
const UPDATE_SECONDS = 1.5;

let client: Client;
let connection: Connection;
let served: Served;
const stops: InProcess<unknown>[] = [];
let pipelining: InProcess<unknown>;

beforeAll(async () => {
  ({ client, connection } = await testClient());
  const model = await tinyModel();
  served = await serveModel(model, path.join(home, 'serve.log'));
  stops.push(await startRunWorker(q, home));
  stops.push(await startRollout(rolloutEnv(q, served.url, home, 'r1')));
  stops.push(await startGrpo(grpoEnv(q, home, 'g1', { FORGE_GRPO_MIN_UPDATE_SECONDS: String(UPDATE_SECONDS) })));
  pipelining = stops.at(-1)!;
}, 60_000);

afterAll(async () => {
  for (const s of stops.reverse()) await s.stop();
  await served?.stop();
  await connection?.close();
});

async function run(jobId: string, steps: number, k: number) {
  const input = runInput({
    jobId,
    maxSteps: steps,
    model: await tinyModel(),
    rl: { max_off_policy_steps: k, prompts_per_step: 4 },
    settings: testSettings(q),
  });
  const handle = await startRun(client, q, input);
  const result = (await handle.result()) as GrpoRunResult;
  expect(result.steps).toBe(steps);
  expect(result.hostLosses).toBe(0);
  const lines = readSteps(readFileSync(path.join(result.outputDir, 'training_log.jsonl'), 'utf8'));
  expect(lines.map((l) => l.step)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
  expect(Math.max(...lines.map((l) => l.staleness_max))).toBeLessThanOrEqual(k);
  const recorded = await recordedVersions(client, handle.workflowId);
  if (k > 0) recordHistory('grpoRun-pipelined.json', handle.workflowId); // the pipelined path, for replay
  for (const u of recorded.updates) for (const v of u.versions) expect(u.step - 1 - v).toBeLessThanOrEqual(k);
  return { lines, recorded, workflowId: handle.workflowId };
}

test('with max_off_policy_steps 1 the next update is sent while one runs, and the trainer hardly waits', async () => {
  const STEPS = 8;
  const { lines, recorded } = await run('3b0f6c2e-8a41-4d7e-9c55-0e2d7b9f4a10', STEPS, 1);
  const pipelined = recorded.updates.filter((u) => u.pipelined).map((u) => u.step);
  console.log(`pipelined steps: ${pipelined.join(', ')}; idle ${lines.map((l) => l.trainer_idle_fraction.toFixed(2)).join(' ')}`);
  // Step 2's batch is dispatched with step 1's, and every later batch ~UPDATE_SECONDS before it is needed.
  expect(pipelined.length).toBeGreaterThanOrEqual(STEPS / 2);
  const steady = lines.slice(2);
  const idle = steady.reduce((s, l) => s + l.trainer_idle_fraction * l.step_seconds, 0) / steady.reduce((s, l) => s + l.step_seconds, 0);
  expect(idle).toBeLessThan(0.15);
}, 120_000);

test('with max_off_policy_steps 0 (synchronous) no update is ever pipelined', async () => {
  const { recorded, workflowId } = await run('3b0f6c2e-8a41-4d7e-9c55-0e2d7b9f4a11', 4, 0);
  expect(recorded.updates.filter((u) => u.pipelined)).toEqual([]);
  // The Web UI's view of the run: its current details and the summaries of its activity calls.
  const id = workflowId;
  const meta = await client.workflow.getHandle(id).query<{ currentDetails?: string | null }>('__temporal_workflow_metadata');
  expect(meta.currentDetails).toContain('| phase | done |');
  expect(meta.currentDetails).toMatch(/\| step \| 4 \/ 4, policy v4 \|/);
  expect(meta.currentDetails).toMatch(/\| reward \| -?\d+\.\d{3} ± \d+\.\d{3}, loss /);
  const events = (await client.workflow.getHandle(id).fetchHistory()).events ?? [];
  const summaries = events.flatMap((e) => (e.activityTaskScheduledEventAttributes && e.userMetadata?.summary?.data ? [JSON.parse(Buffer.from(e.userMetadata.summary.data).toString('utf8')) as string] : []));
  expect(summaries).toContain('acquire a trainer host for attempt 1');
  expect(summaries).toContainEqual(expect.stringMatching(/^rollout step 1 #0 \(.+\) with policy v\d+$/));
  expect(summaries).toContainEqual(expect.stringMatching(/^update the policy with step 4 on .+$/));
}, 120_000);

test('a host whose trainer takes one update at a time is never sent two', async () => {
  await pipelining.stop();
  stops.splice(stops.indexOf(pipelining), 1);
  stops.push(await startGrpo(grpoEnv(q, home, 'g2', { FORGE_GRPO_MIN_UPDATE_SECONDS: String(UPDATE_SECONDS), FORGE_GRPO_PIPELINE_DEPTH: '1' })));
  const { recorded } = await run('3b0f6c2e-8a41-4d7e-9c55-0e2d7b9f4a12', 4, 1);
  expect(recorded.updates.filter((u) => u.pipelined)).toEqual([]);
}, 120_000);
