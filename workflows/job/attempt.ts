/**
 * One training (or eval) attempt on a backend: admission and submission (SUBMITTED), then following the deployment
 * through RUNNING until it ends, runs out of time (max_hours) or of budget; its deployment is released before the
 * retry plan decides what comes next.
 */
import { ActivityFailure, CancellationScope, isCancellation, patched, proxyActivities } from '@temporalio/workflow';
import type { ControlActivities, FollowResult, JobSettings, Submission, SubmitOutcome } from '../../activities/control/activities';
import type { DeploymentState } from '../../activities/backends/types';
import { type FailureInfo, typedFailure } from '../../jobspec/failure';
import { progressDecile } from '../../jobspec/progress';
import { followLimitSeconds, isoAfter } from '../lifecycle/time-bounds';
import { closeOrHandOver, outageOf, quickFor } from './cleanup';
import type { AttemptMode, AttemptOutcome } from './eval-attempts';
import { PATCH_CANCEL_NOT_FAILURE, PATCH_REMOTE_OUTPUTS } from './patches';
import type { JobRun } from './run';

/** Which attempt, on which candidates, from which one on. */
export interface AttemptPlan {
  candidates: string[];
  preferred: number;
  attempt: number;
  /** What acceptAndSubmit already did for attempt 1 (undefined: nothing, admit and submit here). */
  firstTry?: SubmitOutcome | null;
  mode?: AttemptMode;
}

function control(settings: JobSettings, maxHours?: number) {
  // One activity follows a deployment for as long as it runs; a dead worker is noticed by the heartbeat timeout.
  // A backend that keeps failing to answer ends the attempt (as LOST) an hour past max_hours at the latest.
  const limit = `${followLimitSeconds(maxHours)} seconds`;
  return proxyActivities<ControlActivities>({
    startToCloseTimeout: limit,
    scheduleToCloseTimeout: limit,
    heartbeatTimeout: `${settings.followHeartbeatSeconds} seconds`,
    retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
  });
}

/**
 * The job is being cancelled (owner or Temporal) and this error is that cancellation reaching an activity: it ends the
 * job CANCELLED, it is not the attempt's failure. (Histories from before the patch recorded FAILED and RETRY first.)
 */
function cancelledNotFailed(err: unknown): boolean {
  return isCancellation(err) && patched(PATCH_CANCEL_NOT_FAILURE);
}

/** A typed failure of ours inside an activity failure, or LOST when the activity itself gave up. */
function failureOf(err: unknown): FailureInfo | undefined {
  if (!(err instanceof ActivityFailure)) return undefined;
  return typedFailure(err.cause) ?? { class: 'LOST', detail: `${err.activityType} failed: ${err.cause?.message ?? err.message}` };
}

export async function runAttempt(run: JobRun, plan: AttemptPlan): Promise<{ index: number; outcome: AttemptOutcome }> {
  const { job, settings } = run;
  const { signed } = run;
  const { spec } = signed;
  const { candidates, preferred, attempt, firstTry, mode = {} } = plan;
  const fail = (index: number, failure: FailureInfo) => {
    if (mode.quiet) job.attemptFailed(failure);
    else job.failed(failure);
    return { index, outcome: { ok: false as const, failure } };
  };
  const budgetLeft = spec.backend.max_cost_usd - job.status.cost_usd;
  if (budgetLeft <= 0) return fail(preferred, { class: 'BUDGET', detail: `max_cost_usd $${spec.backend.max_cost_usd} spent` });

  // budgetUsd: admission never starts an attempt that could overspend what is left (activities/control/admission.ts).
  const asked = { candidates, preferred, attempt, budgetUsd: budgetLeft, ...(mode.evalRun && { evalRun: mode.evalRun }) };
  // Not cancellable: a cancel arriving mid-submit must still learn of the deployment, so that it gets closed.
  const admitBudget = Math.max(...candidates.map((c) => outageOf(settings, c)));
  const admitAndSubmit = () =>
    CancellationScope.nonCancellable(() =>
      quickFor(admitBudget).admitAndSubmit.executeWithOptions({ summary: `admit and submit attempt ${attempt} (${candidates.join(', ')})` }, [{ ...asked, signed }]),
    );
  let submitted: SubmitOutcome | null;
  try {
    submitted = firstTry !== undefined ? firstTry : await admitAndSubmit();
    while (!submitted) {
      await control(settings).awaitAdmission.executeWithOptions({ summary: `wait for admission of attempt ${attempt} (${candidates.join(', ')})` }, [
        { ...asked, spec, pollSeconds: settings.admissionPollSeconds },
      ]);
      submitted = await admitAndSubmit();
    }
  } catch (err) {
    if (cancelledNotFailed(err)) throw err;
    const failure = failureOf(err);
    if (!failure) throw err;
    job.beginAttempt(attempt, candidates[preferred]!);
    return fail(preferred, failure);
  }
  const index = submitted.index;
  job.beginAttempt(attempt, candidates[index]!);
  if ('failure' in submitted) return fail(index, submitted.failure);
  const { submission } = submitted;
  const { deployment } = submission;
  job.addDeployment(deployment);
  if (!mode.quiet) job.transition('SUBMITTED', `attempt ${attempt} accepted by ${deployment.backend} as ${deployment.id}`);

  const outcome = await followToEnd(run, submission, mode.quiet === true);
  // Whatever happened, release the deployment before deciding what comes next (nothing left running or billing) —
  // except a remote success whose outputs are still on it: integrate() closes it once they are committed.
  const keep =
    outcome.ok &&
    outcome.outputsOnDeployment === true &&
    (settings.results?.enabled === true || mode.evalRun !== undefined) &&
    patched(PATCH_REMOTE_OUTPUTS);
  if (job.isOpen(deployment) && !keep) await CancellationScope.nonCancellable(() => closeOrHandOver(job, deployment, settings));
  return outcome.ok ? { index, outcome } : fail(index, outcome.failure);
}

