/**
 * Job-level Prometheus metrics of the API (issue 8), read from Temporal's visibility store — the only store of job
 * state (docs/architecture.md §1) — at most once per refresh interval, whatever the scrape rate:
 *
 *   forge_jobs{state}                         jobs per ForgeJobState (gauge; all jobs the namespace still keeps)
 *   forge_jobs_by_attempt{attempt}            non-terminal jobs per ForgeAttempt: 0 (not yet submitted), 1, 2, 3, 4+
 *   forge_jobs_finished_total{state,backend}  jobs that closed since this API started (counter)
 *   forge_job_cost_usd_total{state,backend}   their ForgeCostUsd, summed (counter)
 *   forge_job_attempts                        histogram of attempts per closed job
 *   forge_job_attempt_failures_total{class,backend}  failed attempts of the jobs that closed, by failure class
 *   forge_job_metrics_refresh_errors_total    refreshes that failed (Temporal unreachable, ...)
 *
 * Several API replicas each count the jobs that closed: aggregate the counters with max(), not sum().
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Client } from '@temporalio/client';
import type { JobStatus } from '../../workflows/messages';
import { JOB_STATES, TERMINAL_STATES } from '../../workflows/lifecycle/states';
import { WORKFLOW_TYPE_TRAINING_JOB } from '../../common/names';
import { ForgeAttempt, ForgeBackend, ForgeCostUsd, ForgeJobState } from '../../workflows/search-attributes';

export interface JobMetricsOptions {
  client: Client;
  registry: Registry;
  /** Minimum time between two refreshes from visibility. */
  refreshMs?: number;
  /** A scrape waits this long for a refresh, then serves the last values. */
  scrapeWaitMs?: number;
  now?: () => number;
}

const ATTEMPT_BUCKETS = [
  { label: '0', query: `${ForgeAttempt.name} = 0 OR ${ForgeAttempt.name} IS NULL` },
  { label: '1', query: `${ForgeAttempt.name} = 1` },
  { label: '2', query: `${ForgeAttempt.name} = 2` },
  { label: '3', query: `${ForgeAttempt.name} = 3` },
  { label: '4+', query: `${ForgeAttempt.name} >= 4` },
] as const;

const TYPE = `WorkflowType = '${WORKFLOW_TYPE_TRAINING_JOB}'`;
const OPEN_STATES = JOB_STATES.filter((s) => !TERMINAL_STATES.has(s));

export class JobMetrics {
  private readonly byState: Gauge<'state'>;
  private readonly byAttempt: Gauge<'attempt'>;
  private readonly finished: Counter<'state' | 'backend'>;
  private readonly cost: Counter<'state' | 'backend'>;
  private readonly attempts: Histogram;
  private readonly failures: Counter<'class' | 'backend'>;
  private readonly errors: Counter;
  private readonly refreshMs: number;
  private readonly scrapeWaitMs: number;
  private readonly now: () => number;
  private lastRefresh = 0;
  private running: Promise<void> | undefined;
  /** Closed jobs are counted from this time on (ISO); starts at construction: history before it is not replayed. */
  private closedSince: string;
  private readonly seen = new Set<string>();

  constructor(private readonly o: JobMetricsOptions) {
    this.refreshMs = o.refreshMs ?? 30_000;
    this.scrapeWaitMs = o.scrapeWaitMs ?? 2_000;
    this.now = o.now ?? Date.now;
    this.closedSince = new Date(this.now()).toISOString();
    const registers = [o.registry];
    const self = this;
    // prom-client serializes metrics concurrently: each of ours waits for the same refresh.
    const collect = async (): Promise<void> => self.maybeRefresh();
    this.byState = new Gauge({
      name: 'forge_jobs',
      help: 'Jobs per lifecycle state (ForgeJobState), from Temporal visibility',
      labelNames: ['state'] as const,
      registers,
      collect,
    });
    this.byAttempt = new Gauge({
      name: 'forge_jobs_by_attempt',
      help: 'Non-terminal jobs per attempt number (ForgeAttempt; 0 = not submitted yet)',
      labelNames: ['attempt'] as const,
      registers,
      collect,
    });
    this.finished = new Counter({
      name: 'forge_jobs_finished_total',
      help: 'Jobs that closed since this API instance started, by final state and last backend',
      labelNames: ['state', 'backend'] as const,
      registers,
      collect,
    });
    this.cost = new Counter({
      name: 'forge_job_cost_usd_total',
      help: 'ForgeCostUsd of the jobs that closed since this API instance started (all attempts), by final state and last backend',
      labelNames: ['state', 'backend'] as const,
      registers,
      collect,
    });
    this.attempts = new Histogram({
      name: 'forge_job_attempts',
      help: 'Attempts per job that closed since this API instance started',
      buckets: [1, 2, 3, 4, 6, 10],
      registers,
      collect,
    });
    this.failures = new Counter({
      name: 'forge_job_attempt_failures_total',
      help: 'Failed attempts of the jobs that closed since this API instance started (their status errors), by failure class and backend',
      labelNames: ['class', 'backend'] as const,
      registers,
      collect,
    });
    this.errors = new Counter({
      name: 'forge_job_metrics_refresh_errors_total',
      help: 'Refreshes of the job metrics from Temporal visibility that failed',
      registers,
    });
  }

