/**
 * Continue-as-new in a long run, triggered the real way: this file starts its own Temporal dev server whose
 * `limit.historyCount.suggestContinueAsNew` is low, so that Temporal suggests continue-as-new every few steps.
 * grpoRun drains its pipeline and continues under the same workflow id with its state: the same trainer session
 * (no second acquire), the version, the step count; the staleness bound holds across runs and the training log
 * has exactly one line per step.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { devServerArgs, findTemporalCli, waitForTemporal } from '../../infra/dev-server';
import type { GrpoRunResult } from '../../workflows/grpo-run';
import { tempDir } from '../helpers/forge';
import { freePort } from '../helpers/ports';
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

const home = tempDir('forge-rl-can-');
const q = queues('test-rl-can');
const STEPS = 16;
/** About five steps of grpoRun history (8 rollouts a step). */
const SUGGEST_AFTER_EVENTS = 250;

let server: ChildProcess;
let address: string;
let client: Client;
let connection: Connection;
let served: Served;
const stops: InProcess<unknown>[] = [];

beforeAll(async () => {
  const port = await freePort();
  const log = openSync(path.join(home, 'temporal.log'), 'a');
  const args = [...devServerArgs({ port, logFile: '' }), '--dynamic-config-value', `limit.historyCount.suggestContinueAsNew=${SUGGEST_AFTER_EVENTS}`];
  server = spawn(findTemporalCli(), args, { stdio: ['ignore', log, log] });
  address = `127.0.0.1:${port}`;
  const [model] = await Promise.all([tinyModel(), waitForTemporal(address, 60_000)]);
  ({ client, connection } = await testClient(address));
  served = await serveModel(model, path.join(home, 'serve.log'));
  stops.push(await startRunWorker(q, home, address));
  stops.push(await startRollout(rolloutEnv(q, served.url, home, 'r1'), address));
  stops.push(await startGrpo(grpoEnv(q, home, 'g1'), address));
}, 90_000);

afterAll(async () => {
  for (const s of stops.reverse()) await s.stop();
  await served?.stop();
  await connection?.close();
  server?.kill('SIGTERM');
});

test('Temporal suggests continue-as-new; the run continues with its state and finishes on the same session', async () => {
  const input = runInput({ jobId: '5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9', maxSteps: STEPS, model: await tinyModel(), settings: testSettings(q), checkpointInterval: 100 });
  const handle = await startRun(client, q, input);
  const result = (await handle.result()) as GrpoRunResult;
  expect(result.runs).toBeGreaterThanOrEqual(2);
  expect(result.steps).toBe(STEPS);
  expect(result.hostLosses).toBe(0);
  expect(result.stepsRedone).toBe(0);

  const recorded = await recordedVersions(client, handle.workflowId);
  expect(recorded.runs).toBe(result.runs + 1);
  expect(recorded.updates.map((u) => u.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
  for (const u of recorded.updates) for (const v of u.versions) expect(u.step - 1 - v).toBeLessThanOrEqual(1);

  // One acquire in the whole chain: the session's lease was carried.
  let acquires = 0;
  let runId: string | undefined = (await handle.describe()).runId;
  while (runId) {
    const history = await client.workflow.getHandle(handle.workflowId, runId).fetchHistory();
    let previous: string | undefined;
    for (const e of history.events ?? []) {
      if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'acquireTrainerHost') acquires++;
      previous = e.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? previous;
    }
    runId = previous;
  }
  expect(acquires).toBe(1);

  const steps = readSteps(readFileSync(path.join(result.outputDir, 'training_log.jsonl'), 'utf8'));
  expect(steps.map((s) => s.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
});