/** Follows one deployment through its states until it ends, runs out of time (max_hours) or of budget. */
async function followToEnd(run: JobRun, submission: Submission, quiet: boolean): Promise<AttemptOutcome> {
  const { job, settings } = run;
  const { spec } = run.signed;
  const { deployment } = submission;
  const follow = control(settings, spec.resources.max_hours).followDeployment;
  const deadline = isoAfter(Date.now(), spec.resources.max_hours);
  let known: DeploymentState = 'PENDING';
  let knownDecile = -1;
  let result: FollowResult = {
    status: submission.status,
    reason: submission.status.state === known ? 'progress' : 'changed',
    ...(submission.closed ? { closed: true } : {}),
  };
  for (;;) {
    const { status, reason } = result;
    const unreachable = reason === 'unreachable' ? result.unreachableSince : undefined;
    if (!unreachable) job.updateDeployment(deployment, status);
    job.setApiUnreachable(deployment, unreachable);
    if (result.closed) job.markClosed(deployment);
    if (reason === 'budget') {
      return { ok: false, failure: { class: 'BUDGET', detail: `cost $${status.costUsd.toFixed(4)} reached max_cost_usd $${spec.backend.max_cost_usd}` } };
    }
    if (reason === 'timeout') {
      return { ok: false, failure: { class: 'TIMEOUT', detail: `attempt ran past resources.max_hours (${spec.resources.max_hours} h)` } };
    }
    // Progress already in the submission's own status is not counted, so the first follow reports it: a job's history
    // then does not depend on whether its trainer printed a progress line before the submit looked (bench/lifecycle
    // saw 21 or 27 events for the same job). Replay-safe: it changes only the follow activity's input.
    if (result.status !== submission.status) knownDecile = Math.max(knownDecile, progressDecile(status.progress));
    if (reason === 'changed') {
      known = status.state;
      if (known === 'RUNNING' && !quiet) job.transition('RUNNING', `${deployment.backend} reports ${deployment.id} running`);
      if (known === 'SUCCEEDED') {
        if (job.state === 'SUBMITTED' && !quiet) job.transition('RUNNING', `${deployment.backend} reports ${deployment.id} already finished`);
        return status.outputsOnDeployment ? { ok: true, outputsOnDeployment: true } : { ok: true };
      }
      if (known === 'FAILED') {
        return { ok: false, failure: status.failure ?? { class: 'LOST', detail: 'backend reported FAILED without a reason' } };
      }
    }
    try {
      // The summary is user metadata of the activity's schedule, shown in the Web UI; it is not checked on replay.
      const summary = `follow attempt ${deployment.attempt} on ${deployment.backend} (${deployment.id})`;
      result = await follow.executeWithOptions({ summary }, [
        {
          deployment,
          known,
          knownDecile,
          deadline,
          budgetUsd: spec.backend.max_cost_usd - job.costExcept(deployment),
          ...(unreachable ? { unreachableSince: unreachable } : {}),
        },
      ]);
    } catch (err) {
      if (cancelledNotFailed(err)) throw err;
      const failure = failureOf(err);
      if (!failure) throw err;
      return { ok: false, failure };
    }
  }
}
