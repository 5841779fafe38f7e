/**
 * trainingJob: one workflow per job (id `job-<job_id>`), the lifecycle of docs/architecture.md §4.
 *
 *   CREATED → QUEUED → SUBMITTED → RUNNING → EVALUATING → COMPLETED
 *      │          ↑                  ↓             ↑
 *      │        RETRY ←──────────  FAILED ──→ ABANDONED
 *   eval jobs skip EVALUATING: their run is the eval suite (the integrateResults child), RUNNING → COMPLETED
 *   where results.evaluation says "backend", the suite runs as attempts on the backend instead (eval-attempts.ts)
 *   any non-terminal state → CANCELLED (signed cancel update, or a Temporal cancellation)
 *
 * Every transition goes through JobRecord; the retry/failover decision is the pure planAfterFailure. After a
 * successful attempt the artifacts are committed (RUNNING), then the integrateResults child evaluates and promotes
 * (EVALUATING). Once the job is COMPLETED, ABANDONED or CANCELLED (after its clean-up) its owner's notification
 * target is told (workflows/lifecycle/notify-end.ts).
 */
import {
  ActivityFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
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
import type { DeploymentState } from '../activities/backends/types';
import type { ResultActivities } from '../activities/results';
import type { ResultSettings } from '../common/results-config';
import { type FailureInfo, typedFailure } from '../jobspec/failure';
import { formatSpecIssues } from '../jobspec/issues';
import { progressDecile } from '../jobspec/progress';
import type { TrainingJobSpec } from '../jobspec/schema';
import { verifyCancelRequest, type CancelRequest } from '../jobspec/signing';
import { JobRecord } from './lifecycle/job-record';
import { displayRepo } from './lifecycle/details';
import { followLimitSeconds, isoAfter } from './lifecycle/time-bounds';
import { compactStatus } from './lifecycle/carry';
import { notifyEnd } from './lifecycle/notify-end';
import { DEFAULT_OUTAGE_SECONDS, PATCH_INTERNAL, abandonInternal, close, closeAllOrHandOver, closeOrHandOver, innermostCause, outageOf, quickFor } from './cleanup';
import { integrateResults } from './integrate-results';
import { rlProgressSignal } from './grpo-run';
import { RlProgressBox, runRlAttempt } from './rl-attempt';
import { RL_BACKEND } from '../common/rl-names';
import { cancelUpdate, statusQuery, type JobStatus } from './messages';
import { integrateWorkflowId, workflowIdMismatch } from '../common/names';
import { backendCandidates } from '../jobspec/candidates';
import { evaluateOnBackend, ingestEvals, planRetry, type AttemptMode, type AttemptOutcome } from './eval-attempts';
import { evaluatesOnBackend } from './lifecycle/eval-placement';
import type { EvalSummary } from '../activities/evals';
import { evalRecords } from './integrate-results';

/** The backend an eval job's attempt shows (status, ForgeBackend): the eval suite on the orchestrator's workers. */
const EVAL_SUITE_BACKEND = 'eval-suite';

/** patched() ids: histories recorded before these behaviours replay along their old paths. */
const PATCH_RESULTS = 'forge-results-integration';
const PATCH_EVAL_JOBS = 'forge-eval-jobs';
/** A cancelled job's owner is notified too (job.cancelled, at on_cancel or else on_failure). */
const PATCH_NOTIFY_CANCEL = 'forge-notify-cancel';
/**
 * Deprecated: every rl job's history has this marker, so there is no old path to keep. As patched() it failed a query
 * in CI: replaying the job for a query, the SDK (1.24) had not announced the marker yet when the workflow reached it
 * (its look-ahead), patched() answered false and the replay hit a nondeterminism error. deprecatePatch() writes the
 * marker in the same place without asking.
 */
const PATCH_RL = 'forge-rl-grpo';
const PATCH_ACCEPT_AND_SUBMIT = 'forge-accept-and-submit';
const PATCH_EVAL_JOBS_RUN = 'forge-eval-jobs-run';
/** A remote attempt's deployment stays open after SUCCEEDED until its outputs are committed (fetched from its agent). */
const PATCH_REMOTE_OUTPUTS = 'forge-remote-outputs-from-agent';
/** A cancelled follow or admission wait is the job's cancellation, not a failed attempt (no FAILED, no RETRY). */
const PATCH_CANCEL_NOT_FAILURE = 'forge-cancel-not-failure';
/** Eval jobs and EVALUATING as attempts on a backend (`forge-trainer eval`) where results.evaluation says so. */
const PATCH_EVAL_ON_BACKEND = 'forge-eval-on-backend';

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

export async function trainingJob(rawSpec: unknown, carry?: TrainingJobCarry): Promise<JobStatus> {
  const job = new JobRecord(rawSpec, carry?.status);
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
  const known: { accepted?: AcceptedJob } = {};
  let carryOn: TrainingJobCarry | undefined;
  try {
    const end = await lifecycle.run(() => runJob(job, rawSpec, rlBox, known, carry));
    if (end && 'carry' in end) carryOn = end.carry;
    else accepted = end;
  } catch (err) {
    if (isCancellation(err)) {
      await CancellationScope.nonCancellable(async () => {
        await (patched(PATCH_INTERNAL) ? closeAllOrHandOver(job, known.accepted?.settings) : closeEach(job));
        job.transition('CANCELLED', ownerCancel ?? 'cancelled through Temporal (Web UI, CLI or API client)');
        // The owner hears of every end, a cancellation too (whoever cancelled), once its deployments are closed.
        if (known.accepted && patched(PATCH_NOTIFY_CANCEL)) await notifyEnd(job, known.accepted.spec, known.accepted.settings);
      });
      // A Temporal cancellation ends the execution as Canceled, as the Web UI expects.
      if (!ownerCancel) throw err;
    } else {
      // An error nobody expected (a bug, an untyped failure that escaped): clean up and end ABANDONED (INTERNAL).
      if (!patched(PATCH_INTERNAL)) throw err;
      await CancellationScope.nonCancellable(() => abandonInternal(job, err, known.accepted?.settings));
      accepted = known.accepted;
    }
  }
  // Search attributes and memo go with it (continueAsNew's defaults); the status query and cancel answer in the new run.
  if (carryOn) return continueAsNew<typeof trainingJob>(rawSpec, carryOn);
  if (accepted) await notifyEnd(job, accepted.spec, accepted.settings);
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

/** Where the retry loop stands: attempt 1 of a new job, or where the run before a continue-as-new left off. */
interface LoopPosition {
  attempt: number;
  retriesUsed: number;
  preferred: number;
}

/** What a run hands to the next when it continues as new: the job's whole status, its spec, where its retry loop is. */
export interface TrainingJobCarry extends LoopPosition {
  status: JobStatus;
  spec: TrainingJobSpec;
  specHash: string;
  settings: JobSettings;
  /** An eval job whose attempts evaluate on a backend (absent: training attempts). */
  mode?: AttemptMode;
}

/** How runJob ended: the job ended (accepted or not), or this run's history is long and the job goes on in a new run. */
type RunEnd = AcceptedJob | { carry: TrainingJobCarry } | undefined;

/**
 * A run continues as new past the operator's history_events_per_run (1000 in histories older than that setting), or
 * when Temporal suggests it, between two attempts.
 */
const CONTINUE_AS_NEW_EVENTS = 1000;
const PATCH_CONTINUE_AS_NEW = 'forge-continue-as-new';

function continueAsNewDue(settings: JobSettings): boolean {
  const info = workflowInfo();
  const limit = settings.historyEventsPerRun ?? CONTINUE_AS_NEW_EVENTS;
  return (info.continueAsNewSuggested || info.historyLength > limit) && patched(PATCH_CONTINUE_AS_NEW);
}

async function runJob(
  job: JobRecord,
  rawSpec: unknown,
  rlBox: RlProgressBox,
  known: { accepted?: AcceptedJob },
  carry?: TrainingJobCarry,
): Promise<RunEnd> {
  if (carry) {
    // A run after continue-as-new: the spec was validated by the first run; the retry loop goes on where it stood.
    known.accepted = { spec: carry.spec, settings: carry.settings };
    return retryLoop(job, rawSpec, rlBox, carry.spec, carry.specHash, carry.settings, carry, undefined, carry.mode);
  }
  // Validation and the first submission in one local activity (AcceptResult), not cancellable for the same reason as
  // admitAndSubmit: a cancel arriving meanwhile must still learn of the deployment, so that it gets closed.
  const v: AcceptResult = patched(PATCH_ACCEPT_AND_SUBMIT)
    ? await CancellationScope.nonCancellable(() =>
        quickFor(DEFAULT_OUTAGE_SECONDS).acceptAndSubmit.executeWithOptions({ summary: 'validate the signed spec and submit attempt 1' }, [
          { rawSpec, workflowId: workflowInfo().workflowId },
        ]),
      )
    : await quick.validateSpec(rawSpec);
  if (!v.ok) {
    job.failedValidation(formatSpecIssues(v.issues));
    return undefined;
  }
  const { spec, settings } = v;
  const wrongId = workflowIdMismatch(workflowInfo().workflowId, spec.job_id);
  if (wrongId) {
    job.failedValidation(wrongId);
    return undefined;
  }
  job.accepted(spec, v.specHash);
  known.accepted = { spec, settings };
  const results = settings.results;
  if (spec.job_type === 'eval' && results && patched(PATCH_EVAL_JOBS)) {
    // An eval job trains nothing: the suite runs against its base model, as the integrateResults child.
    const model = `${spec.base_model.source}:${spec.base_model.name}@${spec.base_model.revision}`;
    const what = `${model} on ${spec.objective.task_types.join(', ')}`;
    if (evaluatesOnBackend(results.evaluation, spec.backend.provider) && patched(PATCH_EVAL_ON_BACKEND)) {
      // The suite runs where the model is: `forge-trainer eval` as an attempt, like a finetune's (eval-attempts.ts).
      job.transition('QUEUED', `eval job: ${what} evaluated by forge-trainer eval on a backend`);
      const mode: AttemptMode = { evalRun: { taskTypes: spec.objective.task_types } };
      return retryLoop(job, rawSpec, rlBox, spec, v.specHash, settings, { attempt: 1, retriesUsed: 0, preferred: 0 }, undefined, mode);
    }
    if (patched(PATCH_EVAL_JOBS_RUN)) {
      // docs/architecture.md §4: eval jobs skip EVALUATING. The suite is their run: QUEUED → SUBMITTED → RUNNING → COMPLETED.
      job.transition('QUEUED', 'eval job: no training, the eval suite runs on the orchestrator');
      job.beginAttempt(1, EVAL_SUITE_BACKEND);
      if (
        await evaluate(job, spec, v.specHash, results, (childId) => {
          job.transition('SUBMITTED', `attempt 1: eval suite started as ${childId}`);
          job.transition('RUNNING', `evaluating ${what}`);
        })
      ) {
        job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
      }
      return { spec, settings };
    }
    job.transition('EVALUATING', `eval job: evaluating ${what}, no training`);
    if (await evaluate(job, spec, v.specHash, results)) job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
    return { spec, settings };
  }
  job.transition('QUEUED', 'waiting for admission');
  return retryLoop(job, rawSpec, rlBox, spec, v.specHash, settings, { attempt: 1, retriesUsed: 0, preferred: 0 }, v.first);
}

/** Attempts, each followed by the retry plan, until one succeeds, the plan abandons the job, or the run continues as new. */
async function retryLoop(
  job: JobRecord,
  rawSpec: unknown,
  rlBox: RlProgressBox,
  spec: TrainingJobSpec,
  specHash: string,
  settings: JobSettings,
  from: LoopPosition,
  first?: SubmitOutcome | null,
  mode: AttemptMode = {},
): Promise<RunEnd> {
  const results = settings.results;
  // An rl attempt runs the grpoRun child on the trainer hosts' queues instead of a backend submission (rl-attempt.ts).
  const rl = spec.job_type === 'rl' && settings.rl !== undefined;
  if (rl) deprecatePatch(PATCH_RL);
  const candidates = rl ? [RL_BACKEND] : backendCandidates(spec);
  let preferred = from.preferred;
  for (let attempt = from.attempt, retriesUsed = from.retriesUsed; ; attempt++, retriesUsed++) {
    const { index, outcome } = rl
      ? { index: 0, outcome: await runRlAttempt(job, spec, settings, attempt, rlBox) }
      : await runAttempt(job, spec, rawSpec, settings, candidates, preferred, attempt, attempt === 1 ? first : undefined, mode);
    let failure = outcome.ok ? undefined : outcome.failure;
    if (outcome.ok && mode.evalRun && results) {
      // An eval job's attempt: its rows, checked, into evals.jsonl (refused rows fail the attempt).
      const rows = await ingestEvals(job, spec, results);
      await closeKept(job);
      if (Array.isArray(rows)) {
        job.setEvals(evalRecords(rows, null));
        job.transition('COMPLETED', `evaluated on ${candidates[index]}: ${evalSummary(job)}`);
        return { spec, settings };
      }
      job.failed(rows);
      failure = rows;
    } else if (outcome.ok) {
      if (results?.enabled && patched(PATCH_RESULTS)) await integrate(job, spec, specHash, results, rawSpec, settings);
      else {
        await closeKept(job);
        job.transition('COMPLETED', `attempt ${attempt} succeeded on ${candidates[index]}`);
      }
      return { spec, settings };
    }
    const plan = planRetry(job, spec, settings, failure!, { retriesUsed, backendIndex: index, backendCount: candidates.length });
    if (plan.action === 'abandon') {
      job.transition('ABANDONED', `${plan.failure}: ${plan.reason}`);
      return { spec, settings };
    }
    job.transition('RETRY', `${plan.reason} → ${candidates[plan.backendIndex]}`);
    await sleep(plan.delayMs);
    preferred = plan.backendIndex;
    // A long retry history goes on in a fresh run (a cancel in this activation has already ended the sleep above).
    if (continueAsNewDue(settings)) {
      const carry = { status: compactStatus(job.status), spec, specHash, settings, attempt: attempt + 1, retriesUsed: retriesUsed + 1, preferred };
      return { carry: { ...carry, ...(mode.evalRun && { mode }) } };
    }
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
  mode: AttemptMode = {},
): Promise<{ index: number; outcome: AttemptOutcome }> {
  const fail = (index: number, failure: FailureInfo) => {
    if (mode.quiet) job.attemptFailed(failure);
    else job.failed(failure);
    return { index, outcome: { ok: false as const, failure } };
  };
  const budgetLeft = spec.backend.max_cost_usd - job.status.cost_usd;
  if (budgetLeft <= 0) return fail(preferred, { class: 'BUDGET', detail: `max_cost_usd $${spec.backend.max_cost_usd} spent` });

  // budgetUsd: admission never starts an attempt that could overspend what is left (activities/admission.ts).
  const admission = { candidates, preferred, spec, rawSpec, attempt, budgetUsd: budgetLeft, ...(mode.evalRun && { evalRun: mode.evalRun }) };
  // Not cancellable: a cancel arriving mid-submit must still learn of the deployment, so that it gets closed.
  const admitBudget = Math.max(...candidates.map((c) => outageOf(settings, c)));
  const admitAndSubmit = () => CancellationScope.nonCancellable(() => quickFor(admitBudget).admitAndSubmit.executeWithOptions({ summary: `admit and submit attempt ${attempt} (${candidates.join(', ')})` }, [admission]));
  let submitted: SubmitOutcome | null;
  try {
    submitted = firstTry !== undefined ? firstTry : await admitAndSubmit();
    while (!submitted) {
      await control(settings).awaitAdmission.executeWithOptions({ summary: `wait for admission of attempt ${attempt} (${candidates.join(', ')})` }, [
        { ...admission, pollSeconds: settings.admissionPollSeconds },
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

  const outcome = await followToEnd(job, spec, settings, submission, mode.quiet === true);
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
async function followToEnd(
  job: JobRecord,
  spec: TrainingJobSpec,
  settings: JobSettings,
  submission: Submission,
  quiet = false,
): Promise<AttemptOutcome> {
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

/** The close of histories from before PATCH_INTERNAL: a failed close fails the execution. */
async function closeEach(job: JobRecord): Promise<void> {
  for (const d of job.openDeployments()) await close(job, d);
}

/** Closes a deployment kept open for its outputs (none in histories from before PATCH_REMOTE_OUTPUTS). */
async function closeKept(job: JobRecord): Promise<void> {
  if (job.openDeployments().length) await CancellationScope.nonCancellable(() => closeAllOrHandOver(job, undefined));
}

// ---- results (docs/architecture.md §8) ----------------------------------------------------------------------------------------

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
  const cause = innermostCause(err);
  return { class: typedFailure(cause)?.class ?? 'LOST', detail: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` };
}

/**
 * The results could not be stored or evaluated: the job ends without training again (a remote deployment kept open
 * for its outputs is closed).
 */
function abandonResults(job: JobRecord, err: unknown, what: string): void {
  if (isCancellation(err)) throw err;
  const failure = resultFailure(err, what);
  job.failed(failure);
  job.transition('ABANDONED', `${failure.class}: ${failure.detail}`);
}

/** RUNNING (trainer succeeded) → artifacts committed → EVALUATING → COMPLETED. */
async function integrate(
  job: JobRecord,
  spec: TrainingJobSpec,
  specHash: string,
  settings: ResultSettings,
  rawSpec: unknown,
  jobSettings: JobSettings,
): Promise<void> {
  const deployment = job.status.deployments.at(-1)!.ref;
  try {
    const summary = `commit the outputs of attempt ${deployment.attempt} to ${displayRepo(spec.artifacts.output_repo)} ${spec.artifacts.output_branch}`;
    job.setArtifacts(await results(settings).commitArtifacts.executeWithOptions({ summary }, [{ spec, specHash, deployment }]));
  } catch (err) {
    if (!isCancellation(err)) await closeKept(job);
    abandonResults(job, err, 'the artifacts could not be committed');
    return;
  }
  await closeKept(job);
  const a = job.status.artifacts!;
  job.transition('EVALUATING', `artifacts committed to ${a.repo} ${a.branch} at ${a.commit.slice(0, 12)}`);
  let summaries: EvalSummary[] | undefined;
  if (evaluatesOnBackend(settings.evaluation, deployment.backend) && patched(PATCH_EVAL_ON_BACKEND)) {
    // The committed model is evaluated by `forge-trainer eval` on a backend (eval-attempts.ts); the child promotes.
    const run = (attempt: number, preferred: number, mode: AttemptMode) =>
      runAttempt(job, spec, rawSpec, jobSettings, backendCandidates(spec), preferred, attempt, undefined, mode);
    summaries = await evaluateOnBackend(job, spec, jobSettings, deployment.attempt + 1, run, () => closeKept(job));
    if (!summaries) return;
  }
  if (await evaluate(job, spec, specHash, settings, undefined, summaries)) job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
}

/** The integrateResults child: evals (and promotion for trained models). False when it failed (job abandoned). */
async function evaluate(
  job: JobRecord,
  spec: TrainingJobSpec,
  specHash: string,
  settings: ResultSettings,
  onStarted?: (childWorkflowId: string) => void,
  /** Already evaluated on a backend: the child only promotes. */
  summaries?: EvalSummary[],
): Promise<boolean> {
  try {
    // startChild + result() issues the same commands as executeChild, so older histories replay either way.
    const child = await startChild(integrateResults, {
      workflowId: integrateWorkflowId(spec.job_id),
      args: [{ spec, specHash, artifacts: job.status.artifacts, maxMinutes: settings.maxMinutes, ...(summaries && { summaries }) }],
    });
    onStarted?.(child.workflowId);
    const r = await child.result();
    job.setEvals(r.evals);
    if (r.failure) {
      job.failed({ class: r.failure.class, detail: `evaluation failed: ${r.failure.detail}` });
      job.transition('ABANDONED', `${r.failure.class}: evaluation failed: ${r.failure.detail}`);
      return false;
    }
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
