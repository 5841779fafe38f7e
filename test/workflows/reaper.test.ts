/**
 * The reaper against a real dev server and real processes: the trainer of a job whose workflow an operator
 * TERMINATED keeps running (nothing in the workflow can close it) until one reaper run kills its process group,
 * while a running job's current deployment is left alone; the `forge-reaper` schedule is made idempotently.
 */
import { ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { liveGroupMembers } from '../../activities/backends/local/local-process';
import { reaperRegistry } from '../../activities/reaper-metrics';
import type { ReapReport } from '../../activities/reaper';
import { ensureReaperSchedule } from '../../infra/reaper-schedule';
import { REAPER_SCHEDULE_ID, WORKFLOW_TYPE_REAPER } from '../../common/names';
import { startHealthServer } from '../../workers/runtime';
import { makeSignedSpec } from '../jobspec/fixtures';
import { requireBuilt } from '../helpers/cli';
import { pollUntil, processAlive, readStarts, startJob, waitForStatus } from '../helpers/forge';
import { useReaperForge } from '../helpers/reaper';
import { recordHistory } from '../rl/harness';

const TQ = 'test-reaper';
const reaper = useReaperForge(TQ, 'forge-reaper-');
const { starts, forge, cfReap } = reaper;

async function runningJob(client: Client) {
  const spec = makeSignedSpec({ trainer: { image: 'slow' } });
  const handle = await startJob(client, TQ, spec);
  const status = await waitForStatus(handle, (s) => s.state === 'RUNNING' && !!s.deployments[0]?.progress);
  const pid = readStarts(starts).find((x) => x.job === spec.job_id)?.pid;
  const pgid = status.deployments[0]!.ref.data.pid;
  if (pid === undefined || typeof pgid !== 'number') throw new Error('no trainer pid / process group recorded');
  expect(processAlive(pid)).toBe(true);
  return { spec, handle, pid, pgid };
}

function reap(client: Client, dryRun = false, workflowId = `${REAPER_SCHEDULE_ID}-test-${Date.now()}`): Promise<ReapReport> {
  return client.workflow.execute(WORKFLOW_TYPE_REAPER, { taskQueue: TQ, workflowId, args: [{ dryRun }] });
}

test("one reaper run kills the trainer of a terminated workflow and leaves a running job's deployment alone", async () => {
  const client = forge.client;
  const orphan = await runningJob(client);
  const live = await runningJob(client);
  await orphan.handle.terminate('an operator ends it by hand');
  // Terminating runs no workflow code: the trainer runs on, nobody will close it.
  await new Promise((r) => setTimeout(r, 500));
  expect(processAlive(orphan.pid)).toBe(true);

  // A dry run lists and decides, and closes nothing.
  const dry = await reap(client, true);
  const dryItem = dry.items.find((i) => i.open.jobId === orphan.spec.job_id);
  expect(dryItem?.decision).toMatchObject({ reap: true, reason: 'job-closed' });
  expect(dryItem?.decision.why).toContain('TERMINATED');
  expect(dry.reaped).toBe(0);
  expect(processAlive(orphan.pid)).toBe(true);

  const reapId = `${REAPER_SCHEDULE_ID}-test-reaped-${Date.now()}`;
  const report = await reap(client, false, reapId);
  recordHistory('forgeReaper-reaped.json', reapId); // RECORD_HISTORIES=1: for test/workflows/replay.test.ts
  const reaped = report.items.find((i) => i.open.jobId === orphan.spec.job_id);
  const kept = report.items.find((i) => i.open.jobId === live.spec.job_id);
  expect(reaped).toMatchObject({ closed: true, decision: { reap: true, reason: 'job-closed' } });
  expect(kept?.decision).toMatchObject({ reap: false, reason: 'current' });
  expect(report.backends).toEqual([{ backend: 'local', kind: 'local', open: 2 }]);
  expect(report).toMatchObject({ reaped: 1, errors: 0 });
  expect(processAlive(orphan.pid)).toBe(false);
  expect(liveGroupMembers(orphan.pgid)).toEqual([]);
  expect(processAlive(live.pid)).toBe(true);
  expect((await live.handle.query<{ state: string }>('status')).state).toBe('RUNNING');

  // Counted on the worker's /metrics (FORGE_HEALTH_ADDRESS), next to its process metrics.
  const health = await startHealthServer('orchestrator', '127.0.0.1:0', { getState: () => 'RUNNING' }, [reaperRegistry]);
  try {
    const metrics = await (await fetch(`${health.url}/metrics`)).text();
    expect(metrics).toContain('forge_reaper_deployments_reaped_total{backend="local",reason="job-closed"} 1');
    expect(metrics).toMatch(/forge_reaper_last_run_timestamp_seconds \d+/);
    expect(metrics).toContain('forge_worker_running{forge_role="orchestrator"} 1');
  } finally {
    await health.close();
  }

  // A second run finds only the live job's deployment.
  const again = await reap(client);
  expect(again.items.map((i) => i.open.jobId)).toEqual([live.spec.job_id]);
  expect(again.reaped).toBe(0);

  await live.handle.cancel();
  await expect(live.handle.result()).rejects.toThrow();
  expect(processAlive(live.pid)).toBe(false);
}, 60_000);

test('the forge-reaper schedule is created once, left as it is, updated when the config changes; cf-reap triggers it', async () => {
  requireBuilt(['shared/command', 'cf-reap']);
  const client = forge.client;
  const options = { reaper: { enabled: true, interval_seconds: 300, grace_seconds: 120 }, taskQueue: TQ };
  try {
    await client.schedule.getHandle(REAPER_SCHEDULE_ID).delete().catch(() => undefined);
    expect(await ensureReaperSchedule(client, options)).toBe('created');
    expect(await ensureReaperSchedule(client, options)).toBe('unchanged');
    let d = await client.schedule.getHandle(REAPER_SCHEDULE_ID).describe();
    expect(d.spec.intervals).toEqual([expect.objectContaining({ every: 300_000 })]);
    expect(d.action).toMatchObject({ workflowType: WORKFLOW_TYPE_REAPER, taskQueue: TQ });
    expect(d.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
    expect(d.state.paused).toBe(false);

    // cf-reap (without --dry-run) triggers it: a worker's run closes a trainer whose job never existed.
    const { pid } = await reaper.orphanTrainer();
    const triggered = await cfReap([]);
    expect(triggered).toMatchObject({ code: 0, stderr: '' });
    expect(triggered.stdout).toMatch(/^triggered schedule forge-reaper/);
    await pollUntil(async () => (processAlive(pid) ? undefined : true), 'the triggered reaper run closed the orphan');

    expect(await ensureReaperSchedule(client, { ...options, reaper: { ...options.reaper, interval_seconds: 120 } })).toBe('updated');
    d = await client.schedule.getHandle(REAPER_SCHEDULE_ID).describe();
    expect(d.spec.intervals).toEqual([expect.objectContaining({ every: 120_000 })]);
    expect(await ensureReaperSchedule(client, { ...options, reaper: { ...options.reaper, interval_seconds: 120, enabled: false } })).toBe('updated');
    expect((await client.schedule.getHandle(REAPER_SCHEDULE_ID).describe()).state.paused).toBe(true);
  } finally {
    await client.schedule.getHandle(REAPER_SCHEDULE_ID).delete().catch(() => undefined);
  }
  const none = await cfReap([]);
  expect(none.code).toBe(4);
  expect(none.stderr).toMatch(/no schedule "forge-reaper" in namespace default: run the setup role or npm start/);
}, 60_000);