  /** Refreshes when the last refresh is older than refreshMs; a scrape waits for it at most scrapeWaitMs. */
  async maybeRefresh(): Promise<void> {
    if (!this.running && this.now() - this.lastRefresh >= this.refreshMs) {
      this.running = this.refresh()
        .catch(() => this.errors.inc())
        .finally(() => {
          this.lastRefresh = this.now();
          this.running = undefined;
        });
    }
    if (this.running) await Promise.race([this.running, new Promise((r) => setTimeout(r, this.scrapeWaitMs).unref())]);
  }

  async refresh(): Promise<void> {
    const { client } = this.o;
    const count = async (query: string): Promise<number> => (await client.workflow.count(`${TYPE} AND (${query})`)).count;
    const states = await Promise.all(JOB_STATES.map(async (s) => [s, await count(`${ForgeJobState.name} = '${s}'`)] as const));
    const openOnly = `${ForgeJobState.name} IN (${OPEN_STATES.map((s) => `'${s}'`).join(', ')})`;
    const attempts = await Promise.all(ATTEMPT_BUCKETS.map(async (b) => [b.label, await count(`${openOnly} AND (${b.query})`)] as const));
    for (const [state, n] of states) this.byState.set({ state }, n);
    for (const [attempt, n] of attempts) this.byAttempt.set({ attempt }, n);
    await this.countClosed();
  }

  /** Jobs closed since the last look: counters of final state, cost and attempts (each job once per instance). */
  private async countClosed(): Promise<void> {
    const since = this.closedSince;
    // Overlap a little (visibility is eventually consistent); `seen` keeps each job counted once.
    const next = new Date(this.now() - 60_000).toISOString();
    const query = `${TYPE} AND ExecutionStatus != 'Running' AND CloseTime >= '${since}'`;
    const current = new Set<string>();
    for await (const wf of this.o.client.workflow.list({ query, pageSize: 1000 })) {
      const key = `${wf.workflowId}/${wf.runId}`;
      current.add(key);
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      const sa = wf.typedSearchAttributes;
      const state = sa.get(ForgeJobState) ?? wf.status.name;
      const backend = sa.get(ForgeBackend) ?? 'none';
      this.finished.inc({ state, backend });
      const cost = sa.get(ForgeCostUsd);
      if (typeof cost === 'number' && cost > 0) this.cost.inc({ state, backend }, cost);
      this.attempts.observe(sa.get(ForgeAttempt) ?? 0);
      if (wf.status.name === 'COMPLETED') await this.countFailures(wf.workflowId, wf.runId);
    }
    // Forget keys that fell out of the window, so `seen` stays as small as one window.
    for (const key of this.seen) if (!current.has(key)) this.seen.delete(key);
    if (next > since) this.closedSince = next;
  }

  /** A closed job's failed attempts by class: its result (the final status) lists them; unreadable counts as a refresh error. */
  private async countFailures(workflowId: string, runId: string): Promise<void> {
    let status: Partial<JobStatus> | undefined;
    try {
      status = (await this.o.client.workflow.getHandle(workflowId, runId).result()) as Partial<JobStatus> | undefined;
    } catch {
      this.errors.inc();
      return;
    }
    for (const e of status?.errors ?? []) this.failures.inc({ class: e.class, backend: e.backend ?? 'none' });
  }
}
