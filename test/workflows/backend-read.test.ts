/**
 * The read entity (workflows/backend-read.ts) against the real dev server: the API's reader gets a real job's logs and
 * the backend's health through it, answered by the orchestrator worker's companion; the entity continues as new and
 * ends when idle without losing a read; with no worker polling, health says what to start.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { findTemporalCli } from '../../infra/dev-server';
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

test('with no worker polling the read queue, health says which worker to start, within the timeout', async () => {
  const lonely = new EntityBackendReader('local', 'local', { client: forge.client, taskQueue: `${TQ}-nobody`, timeoutMs: 1500 });
  const started = Date.now();
  const report = await lonely.health();
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(report).toMatchObject({ ok: false, detail: expect.stringMatching(/^backend local: .* — if no orchestrator worker reads this backend, start one .*polling test-backend-read-nobody-read$/) });
  await forge.client.workflow.getHandle(backendReadWorkflowId('local', `${TQ}-nobody`)).terminate('test over');
}, 30_000);
