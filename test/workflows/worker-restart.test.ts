/**
 * The orchestrator worker is a separate process, killed with SIGKILL mid-job and started again: every job
 * completes, with exactly one trainer process per attempt (submission is idempotent).
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import type { JobStatus } from '../../workflows/messages';
import { makeSignedSpec } from '../jobspec/fixtures';
import { exited, spawnWorker as spawnOrchestrator } from '../helpers/processes';
import { fakeTrainer, readStarts, startJob, tempDir, testClient, testConfig, waitForStatus } from '../helpers/forge';

const TQ = 'test-worker-restart';
const home = tempDir('forge-restart-');
const starts = path.join(home, 'starts.log');
const configFile = path.join(home, 'config.json');
writeFileSync(configFile, JSON.stringify(testConfig({ local: { trainers: { ok: fakeTrainer('ok', 4), fast: fakeTrainer('ok', 0.5) } } }, starts)));

function spawnWorker(): ChildProcess {
  return spawnOrchestrator({ home, configFile, taskQueue: TQ });
}

let client: Client;
let connection: Connection;
let worker: ChildProcess | undefined;
beforeAll(async () => ({ client, connection } = await testClient()));
afterAll(async () => {
  worker?.kill('SIGKILL');
  await connection?.close();
});

test('kill -9 of the worker mid-job: jobs complete, one trainer process per attempt', async () => {
  worker = spawnWorker();
  const specs = [makeSignedSpec({ trainer: { image: 'ok' } }), makeSignedSpec({ trainer: { image: 'ok' } })];
  const handles = await Promise.all(specs.map((s) => startJob(client, TQ, s)));
  await Promise.all(handles.map((h) => waitForStatus(h, (s) => s.state === 'RUNNING')));

  worker.kill('SIGKILL');
  await exited(worker);
  // A job submitted while no worker runs waits in Temporal, then runs.
  const late = makeSignedSpec({ trainer: { image: 'fast' } });
  handles.push(await startJob(client, TQ, late));
  specs.push(late);
  await new Promise((r) => setTimeout(r, 1500));
  worker = spawnWorker();

  const results = (await Promise.all(handles.map((h) => h.result()))) as JobStatus[];
  expect(results.map((r) => r.state)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED']);
  for (const r of results) expect(r.attempt).toBe(1);
  const lines = readStarts(starts);
  for (const s of specs) expect(lines.filter((l) => l.job === s.job_id)).toHaveLength(1);

  worker.kill('SIGTERM');
  await exited(worker);
  expect(worker.exitCode).toBe(0);
}, 120_000);
