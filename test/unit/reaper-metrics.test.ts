/** The reaper's counts on the worker's /metrics: reaped by backend and reason, close and listing errors, last run. */
import { reaperRegistry, recordReaperRun } from '../../activities/reaper-metrics';
import type { OpenDeployment } from '../../activities/backends/types';
import type { ReapReport } from '../../workflows/reaper-decide';

function open(backend: string, id: string): OpenDeployment {
  const createdAt = '2026-01-01T00:00:00.000Z';
  return { ref: { backend, kind: backend, id, jobId: 'j', attempt: 1, submittedAt: createdAt, data: {} }, jobId: 'j', attempt: 1, createdAt };
}

test('a run is counted once: reaped per backend and reason, failed closes, failed listings, kept, last run', async () => {
  const report: ReapReport = {
    startedAt: '2026-01-01T12:00:00.000Z',
    dryRun: false,
    graceSeconds: 120,
    backends: [
      { backend: 'local', kind: 'local', open: 3 },
      { backend: 'pi', kind: 'prime-intellect', open: 0, error: 'Prime Intellect unreachable' },
    ],
    items: [
      { open: open('local', 'a'), decision: { reap: true, reason: 'job-closed', why: 'TERMINATED' }, closed: true },
      { open: open('local', 'b'), decision: { reap: true, reason: 'job-not-found', why: 'none' }, closed: false, error: 'EPERM' },
      { open: open('local', 'c'), decision: { reap: false, reason: 'current', why: 'runs' } },
    ],
    reaped: 1,
    kept: 1,
    errors: 2,
  };
  recordReaperRun(report);
  const text = await reaperRegistry.metrics();
  expect(text).toContain('forge_reaper_deployments_reaped_total{backend="local",reason="job-closed"} 1');
  expect(text).not.toContain('reason="job-not-found"');
  expect(text).toContain('forge_reaper_close_errors_total{backend="local"} 1');
  expect(text).toContain('forge_reaper_list_errors_total{backend="pi"} 1');
  expect(text).toContain('forge_reaper_open_deployments{backend="local"} 3');
  expect(text).toContain('forge_reaper_kept_deployments 1');
  expect(text).toContain(`forge_reaper_last_run_timestamp_seconds ${Date.parse(report.startedAt) / 1000}`);
  expect(text).toContain('forge_reaper_runs_total 1');
});
