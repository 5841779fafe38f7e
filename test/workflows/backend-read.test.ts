/**
 * The read entity (workflows/backend-read.ts) against the real dev server: the API's reader gets a real job's logs and
 * the backend's health through it, answered by the orchestrator worker's companion; the entity continues as new and
 * ends when idle without losing a read; with no worker polling, a read says what to start, and with a worker that hangs,
 * it names that worker.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { findTemporalCli } from '../../infra/dev-server';
import { createBackendReadActivities } from '../../activities/backends/read-activities';
import type { BackendReader } from '../../activities/backends/types';
import { EntityBackendReader } from '../../client/api/backend-readers';
import { backendReadTaskQueue, backendReadWorkflowId } from '../../common/names';
import type { JobStatus } from '../../workflows/messages';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, pollUntil, runJob, tempDir, temporalAddress, testConfig, useForge } from '../helpers/forge';

const TQ = 'test-backend-read';
const forge = useForge(testConfig({ local: { trainers: { ok: fakeTrainer('ok', 0) } } }), tempDir('forge-read-'), TQ);

const reader = (backend = 'local', timeoutMs = 15_000): EntityBackendReader => new EntityBackendReader(backend, 'local', { client: forge.client, taskQueue: TQ, timeoutMs });

test("a job's logs and the backend's health come through the entity; it continues as new without losing a read", async () => {
  const spec = makeSignedSpec({ trainer: { image: 'ok' } });
  const status: JobStatus = await runJob(forge.client, TQ, spec);
  expect(status.state).toBe('COMPLETED');
  const ref = status.deployments[0]!.ref;

  // A run that continues as new after 3 reads (the API starts it with the defaults; this one is started first).
  const id = backendReadWorkflowId('local', TQ);
  await forge.client.workflow.start('backendRead', { taskQueue: backendReadTaskQueue(TQ), workflowId: id, args: [{ backend: 'local', continueAfterReads: 3 }] });
  const firstRun = (await forge.client.workflow.getHandle(id).describe()).runId;

  const r = reader();
  expect(await r.health()).toMatchObject({ ok: true });
  const page = await r.logs(ref);
  expect(page.lines.length).toBeGreaterThan(0);
  expect(page.lines.some((l) => l.line.includes('"event"'))).toBe(true);
  // Eight reads at once, across the continue-as-new: every one answered, in order per reader.
  const again = await Promise.all(Array.from({ length: 8 }, () => r.logs(ref)));
  for (const p of again) expect(p).toEqual(page);
  const events = await r.eventLines(ref);
  expect(events.lines.length).toBeGreaterThan(0);
  expect(events.lines.every((l) => l.stream === 'stdout' && l.line.startsWith('{'))).toBe(true);
  expect((await r.eventLines(ref, events.cursor)).lines).toEqual([]); // the end of the log: nothing more, same cursor

  await pollUntil(async () => ((await forge.client.workflow.getHandle(id).describe()).runId !== firstRun ? true : undefined), 'a new run');
  // A run with reads, refusals while closing and its continue-as-new, for test/workflows/replay.test.ts.
  const recorded = path.resolve(__dirname, '..', 'histories', 'backendRead-continued.json');
  if (process.env.RECORD_HISTORIES && !existsSync(recorded)) {
    writeFileSync(recorded, execFileSync(findTemporalCli(), ['workflow', 'show', '--address', temporalAddress(), '-w', id, '-r', firstRun, '-o', 'json']));
  }
  // A read the worker refuses: its answer, named, not retried.
  await expect(reader('nowhere').logs(ref)).rejects.toThrow(/^backend nowhere: backend "nowhere" is not configured on this orchestrator worker/);
}, 90_000);

test('ends when idle and is started again by the next read; an unknown backend is named with what is configured', async () => {
  const id = backendReadWorkflowId('local', `${TQ}-idle`);
  // An entity of its own (another id), idle after 1.2 s.
  const handle = await forge.client.workflow.start('backendRead', { taskQueue: backendReadTaskQueue(TQ), workflowId: id, args: [{ backend: 'local', idleMinutes: 0.02 }] });
  await pollUntil(async () => ((await handle.describe()).status.name === 'COMPLETED' ? true : undefined), 'the idle entity ending', 20_000);
  const recorded = path.resolve(__dirname, '..', 'histories', 'backendRead-idle-end.json');
  if (process.env.RECORD_HISTORIES && !existsSync(recorded)) {
    writeFileSync(recorded, execFileSync(findTemporalCli(), ['workflow', 'show', '--address', temporalAddress(), '-w', id, '-r', handle.firstExecutionRunId, '-o', 'json']));
  }
  expect(await reader().health()).toMatchObject({ ok: true }); // the default entity starts again on demand

  const unknown = await reader('nowhere').health();
  expect(unknown).toMatchObject({ ok: false, detail: expect.stringMatching(/backend "nowhere" is not configured on this orchestrator worker; configured: local/) });
}, 60_000);

test('with no worker polling the read queue, a read says which worker to start, within the timeout', async () => {
  const lonely = new EntityBackendReader('local', 'local', { client: forge.client, taskQueue: `${TQ}-nobody`, timeoutMs: 1500 });
  const started = Date.now();
  const report = await lonely.health();
  expect(Date.now() - started).toBeLessThan(10_000);
  // A health read waits a second past the timeout (the API's route reports its own timeout first).
  const nobody = (ms: number): RegExp =>
    new RegExp(`^backend local: no answer within ${ms} ms — no orchestrator worker polls test-backend-read-nobody-read: start one \\(npm start, or the orchestrator role\\) with backend "local" in its FORGE_CONFIG$`);
  expect(report).toMatchObject({ ok: false, detail: expect.stringMatching(nobody(2500)) });
  const ref = { backend: 'local', kind: 'local', id: 'x', jobId: 'j', attempt: 1, submittedAt: new Date(0).toISOString(), data: {} };
  await expect(lonely.logs(ref)).rejects.toThrow(nobody(1500));
  await forge.client.workflow.getHandle(backendReadWorkflowId('local', `${TQ}-nobody`)).terminate('test over');
}, 30_000);

test('a worker that polls but hangs on the backend is named, so the reader looks at it rather than starting another', async () => {
  const queue = `${TQ}-stuck`;
  const connection = await NativeConnection.connect({ address: temporalAddress() });
  const never = (): Promise<never> => new Promise(() => undefined);
  const hanging: BackendReader = { name: 'local', kind: 'local', health: never, logs: never, collectArtifacts: never };
  const worker = await Worker.create({
    connection,
    taskQueue: backendReadTaskQueue(queue),
    identity: 'stuck-orchestrator-read',
    workflowBundle: { codePath: process.env.FORGE_TEST_WORKFLOW_BUNDLE! },
    // The hanging read ends when the worker shuts down (the activity's cancellation), as in production.
    activities: createBackendReadActivities(new Map([['local', hanging]])),
  });
  const running = worker.run();
  try {
    const stuck = new EntityBackendReader('local', 'local', { client: forge.client, taskQueue: queue, timeoutMs: 2000 });
    const report = await stuck.health();
    expect(report).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/^backend local: no answer within 3000 ms — the orchestrator worker polling test-backend-read-stuck-read \(stuck-orchestrator-read\) is up but did not answer: the backend's call is slow or hangs there/),
    });
  } finally {
    await forge.client.workflow.getHandle(backendReadWorkflowId('local', queue)).terminate('test over');
    worker.shutdown();
    await running;
    await connection.close();
  }
}, 60_000);
