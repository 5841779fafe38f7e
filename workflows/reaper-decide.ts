/**
 * The reaper's decision (pure, deterministic: the reaping workflow calls it, and so does `cf-reap --dry-run`):
 * is an open deployment orphaned? It is when its job's workflow does not run (never existed, or closed in any way:
 * completed, failed, terminated by an operator, cancelled, timed out), or when the job runs but the deployment is
 * not its current attempt's (an earlier attempt, a second deployment of the same attempt, one the job's status
 * records as closed). A deployment younger than the grace period is never reaped: its submit may not be recorded yet.
 */
import type { OpenDeployment } from '../activities/backends/types';

/** What the job's status says about one of its deployments (the reaper needs no more). */
export interface StatusDeployment {
  backend: string;
  attempt: number;
  id: string;
  closed: boolean;
}

/** The job's workflow as Temporal describes it (workflow id job-<job_id>). */
export type JobRunState =
  | { kind: 'not-found' }
  /** Closed: COMPLETED, FAILED, TERMINATED, CANCELLED, TIMED_OUT (a continued-as-new chain is described by its latest run). */
  | { kind: 'closed'; status: string }
  /** Running, with its `status` query's current attempt and deployments. */
  | { kind: 'running'; attempt: number; deployments: StatusDeployment[] }
  /** Running (or unknown) but its status could not be read (no worker, a failing workflow task): never reaped. */
  | { kind: 'unknown'; detail: string };

export type ReapReason = 'job-not-found' | 'job-closed' | 'earlier-attempt' | 'closed-in-status' | 'not-the-current-deployment';
export type KeepReason = 'young' | 'current' | 'not-yet-recorded' | 'later-attempt' | 'status-unknown';

export type ReapDecision = { reap: true; reason: ReapReason; why: string } | { reap: false; reason: KeepReason; why: string };

export interface DecideReapInput {
  open: OpenDeployment;
  job: JobRunState;
  /** Epoch ms (the workflow's deterministic clock). */
  now: number;
  graceSeconds: number;
}

export function decideReap({ open, job, now, graceSeconds }: DecideReapInput): ReapDecision {
  const created = Date.parse(open.createdAt);
  const ageMs = Number.isNaN(created) ? Infinity : now - created;
  if (ageMs < graceSeconds * 1000) {
    return { reap: false, reason: 'young', why: `created ${Math.max(0, Math.round(ageMs / 1000))} s ago, within the grace period of ${graceSeconds} s` };
  }
  switch (job.kind) {
    case 'not-found':
      return { reap: true, reason: 'job-not-found', why: `no workflow job-${open.jobId} exists` };
    case 'closed':
      return { reap: true, reason: 'job-closed', why: `workflow job-${open.jobId} is ${job.status}` };
    case 'unknown':
      return { reap: false, reason: 'status-unknown', why: `the job's status could not be read (${job.detail})` };
    case 'running':
      return decideForRunning(open, job);
  }
}

function decideForRunning(open: OpenDeployment, job: Extract<JobRunState, { kind: 'running' }>): ReapDecision {
  if (open.attempt < job.attempt) return { reap: true, reason: 'earlier-attempt', why: `attempt ${open.attempt}; the job is on attempt ${job.attempt}` };
  if (open.attempt > job.attempt) return { reap: false, reason: 'later-attempt', why: `attempt ${open.attempt}; the job's status is still on attempt ${job.attempt}` };
  const same = job.deployments.filter((d) => d.attempt === open.attempt);
  const recorded = same.find((d) => d.backend === open.ref.backend && d.id === open.ref.id);
  if (recorded?.closed) return { reap: true, reason: 'closed-in-status', why: `the job's status records deployment ${open.ref.id} as closed` };
  if (recorded) return { reap: false, reason: 'current', why: `the job's current deployment (attempt ${open.attempt})` };
  const other = same.find((d) => !d.closed);
  if (other) {
    return { reap: true, reason: 'not-the-current-deployment', why: `attempt ${open.attempt} of the job runs as ${other.backend} ${other.id}, not this one` };
  }
  return { reap: false, reason: 'not-yet-recorded', why: `attempt ${open.attempt} is the job's current one and its status records no deployment yet (a submit under way)` };
}

/** One backend's listing: its open deployments, or why they could not be listed (the others are still reaped). */
export interface BackendListing {
  backend: string;
  kind: string;
  open: OpenDeployment[];
  error?: string;
}

export interface OpenListing {
  graceSeconds: number;
  backends: BackendListing[];
}

export interface ReapItem {
  open: OpenDeployment;
  decision: ReapDecision;
  /** Set once a close was tried: closed, or the error. */
  closed?: boolean;
  error?: string;
}

export interface ReapReport {
  startedAt: string;
  dryRun: boolean;
  graceSeconds: number;
  backends: { backend: string; kind: string; open: number; error?: string }[];
  items: ReapItem[];
  reaped: number;
  kept: number;
  errors: number;
}

/** Every listed deployment with its decision (nothing closed yet). */
export function planReap(listing: OpenListing, jobs: Readonly<Record<string, JobRunState>>, now: number): ReapItem[] {
  return listing.backends.flatMap((b) =>
    b.open.map((open) => ({ open, decision: decideReap({ open, job: jobs[open.jobId] ?? { kind: 'unknown', detail: 'not described' }, now, graceSeconds: listing.graceSeconds }) })),
  );
}

/** The run's report from its items (closed or not yet, as they are). */
export function reapReport(listing: OpenListing, items: ReapItem[], startedAt: number, dryRun: boolean): ReapReport {
  return {
    startedAt: new Date(startedAt).toISOString(),
    dryRun,
    graceSeconds: listing.graceSeconds,
    backends: listing.backends.map((b) => ({
      backend: b.backend,
      kind: b.kind,
      open: b.open.length,
      ...(b.error !== undefined && { error: b.error }),
    })),
    items,
    reaped: items.filter((i) => i.closed === true).length,
    kept: items.filter((i) => !i.decision.reap).length,
    errors: items.filter((i) => i.error !== undefined).length + listing.backends.filter((b) => b.error !== undefined).length,
  };
}
