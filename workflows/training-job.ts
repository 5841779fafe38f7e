/**
 * trainingJob: one workflow per job (id `job-<job_id>`), the lifecycle of docs/architecture.md §4.
 *
 *   CREATED → QUEUED → SUBMITTED → RUNNING → EVALUATING → COMPLETED
 *      │          ↑                  ↓             ↑
 *      │        RETRY ←──────────  FAILED ──→ ABANDONED
 *   eval jobs skip EVALUATING: their run is the eval suite (the integrateResults child), RUNNING → COMPLETED
 *   where results.evaluation says "backend", the suite runs as attempts on the backend instead (job/eval-attempts.ts)
 *   any non-terminal state → CANCELLED (signed cancel update, or a Temporal cancellation)
 *
 * Every transition goes through JobRecord; the retry/failover decision is the pure planAfterFailure. After a
 * successful attempt the artifacts are committed (RUNNING), then the integrateResults child evaluates and promotes
 * (EVALUATING). Once the job is COMPLETED, ABANDONED or CANCELLED (after its clean-up) its owner's notification
 * target is told (workflows/lifecycle/notify-end.ts).
 */
import {
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  deprecatePatch,
  isCancellation,
  patched,
  proxyLocalActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { AcceptResult, ControlActivities, JobSettings, SubmitOutcome } from '../activities/control/activities';
import { formatSpecIssues } from '../jobspec/issues';
import type { TrainingJobSpec } from '../jobspec/schema';
import type { SignedSpec } from '../jobspec/signed-spec';
import { verifyCancelRequest, type CancelRequest } from '../jobspec/signing';
import { backendCandidates } from '../jobspec/candidates';
import { RL_BACKEND } from '../common/rl-names';
import { workflowIdMismatch } from '../common/names';
import { JobRecord } from './lifecycle/job-record';
import { compactStatus } from './lifecycle/carry';
import { notifyEnd } from './lifecycle/notify-end';
import { evaluatesOnBackend } from './lifecycle/eval-placement';
import { evalRecords } from './integrate-results';
import { rlProgressSignal } from './grpo-run';
import { cancelUpdate, statusQuery, type JobStatus } from './messages';
import { runAttempt } from './job/attempt';
import { DEFAULT_OUTAGE_SECONDS, PATCH_INTERNAL, abandonInternal, closeAllOrHandOver, closeEach, closeKept, quickFor } from './job/cleanup';
import { ingestEvals, planRetry, type AttemptMode } from './job/eval-attempts';
import {
  PATCH_ACCEPT_AND_SUBMIT,
  PATCH_CONTINUE_AS_NEW,
  PATCH_EVAL_JOBS,
  PATCH_EVAL_JOBS_RUN,
  PATCH_EVAL_ON_BACKEND,
  PATCH_NOTIFY_CANCEL,
  PATCH_RESULTS,
  PATCH_RL,
} from './job/patches';
import { evalSummary, evaluate, integrate } from './job/results';
import { RlProgressBox, runRlAttempt } from './job/rl-attempt';
import type { JobRun } from './job/run';

/** The backend an eval job's attempt shows (status, ForgeBackend): the eval suite on the orchestrator's workers. */
const EVAL_SUITE_BACKEND = 'eval-suite';

// validateSpec of histories from before acceptAndSubmit: a local activity, no task-queue round trip.
const quick = proxyLocalActivities<ControlActivities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 10 },
});

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
    const signed: SignedSpec = { spec: carry.spec, raw: rawSpec as Record<string, unknown>, sha256: carry.specHash };
    return retryLoop({ job, signed, settings: carry.settings, rlBox }, carry, undefined, carry.mode);
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
  const run: JobRun = { job, signed: { spec, raw: rawSpec as Record<string, unknown>, sha256: v.specHash }, settings, rlBox };
  const start = { attempt: 1, retriesUsed: 0, preferred: 0 };
  const results = settings.results;
  if (spec.job_type === 'eval' && results && patched(PATCH_EVAL_JOBS)) {
    // An eval job trains nothing: the suite runs against its base model, as the integrateResults child.
    const model = `${spec.base_model.source}:${spec.base_model.name}@${spec.base_model.revision}`;
    const what = `${model} on ${spec.objective.task_types.join(', ')}`;
    if (evaluatesOnBackend(results.evaluation, spec.backend.provider) && patched(PATCH_EVAL_ON_BACKEND)) {
      // The suite runs where the model is: `forge-trainer eval` as an attempt, like a finetune's (job/eval-attempts.ts).
      job.transition('QUEUED', `eval job: ${what} evaluated by forge-trainer eval on a backend`);
      return retryLoop(run, start, undefined, { evalRun: { taskTypes: spec.objective.task_types } });
    }
    if (patched(PATCH_EVAL_JOBS_RUN)) {
      // docs/architecture.md §4: eval jobs skip EVALUATING. The suite is their run: QUEUED → SUBMITTED → RUNNING → COMPLETED.
      job.transition('QUEUED', 'eval job: no training, the eval suite runs on the orchestrator');
      job.beginAttempt(1, EVAL_SUITE_BACKEND);
      const started = (childId: string) => {
        job.transition('SUBMITTED', `attempt 1: eval suite started as ${childId}`);
        job.transition('RUNNING', `evaluating ${what}`);
      };
      if (await evaluate(job, run.signed, results, started)) job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
      return { spec, settings };
    }
    job.transition('EVALUATING', `eval job: evaluating ${what}, no training`);
    if (await evaluate(job, run.signed, results)) job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
    return { spec, settings };
  }
  job.transition('QUEUED', 'waiting for admission');
  return retryLoop(run, start, v.first);
}

/** Attempts, each followed by the retry plan, until one succeeds, the plan abandons the job, or the run continues as new. */
async function retryLoop(run: JobRun, from: LoopPosition, first?: SubmitOutcome | null, mode: AttemptMode = {}): Promise<RunEnd> {
  const { job, settings } = run;
  const { spec } = run.signed;
  const results = settings.results;
  // An rl attempt runs the grpoRun child on the trainer hosts' queues instead of a backend submission (job/rl-attempt.ts).
  const rl = spec.job_type === 'rl' && settings.rl !== undefined;
  if (rl) deprecatePatch(PATCH_RL);
  const candidates = rl ? [RL_BACKEND] : backendCandidates(spec);
  let preferred = from.preferred;
  for (let attempt = from.attempt, retriesUsed = from.retriesUsed; ; attempt++, retriesUsed++) {
    const { index, outcome } = rl
      ? { index: 0, outcome: await runRlAttempt(job, spec, settings, attempt, run.rlBox) }
      : await runAttempt(run, { candidates, preferred, attempt, mode, ...(attempt === 1 && { firstTry: first }) });
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
      if (results?.enabled && patched(PATCH_RESULTS)) await integrate(run, results);
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
      const position = { attempt: attempt + 1, retriesUsed: retriesUsed + 1, preferred };
      const carry = { status: compactStatus(job.status), spec, specHash: run.signed.sha256, settings, ...position };
      return { carry: { ...carry, ...(mode.evalRun && { mode }) } };
    }
  }
}
