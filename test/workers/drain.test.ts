/**
 * Graceful drain (issue 8): the orchestrator role, started through the image's entrypoint (dist/workers/main.js),
 * gets SIGTERM while it follows running trainers. It stops polling, hands its in-flight activities back to Temporal
 * (failed with WORKER_SHUTDOWN, so the server retries them at once), and exits 0 within its grace time. Another
 * worker takes over: every job completes on its first attempt, each trainer was started once, and nothing is lost.
 * Along the way: the Prometheus endpoint of Temporal's runtime telemetry and the health endpoint answer.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection, WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { JobStatus } from '../../workflows/messages';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, pollUntil, readStarts, startJob, tempDir, testClient, testConfig, waitForStatus } from '../helpers/forge';
import { freePort } from '../helpers/ports';
import { exited, spawnWorker as spawnOrchestrator } from '../helpers/processes';

const TQ = 'test-drain';
const home = tempDir('forge-drain-');
const starts = path.join(home, 'starts.log');
const configFile = path.join(home, 'config.json');
writeFileSync(configFile, JSON.stringify(testConfig({ local: { trainers: { ok: fakeTrainer('ok', 12) } } }, starts)));
const GRACE_SECONDS = 2;

function spawnWorker(extra: Record<string, string> = {}): ChildProcess {
  return spawnOrchestrator({
    home,
    configFile,
    taskQueue: TQ,
    env: { FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS), FORGE_WORKER_LOG_LEVEL: 'WARN', ...extra },
  });
}

function waitForHttp(url: string): Promise<string> {
  return pollUntil(async () => {
    try {
      const res = await fetch(url);
      const body = await res.text();
      return res.status === 200 ? body : undefined;
    } catch {
      return undefined; // not listening yet
    }
  }, `${url} answering 200`);
}

/** Until the job's followDeployment is running on a worker (not only scheduled: a loaded machine can lag). */
async function followStarted(handle: WorkflowHandle): Promise<void> {
  await pollUntil(async () => {
    const { raw } = await handle.describe();
    const started = (raw.pendingActivities ?? []).some(
      (a) => a.activityType?.name === 'followDeployment' && a.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
    );
    return started || undefined;
  }, `${handle.workflowId}: followDeployment started`);
}

let client: Client;
let connection: Connection;
const workers: ChildProcess[] = [];
beforeAll(async () => ({ client, connection } = await testClient()));
afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  await connection?.close();
});

test('SIGTERM drains: in-flight activities handed back, exit 0, another worker completes every job once', async () => {
  const [metricsPort, healthPort] = [await freePort(), await freePort()];
  const first = spawnWorker({ FORGE_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`, FORGE_HEALTH_ADDRESS: `127.0.0.1:${healthPort}` });
  workers.push(first);
  expect(await waitForHttp(`http://127.0.0.1:${healthPort}/readyz`)).toContain('RUNNING');

  const specs = [1, 2, 3].map(() => makeSignedSpec({ trainer: { image: 'ok' } }));
  const handles = await Promise.all(specs.map((s) => startJob(client, TQ, s)));
  await Promise.all(handles.map((h) => waitForStatus(h, (s) => s.state === 'RUNNING')));

  // Temporal's runtime telemetry, tagged with the role; the process's own metrics on the health port.
  const temporalMetrics = await waitForHttp(`http://127.0.0.1:${metricsPort}/metrics`);
  expect(temporalMetrics).toMatch(/temporal_worker_task_slots_available\{[^}]*forge_role="orchestrator"/);
  expect(temporalMetrics).toMatch(/temporal_activity_execution_latency|temporal_workflow_task_execution_latency/);
  const processMetrics = await waitForHttp(`http://127.0.0.1:${healthPort}/metrics`);
  expect(processMetrics).toMatch(/forge_worker_process_resident_memory_bytes\{forge_role="orchestrator"\} \d+/);
  expect(processMetrics).toContain('forge_worker_running{forge_role="orchestrator"} 1');

  // Every job's follow activity runs on this worker when the drain begins, so there is something to hand back.
  await Promise.all(handles.map((h) => followStarted(h)));
  const t0 = Date.now();
  first.kill('SIGTERM');
  await exited(first);
  const drainMs = Date.now() - t0;
  expect(first.signalCode).toBeNull();
  expect(first.exitCode).toBe(0);
  expect(drainMs).toBeLessThan((GRACE_SECONDS + 8) * 1000);
  // The trainers were not touched by the drain: they run in their own process groups.
  const before = readStarts(starts);
  expect(before).toHaveLength(3);

  const second = spawnWorker();
  workers.push(second);
  const results = (await Promise.all(handles.map((h) => h.result()))) as JobStatus[];
  expect(results.map((r) => r.state)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED']);
  for (const r of results) {
    expect(r.attempt).toBe(1);
    expect(r.errors).toEqual([]);
  }
  const lines = readStarts(starts);
  for (const s of specs) expect(lines.filter((l) => l.job === s.job_id)).toHaveLength(1);

  // What the drain looked like in history: a follow activity in flight failed with WORKER_SHUTDOWN and was retried
  // (any of the three jobs: one may have been between two follow activities at that instant, its follow having
  // returned on a progress change).
  const events = (await Promise.all(handles.map((h) => h.fetchHistory()))).flatMap((h) => h.events ?? []);
  const failures = events.filter((e) => e.activityTaskFailedEventAttributes);
  const handedBack = events.some(
    (e) => e.activityTaskStartedEventAttributes?.lastFailure?.message?.includes('WORKER_SHUTDOWN') || (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1,
  );
  expect(failures).toHaveLength(0); // a retried activity records only its last outcome
  expect(handedBack).toBe(true);

  second.kill('SIGTERM');
  await exited(second);
  expect(second.exitCode).toBe(0);
  expect(readFileSync(path.join(home, 'worker.log'), 'utf8')).not.toMatch(/Error|unhandled/i);
}, 120_000);

test('a worker whose queued jobs were woken for their slot exits at once on SIGTERM: no admission poll timer outlives its wait', async () => {
  // max_concurrent 1 and a 60 s admission poll: the jobs far back sleep 60 s, and each is woken early when the job
  // before it releases the slot. A woken wait's timer must go with it, or it holds the stopping process for up to 60 s.
  const queue = `${TQ}-woken`;
  const file = path.join(home, 'config-woken.json');
  const capped = { max_concurrent: 1, trainers: { ok: fakeTrainer('ok', 0.5) } };
  writeFileSync(file, JSON.stringify(testConfig({ capped }, undefined, { admission_poll_seconds: 60 })));
  const env = { FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS) };
  const worker = spawnOrchestrator({ home, configFile: file, taskQueue: queue, env });
  workers.push(worker);
  const specs = Array.from({ length: 6 }, () => makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'capped' } }));
  const handles = await Promise.all(specs.map((s) => startJob(client, queue, s)));
  const results = (await Promise.all(handles.map((h) => h.result()))) as JobStatus[];
  expect(results.map((r) => r.state)).toEqual(specs.map(() => 'COMPLETED'));
  const t0 = Date.now();
  worker.kill('SIGTERM');
  await exited(worker);
  expect(worker.exitCode).toBe(0);
  expect(Date.now() - t0).toBeLessThan((GRACE_SECONDS + 8) * 1000);
}, 120_000);
