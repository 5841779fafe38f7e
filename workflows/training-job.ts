/**
 * trainingJob: one workflow per job (id `job-<job_id>`), the lifecycle of DESIGN.md §4.
 *
 *   CREATED → QUEUED → SUBMITTED → RUNNING → COMPLETED
 *                 ↑                  ↓
 *               RETRY ←──────────  FAILED ──→ ABANDONED
 *   any non-terminal state → CANCELLED (signed cancel update, or a Temporal cancellation)
 *
 * Every transition goes through JobRecord; the retry/failover decision is the pure planAfterFailure.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { ControlActivities, FollowResult, JobSettings, Submission, SubmitOutcome } from '../activities/control';
import type { DeploymentRef, DeploymentState } from '../activities/backends/types';
import { FAILURE_CLASSES, type FailureClass, type FailureInfo } from '../spec/failure';
import { formatSpecIssues } from '../spec/parse';
import { progressDecile } from '../spec/progress';
import type { TrainingJobSpec } from '../spec/schema';
import { verifyCancelRequest, type CancelRequest } from '../spec/signing';
import { JobRecord } from './lifecycle/job-record';
import { planAfterFailure } from './lifecycle/retry-plan';
import { cancelUpdate, statusQuery, type JobStatus } from './messages';
import { jobWorkflowId } from './names';

// Short calls (validate, admit, submit, close) are local activities: no task-queue round trip each, which keeps a
// job's overhead near that of a single activity. Infrastructure errors retry here; a backend's typed refusal
// comes back non-retryable and the workflow decides.
const quick = proxyLocalActivities<ControlActivities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 10 },
});

function control(settings: JobSettings, maxHours?: number) {
  // One activity follows a deployment for as long as it runs; a dead worker is noticed by the heartbeat timeout.
  // A backend that keeps failing to answer ends the attempt (as LOST) an hour past max_hours at the latest.
  const limit = `${Math.ceil((maxHours ?? 24 * 365) * 3600 + 3600)} seconds`;
  return proxyActivities<ControlActivities>({
    startToCloseTimeout: limit,
    scheduleToCloseTimeout: limit,
    heartbeatTimeout: `${settings.followHeartbeatSeconds} seconds`,
    retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
  });
}

type AttemptOutcome = { ok: true } | { ok: false; failure: FailureInfo };

/** A typed failure of ours inside an activity failure, or LOST when the activity itself gave up. */
function failureOf(err: unknown): FailureInfo | undefined {
  if (!(err instanceof ActivityFailure)) return undefined;
  const cause = err.cause;
  if (cause instanceof ApplicationFailure && FAILURE_CLASSES.includes(cause.type as FailureClass)) {
    return { class: cause.type as FailureClass, detail: cause.message };
  }
  return { class: 'LOST', detail: `${err.activityType} failed: ${cause?.message ?? err.message}` };
}

export async function trainingJob(rawSpec: unknown): Promise<JobStatus> {
  const job = new JobRecord(rawSpec);
  const lifecycle = new CancellationScope();
  let ownerCancel: string | undefined;

  setHandler(statusQuery, () => job.status);
  setHandler(
    cancelUpdate,
    async () => {
      ownerCancel = `cancelled by its owner ${job.status.owner_did}`;
      lifecycle.cancel();
      await condition(() => job.terminal);
      return job.status;
    },
    { validator: (req: CancelRequest) => validateCancel(job, req) },
  );

  try {
    await lifecycle.run(() => runJob(job, rawSpec));
  } catch (err) {
    if (!isCancellation(err)) throw err;
    await CancellationScope.nonCancellable(async () => {
      await closeAll(job);
      job.transition('CANCELLED', ownerCancel ?? 'cancelled through Temporal (Web UI, CLI or API client)');
    });
    // A Temporal cancellation ends the execution as Canceled, as the Web UI expects.
    if (!ownerCancel) throw err;
  }
  await condition(allHandlersFinished);
  return job.status;
}

/** The update's validator: a refused cancel is never written to history and the job goes on. */
function validateCancel(job: JobRecord, req: CancelRequest): void {
  if (job.terminal) throw new Error(`job ${job.status.job_id} is already ${job.state}`);
  if (!job.status.owner_did) throw new Error('job has no valid owner_did: only a Temporal cancellation can stop it');
  const check = verifyCancelRequest(req, {
    jobId: job.status.job_id,
    ownerDid: job.status.owner_did,
    nowSeconds: Math.floor(Date.now() / 1000),
  });
  if (!check.ok) throw new Error(`cancel refused: ${check.reason}`);
}

