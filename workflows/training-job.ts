/**
 * trainingJob: one workflow per job (id `job-<job_id>`), the lifecycle of DESIGN.md §4.
 *
 *   CREATED → QUEUED → SUBMITTED → RUNNING → EVALUATING → COMPLETED
 *      │          ↑                  ↓             ↑
 *      │        RETRY ←──────────  FAILED ──→ ABANDONED
 *   eval jobs skip EVALUATING: their run is the eval suite (the integrateResults child), RUNNING → COMPLETED
 *   any non-terminal state → CANCELLED (signed cancel update, or a Temporal cancellation)
 *
 * Every transition goes through JobRecord; the retry/failover decision is the pure planAfterFailure. After a
 * successful attempt the artifacts are committed (RUNNING), then the integrateResults child evaluates and promotes
 * (EVALUATING). Once the job is COMPLETED or ABANDONED its owner's notification target is told.
 */
import {
  ActivityFailure,
  CancellationScope,
  ChildWorkflowFailure,
  allHandlersFinished,
  condition,
  deprecatePatch,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import type { AcceptResult, ControlActivities, FollowResult, JobSettings, Submission, SubmitOutcome } from '../activities/control';
import type { DeploymentRef, DeploymentState } from '../activities/backends/types';
import type { NotificationEvent } from '../activities/notify';
import type { ResultActivities } from '../activities/results';
import type { ResultSettings } from '../common/results-config';
import { type FailureInfo, typedFailure } from '../spec/failure';
import { describeNotificationTarget } from '../spec/notification-target';
import { formatSpecIssues } from '../spec/issues';
import { progressDecile } from '../spec/progress';
import type { TrainingJobSpec } from '../spec/schema';
import { verifyCancelRequest, type CancelRequest } from '../spec/signing';
import { JobRecord } from './lifecycle/job-record';
import { planAfterFailure } from './lifecycle/retry-plan';
import { integrateResults } from './integrate-results';
import { rlProgressSignal } from './grpo-run';
import { RlProgressBox, runRlAttempt } from './rl-attempt';
import { RL_BACKEND } from '../common/rl-names';
import { cancelUpdate, statusQuery, type JobStatus } from './messages';
import { integrateWorkflowId, jobWorkflowId } from './names';
import { backendCandidates } from '../spec/candidates';

/** The backend an eval job's attempt shows (status, ForgeBackend): the eval suite on the orchestrator's workers. */
const EVAL_SUITE_BACKEND = 'eval-suite';

/** patched() ids: histories recorded before these behaviours replay along their old paths. */
const PATCH_RESULTS = 'forge-results-integration';
const PATCH_EVAL_JOBS = 'forge-eval-jobs';
const PATCH_NOTIFY = 'forge-notifications';
/**
 * Deprecated: every rl job's history has this marker, so there is no old path to keep. As patched() it failed a query
 * in CI: replaying the job for a query, the SDK (1.24) had not announced the marker yet when the workflow reached it
 * (its look-ahead), patched() answered false and the replay hit a nondeterminism error. deprecatePatch() writes the
 * marker in the same place without asking.
 */
const PATCH_RL = 'forge-rl-grpo';
const PATCH_ACCEPT_AND_SUBMIT = 'forge-accept-and-submit';
const PATCH_EVAL_JOBS_RUN = 'forge-eval-jobs-run';

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
  return typedFailure(err.cause) ?? { class: 'LOST', detail: `${err.activityType} failed: ${err.cause?.message ?? err.message}` };
}

