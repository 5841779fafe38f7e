/**
 * The reaper's Prometheus metrics, in this process's own registry: the orchestrator worker serves them on its
 * /metrics (FORGE_HEALTH_ADDRESS, workers/runtime.ts) next to the process metrics.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { ReapReport } from './reaper';

export const reaperRegistry = new Registry();

const registers = [reaperRegistry];

const runs = new Counter({ name: 'forge_reaper_runs_total', help: 'Reaper runs recorded by this worker', registers });
const lastRun = new Gauge({ name: 'forge_reaper_last_run_timestamp_seconds', help: 'When the last reaper run recorded here started (Unix time)', registers });
const reaped = new Counter({
  name: 'forge_reaper_deployments_reaped_total',
  help: 'Orphaned deployments the reaper closed, by backend and reason (job-closed, job-not-found, earlier-attempt, …)',
  labelNames: ['backend', 'reason'] as const,
  registers,
});
const perBackend = (name: string, help: string): Counter<'backend'> => new Counter({ name, help, labelNames: ['backend'] as const, registers });
const closeErrors = perBackend('forge_reaper_close_errors_total', 'Orphaned deployments whose close failed (tried again at the next run), by backend');
const listErrors = perBackend('forge_reaper_list_errors_total', 'Backends whose open deployments could not be listed, by backend');
const open = new Gauge({
  name: 'forge_reaper_open_deployments',
  help: 'Open deployments with this orchestrator’s mark at the last run, by backend',
  labelNames: ['backend'] as const,
  registers,
});
const kept = new Gauge({ name: 'forge_reaper_kept_deployments', help: 'Open deployments the last run left alone (their job runs on them, or too young)', registers });

export function recordReaperRun(report: ReapReport): void {
  runs.inc();
  lastRun.set(Date.parse(report.startedAt) / 1000);
  kept.set(report.kept);
  for (const b of report.backends) {
    open.set({ backend: b.backend }, b.open);
    if (b.error !== undefined) listErrors.inc({ backend: b.backend });
  }
  for (const item of report.items) {
    if (!item.decision.reap) continue;
    if (item.closed) reaped.inc({ backend: item.open.ref.backend, reason: item.decision.reason });
    else if (item.error !== undefined) closeErrors.inc({ backend: item.open.ref.backend });
  }
}