async function runJob(job: JobRecord, rawSpec: unknown): Promise<void> {
  const v = await quick.validateSpec(rawSpec);
  if (!v.ok) {
    job.failedValidation(formatSpecIssues(v.issues));
    return;
  }
  const { spec, settings } = v;
  if (workflowInfo().workflowId !== jobWorkflowId(spec.job_id)) {
    job.failedValidation(`job_id: workflow id must be ${jobWorkflowId(spec.job_id)}, got ${workflowInfo().workflowId}`);
    return;
  }
  job.accepted(spec, v.specHash);
  job.transition('QUEUED', 'waiting for admission');

  const candidates = [spec.backend.provider, ...(spec.backend.fallbacks ?? [])];
  let preferred = 0;
  for (let attempt = 1, retriesUsed = 0; ; attempt++, retriesUsed++) {
    const { index, outcome } = await runAttempt(job, spec, rawSpec, settings, candidates, preferred, attempt);
    if (outcome.ok) {
      job.transition('COMPLETED', `attempt ${attempt} succeeded on ${candidates[index]}`);
      return;
    }
    const plan = planAfterFailure({
      failure: outcome.failure.class,
      retriesUsed,
      maxRetries: settings.maxRetries,
      backendIndex: index,
      backendCount: candidates.length,
      costUsd: job.status.cost_usd,
      maxCostUsd: spec.backend.max_cost_usd,
      backoff: settings.backoff,
    });
    if (plan.action === 'abandon') {
      job.transition('ABANDONED', `${plan.failure}: ${plan.reason}`);
      return;
    }
    job.transition('RETRY', `${plan.reason} → ${candidates[plan.backendIndex]}`);
    await sleep(plan.delayMs);
    preferred = plan.backendIndex;
  }
}

async function runAttempt(
  job: JobRecord,
  spec: TrainingJobSpec,
  rawSpec: unknown,
  settings: JobSettings,
  candidates: string[],
  preferred: number,
  attempt: number,
): Promise<{ index: number; outcome: AttemptOutcome }> {
  const fail = (index: number, failure: FailureInfo) => {
    job.failed(failure);
    return { index, outcome: { ok: false as const, failure } };
  };
  const budgetLeft = spec.backend.max_cost_usd - job.status.cost_usd;
  if (budgetLeft <= 0) return fail(preferred, { class: 'BUDGET', detail: `max_cost_usd $${spec.backend.max_cost_usd} spent` });

  // budgetUsd: admission never starts an attempt that could overspend what is left (activities/admission.ts).
  const admission = { candidates, preferred, spec, rawSpec, attempt, budgetUsd: budgetLeft };
  let submitted: SubmitOutcome | null;
  try {
    // Not cancellable: a cancel arriving mid-submit must still learn of the deployment, so that it gets closed.
    while (!(submitted = await CancellationScope.nonCancellable(() => quick.admitAndSubmit(admission)))) {
      await control(settings).awaitAdmission({ ...admission, pollSeconds: settings.admissionPollSeconds });
    }
  } catch (err) {
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
  job.transition('SUBMITTED', `attempt ${attempt} accepted by ${deployment.backend} as ${deployment.id}`);

  const outcome = await followToEnd(job, spec, settings, submission);
  // Whatever happened, release the deployment before deciding what comes next (nothing left running or billing).
  if (job.isOpen(deployment)) await CancellationScope.nonCancellable(() => close(job, deployment));
  return outcome.ok ? { index, outcome } : fail(index, outcome.failure);
}

/** Follows one deployment through its states until it ends, runs out of time (max_hours) or of budget. */
async function followToEnd(job: JobRecord, spec: TrainingJobSpec, settings: JobSettings, submission: Submission): Promise<AttemptOutcome> {
  const { deployment } = submission;
  const follow = control(settings, spec.resources.max_hours).followDeployment;
  const deadline = new Date(Date.now() + spec.resources.max_hours * 3600_000).toISOString();
  let known: DeploymentState = 'PENDING';
  let knownDecile = -1;
  let result: FollowResult = { status: submission.status, reason: submission.status.state === known ? 'progress' : 'changed' };
  for (;;) {
    const { status, reason } = result;
    job.updateDeployment(deployment, status);
    if (result.closed) job.markClosed(deployment);
    if (reason === 'budget') {
      return { ok: false, failure: { class: 'BUDGET', detail: `cost $${status.costUsd.toFixed(4)} reached max_cost_usd $${spec.backend.max_cost_usd}` } };
    }
    if (reason === 'timeout') {
      return { ok: false, failure: { class: 'TIMEOUT', detail: `attempt ran past resources.max_hours (${spec.resources.max_hours} h)` } };
    }
    knownDecile = Math.max(knownDecile, progressDecile(status.progress));
    if (reason === 'changed') {
      known = status.state;
      if (known === 'RUNNING') job.transition('RUNNING', `${deployment.backend} reports ${deployment.id} running`);
      if (known === 'SUCCEEDED') {
        if (job.state === 'SUBMITTED') job.transition('RUNNING', `${deployment.backend} reports ${deployment.id} already finished`);
        return { ok: true };
      }
      if (known === 'FAILED') {
        return { ok: false, failure: status.failure ?? { class: 'LOST', detail: 'backend reported FAILED without a reason' } };
      }
    }
    try {
      result = await follow({
        deployment,
        known,
        knownDecile,
        deadline,
        budgetUsd: spec.backend.max_cost_usd - job.costExcept(deployment),
      });
    } catch (err) {
      const failure = failureOf(err);
      if (!failure) throw err;
      return { ok: false, failure };
    }
  }
}

async function close(job: JobRecord, deployment: DeploymentRef): Promise<void> {
  await quick.closeDeployment(deployment);
  job.markClosed(deployment);
}

async function closeAll(job: JobRecord): Promise<void> {
  for (const d of job.openDeployments()) await close(job, d);
}