export async function trainingJob(rawSpec: unknown): Promise<JobStatus> {
  const job = new JobRecord(rawSpec);
  const lifecycle = new CancellationScope();
  let ownerCancel: string | undefined;

  setHandler(statusQuery, () => job.status);
  // rl jobs: the grpoRun child's progress (trainer host, policy version, latest step) into the status.
  const rlBox = new RlProgressBox();
  setHandler(rlProgressSignal, (p) => rlBox.receive(job, p));
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

  let accepted: AcceptedJob | undefined;
  try {
    accepted = await lifecycle.run(() => runJob(job, rawSpec, rlBox));
  } catch (err) {
    if (!isCancellation(err)) throw err;
    await CancellationScope.nonCancellable(async () => {
      await closeAll(job);
      job.transition('CANCELLED', ownerCancel ?? 'cancelled through Temporal (Web UI, CLI or API client)');
    });
    // A Temporal cancellation ends the execution as Canceled, as the Web UI expects.
    if (!ownerCancel) throw err;
  }
  if (accepted) await notifyEnd(job, accepted);
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

/** A job whose spec passed validation: what its end (notifications) needs. */
interface AcceptedJob {
  spec: TrainingJobSpec;
  settings: JobSettings;
}

async function runJob(job: JobRecord, rawSpec: unknown, rlBox: RlProgressBox): Promise<AcceptedJob | undefined> {
  // Validation and the first submission in one local activity (AcceptResult), not cancellable for the same reason as
  // admitAndSubmit: a cancel arriving meanwhile must still learn of the deployment, so that it gets closed.
  const v: AcceptResult = patched(PATCH_ACCEPT_AND_SUBMIT)
    ? await CancellationScope.nonCancellable(() => quick.acceptAndSubmit({ rawSpec, workflowId: workflowInfo().workflowId }))
    : await quick.validateSpec(rawSpec);
  if (!v.ok) {
    job.failedValidation(formatSpecIssues(v.issues));
    return undefined;
  }
  const { spec, settings } = v;
  if (workflowInfo().workflowId !== jobWorkflowId(spec.job_id)) {
    job.failedValidation(`job_id: workflow id must be ${jobWorkflowId(spec.job_id)}, got ${workflowInfo().workflowId}`);
    return undefined;
  }
  job.accepted(spec, v.specHash);
  const results = settings.results;
  if (spec.job_type === 'eval' && results && patched(PATCH_EVAL_JOBS)) {
    // An eval job trains nothing: the suite runs against its base model, as the integrateResults child.
    const model = `${spec.base_model.source}:${spec.base_model.name}@${spec.base_model.revision}`;
    const what = `${model} on ${spec.objective.task_types.join(', ')}`;
    if (patched(PATCH_EVAL_JOBS_RUN)) {
      // DESIGN.md §4: eval jobs skip EVALUATING. The suite is their run: QUEUED → SUBMITTED → RUNNING → COMPLETED.
      job.transition('QUEUED', 'eval job: no training, the eval suite runs on the orchestrator');
      job.beginAttempt(1, EVAL_SUITE_BACKEND);
      if (await evaluate(job, spec, v.specHash, results, (childId) => {
        job.transition('SUBMITTED', `attempt 1: eval suite started as ${childId}`);
        job.transition('RUNNING', `evaluating ${what}`);
      })) {
        job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
      }
      return { spec, settings };
    }
    job.transition('EVALUATING', `eval job: evaluating ${what}, no training`);
    if (await evaluate(job, spec, v.specHash, results)) job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
    return { spec, settings };
  }
  job.transition('QUEUED', 'waiting for admission');

  // An rl attempt runs the grpoRun child on the trainer hosts' queues instead of a backend submission (rl-attempt.ts).
  const rl = spec.job_type === 'rl' && settings.rl !== undefined;
  if (rl) deprecatePatch(PATCH_RL);
  const candidates = rl ? [RL_BACKEND] : backendCandidates(spec);
  let preferred = 0;
  for (let attempt = 1, retriesUsed = 0; ; attempt++, retriesUsed++) {
    const { index, outcome } = rl
      ? { index: 0, outcome: await runRlAttempt(job, spec, settings, attempt, rlBox) }
      : await runAttempt(job, spec, rawSpec, settings, candidates, preferred, attempt, attempt === 1 ? v.first : undefined);
    if (outcome.ok) {
      if (results?.enabled && patched(PATCH_RESULTS)) await integrate(job, spec, v.specHash, results);
      else job.transition('COMPLETED', `attempt ${attempt} succeeded on ${candidates[index]}`);
      return { spec, settings };
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
      return { spec, settings };
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
  /** What acceptAndSubmit already did for attempt 1 (undefined: nothing, admit and submit here). */
  firstTry?: SubmitOutcome | null,
): Promise<{ index: number; outcome: AttemptOutcome }> {
  const fail = (index: number, failure: FailureInfo) => {
    job.failed(failure);
    return { index, outcome: { ok: false as const, failure } };
  };
  const budgetLeft = spec.backend.max_cost_usd - job.status.cost_usd;
  if (budgetLeft <= 0) return fail(preferred, { class: 'BUDGET', detail: `max_cost_usd $${spec.backend.max_cost_usd} spent` });

  // budgetUsd: admission never starts an attempt that could overspend what is left (activities/admission.ts).
  const admission = { candidates, preferred, spec, rawSpec, attempt, budgetUsd: budgetLeft };
  // Not cancellable: a cancel arriving mid-submit must still learn of the deployment, so that it gets closed.
  const admitAndSubmit = () => CancellationScope.nonCancellable(() => quick.admitAndSubmit(admission));
  let submitted: SubmitOutcome | null;
  try {
    submitted = firstTry !== undefined ? firstTry : await admitAndSubmit();
    while (!submitted) {
      await control(settings).awaitAdmission({ ...admission, pollSeconds: settings.admissionPollSeconds });
      submitted = await admitAndSubmit();
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
  let result: FollowResult = {
    status: submission.status,
    reason: submission.status.state === known ? 'progress' : 'changed',
    ...(submission.closed ? { closed: true } : {}),
  };
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
    // Progress already in the submission's own status is not counted, so the first follow reports it: a job's history
    // then does not depend on whether its trainer printed a progress line before the submit looked (bench/lifecycle
    // saw 21 or 27 events for the same job). Replay-safe: it changes only the follow activity's input.
    if (result.status !== submission.status) knownDecile = Math.max(knownDecile, progressDecile(status.progress));
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

// ---- results (DESIGN.md §8) ----------------------------------------------------------------------------------------

function results(settings: ResultSettings) {
  return proxyActivities<ResultActivities>({
    startToCloseTimeout: `${settings.maxMinutes} minutes`,
    scheduleToCloseTimeout: `${settings.maxMinutes} minutes`,
    // They heartbeat every few seconds while they copy, hash and push.
    heartbeatTimeout: '1 minute',
    retry: { initialInterval: '2 seconds', maximumInterval: '1 minute' },
  });
}

/** The innermost cause of a failed activity or child, as a failure of ours (REJECTED when it said so, else LOST). */
function resultFailure(err: unknown, what: string): FailureInfo {
  let cause: unknown = err;
  while ((cause instanceof ActivityFailure || cause instanceof ChildWorkflowFailure) && cause.cause) cause = cause.cause;
  return { class: typedFailure(cause)?.class ?? 'LOST', detail: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` };
}

/** The results could not be stored or evaluated: the job ends without training again (its outputs stay on the backend). */
function abandonResults(job: JobRecord, err: unknown, what: string): void {
  if (isCancellation(err)) throw err;
  const failure = resultFailure(err, what);
  job.failed(failure);
  job.transition('ABANDONED', `${failure.class}: ${failure.detail}`);
}

/** RUNNING (trainer succeeded) → artifacts committed → EVALUATING → COMPLETED. */
async function integrate(job: JobRecord, spec: TrainingJobSpec, specHash: string, settings: ResultSettings): Promise<void> {
  const deployment = job.status.deployments.at(-1)!.ref;
  try {
    job.setArtifacts(await results(settings).commitArtifacts({ spec, specHash, deployment }));
  } catch (err) {
    abandonResults(job, err, 'the artifacts could not be committed');
    return;
  }
  const a = job.status.artifacts!;
  job.transition('EVALUATING', `artifacts committed to ${a.repo} ${a.branch} at ${a.commit.slice(0, 12)}`);
  if (await evaluate(job, spec, specHash, settings)) job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
}

/** The integrateResults child: evals (and promotion for trained models). False when it failed (job abandoned). */
async function evaluate(
  job: JobRecord,
  spec: TrainingJobSpec,
  specHash: string,
  settings: ResultSettings,
  onStarted?: (childWorkflowId: string) => void,
): Promise<boolean> {
  try {
    // startChild + result() issues the same commands as executeChild, so older histories replay either way.
    const child = await startChild(integrateResults, {
      workflowId: integrateWorkflowId(spec.job_id),
      args: [{ spec, specHash, artifacts: job.status.artifacts, maxMinutes: settings.maxMinutes }],
    });
    onStarted?.(child.workflowId);
    const r = await child.result();
    job.setEvals(r.evals);
    return true;
  } catch (err) {
    abandonResults(job, err, 'evaluation failed');
    return false;
  }
}

function evalSummary(job: JobRecord): string {
  const parts = job.status.evals.map((e) => {
    const rate = e.tasks ? `${(e.success_rate * 100).toFixed(1)}%` : 'no eval tasks';
    return `${e.task_type} ${rate}${e.promoted ? ' (promoted)' : ''}`;
  });
  return parts.join(', ') || 'no task types';
}

/** Tells the spec's notification target how the job ended. A failed delivery is recorded; the job stays as it ended. */
async function notifyEnd(job: JobRecord, { spec, settings }: AcceptedJob): Promise<void> {
  const ending: Partial<Record<string, [NotificationEvent, string | undefined]>> = {
    COMPLETED: ['job.completed', spec.notifications?.on_complete],
    ABANDONED: ['job.failed', spec.notifications?.on_failure],
  };
  const [event, target] = ending[job.state] ?? [];
  const retry = settings.results?.notify;
  if (!event || !target || !retry || !patched(PATCH_NOTIFY)) return;
  const s = job.status;
  const last = s.transitions.at(-1)!;
  const send = proxyActivities<ResultActivities>({
    startToCloseTimeout: '2 minutes',
    retry: {
      initialInterval: `${retry.initialIntervalSeconds} seconds`,
      maximumInterval: `${retry.maximumIntervalSeconds} seconds`,
      maximumAttempts: retry.maximumAttempts,
    },
  }).notify;
  const record = { event, target: describeNotificationTarget(target), at: new Date().toISOString() };
  try {
    const r = await send({
      target,
      payload: {
        event,
        job_id: s.job_id,
        job_type: s.job_type,
        owner_did: s.owner_did,
        state: s.state,
        reason: last.reason,
        at: last.at,
        artifacts: s.artifacts ? { repo: s.artifacts.repo, branch: s.artifacts.branch, commit: s.artifacts.commit } : null,
        evals: s.evals.map((e) => ({ task_type: e.task_type, success_rate: e.success_rate, promoted: e.promoted })),
        last_error: s.last_error ? { class: s.last_error.class, detail: s.last_error.detail } : null,
      },
    });
    job.addNotification({ ...record, delivered: true, detail: `delivered to ${r.delivered_to.join(', ')}` });
  } catch (err) {
    job.addNotification({ ...record, delivered: false, detail: resultFailure(err, 'not delivered').detail });
  }
}
