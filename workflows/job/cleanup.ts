/**
 * trainingJob's clean-up under outages and surprises: the short control calls retried through a backend's outage
 * budget (backend_outage_seconds, carried in JobSettings), the close retried for 4 × that budget and then handed to
 * the reaper (close pending), and the end of a job after an unexpected error (ABANDONED, class INTERNAL).
 */
import { ActivityFailure, CancellationScope, ChildWorkflowFailure, isCancellation, patched, proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { ControlActivities, JobSettings } from '../../activities/control/activities';
import type { DeploymentRef } from '../../activities/backends/types';
import type { JobRecord } from '../lifecycle/job-record';

/** An unexpected error ends the job ABANDONED (INTERNAL) after its deployments are closed, not a failed execution. */
export const PATCH_INTERNAL = 'forge-internal-abandon';
/** Closing a deployment is an ordinary activity retried through 4 × the outage budget (was a local activity, 10 tries). */
const PATCH_CLOSE_ACTIVITY = 'forge-close-activity';

/** backend_outage_seconds of histories (and jobs) from before it: the operator config's default. */
export const DEFAULT_OUTAGE_SECONDS = 1800;

/** A backend's outage budget as the job's settings carry it (the default for settings from before the field). */
export function outageOf(settings: JobSettings | undefined, backend: string): number {
  return settings?.outageSeconds?.[backend] ?? DEFAULT_OUTAGE_SECONDS;
}

/**
 * The short calls that talk to a backend retry (unlimited attempts, backoff up to 30 s, so no workflow timers) through
 * `seconds`, its outage budget, instead of giving up after 10 tries: an API down for minutes is ridden out, and only
 * one down for longer fails the call (LOST for a submission, close pending for a close).
 */
export function quickFor(seconds: number) {
  return proxyLocalActivities<ControlActivities>({
    startToCloseTimeout: '2 minutes',
    scheduleToCloseTimeout: `${Math.max(1, Math.ceil(seconds))} seconds`,
    retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
  });
}

/** A close keeps trying this many outage budgets before the deployment is left to the reaper. */
const CLOSE_BUDGETS = 4;

/**
 * The close as an ordinary activity: it retries on the server's clock for the whole close budget without holding a
 * workflow task open. (As a local activity retrying through an outage it held the task for minutes: a cancel's
 * request to stop the follow activity was not sent meanwhile, and an event arriving in that window made the server
 * refuse the task, so the job was replayed with the follow's late result first: FAILED and RETRY before CANCELLED.)
 */
function closer(seconds: number) {
  return proxyActivities<ControlActivities>({
    startToCloseTimeout: '2 minutes',
    scheduleToCloseTimeout: `${Math.max(1, Math.ceil(seconds))} seconds`,
    retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
  }).closeDeployment;
}

export async function close(job: JobRecord, deployment: DeploymentRef, settings?: JobSettings): Promise<void> {
  const budget = CLOSE_BUDGETS * outageOf(settings, deployment.backend);
  const closeDeployment = patched(PATCH_CLOSE_ACTIVITY) ? closer(budget) : quickFor(budget).closeDeployment;
  await closeDeployment.executeWithOptions({ summary: `close ${deployment.id} on ${deployment.backend} (attempt ${deployment.attempt})` }, [deployment]);
  job.markClosed(deployment);
}

/** The innermost cause of an error, through activity and child workflow failures. */
export function innermostCause(err: unknown): unknown {
  let cause: unknown = err;
  while ((cause instanceof ActivityFailure || cause instanceof ChildWorkflowFailure) && cause.cause) cause = cause.cause;
  return cause;
}

function innermost(err: unknown): string {
  const cause = innermostCause(err);
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}

/**
 * Closes every open deployment; one whose close keeps failing is recorded as close pending (the reaper closes it
 * once its backend answers) and the others are still closed.
 */
export async function closeAllOrHandOver(job: JobRecord, settings: JobSettings | undefined): Promise<void> {
  for (const d of job.openDeployments()) await closeOrHandOver(job, d, settings);
}

/** Closes a deployment; when its close keeps failing past the close budget, it is recorded as close pending. */
export async function closeOrHandOver(job: JobRecord, d: DeploymentRef, settings: JobSettings | undefined): Promise<void> {
  try {
    await close(job, d, settings);
  } catch (err) {
    // Before this patch a failed close failed the whole execution (nothing closed it later).
    if (isCancellation(err) || !patched(PATCH_INTERNAL)) throw err;
    job.markClosePending(
      d,
      `close failed for ${CLOSE_BUDGETS} × backend_outage_seconds (${CLOSE_BUDGETS * outageOf(settings, d.backend)} s): ${innermost(err)}; the reaper closes it once ${d.backend} answers`,
    );
  }
}

/** An unexpected error inside the workflow: every deployment closed (or handed over), then ABANDONED (INTERNAL). */
export async function abandonInternal(job: JobRecord, err: unknown, settings: JobSettings | undefined): Promise<void> {
  await closeAllOrHandOver(job, settings);
  const pending = job.status.deployments.filter((d) => !d.closed).map((d) => `${d.backend}/${d.id}`);
  const cleanup = pending.length ? `close pending for ${pending.join(', ')}` : 'every deployment closed';
  job.abandonInternal(
    `unexpected error in the orchestrator: ${innermost(err)} (${cleanup}); report it to the operator with the workflow history (temporal workflow show -w ${workflowInfo().workflowId}) and submit the job again`,
  );
}

/** The close of histories from before PATCH_INTERNAL: a failed close fails the execution. */
export async function closeEach(job: JobRecord): Promise<void> {
  for (const d of job.openDeployments()) await close(job, d);
}

/** Closes a deployment kept open for its outputs (none in histories from before PATCH_REMOTE_OUTPUTS). */
export async function closeKept(job: JobRecord): Promise<void> {
  if (job.openDeployments().length) await CancellationScope.nonCancellable(() => closeAllOrHandOver(job, undefined));
}
