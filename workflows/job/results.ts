/**
 * The results of a successful attempt (docs/architecture.md §8): RUNNING (trainer succeeded) → artifacts committed →
 * EVALUATING (the integrateResults child, or eval attempts on a backend first) → COMPLETED.
 */
import { isCancellation, patched, proxyActivities, startChild } from '@temporalio/workflow';
import type { EvalSummary } from '../../activities/evals';
import type { ResultActivities } from '../../activities/results';
import type { ResultSettings } from '../../common/results-config';
import { integrateWorkflowId } from '../../common/names';
import { backendCandidates } from '../../jobspec/candidates';
import { type FailureInfo, typedFailure } from '../../jobspec/failure';
import type { SignedSpec } from '../../jobspec/signed-spec';
import { integrateResults } from '../integrate-results';
import { displayRepo } from '../lifecycle/details';
import { evaluatesOnBackend } from '../lifecycle/eval-placement';
import type { JobRecord } from '../lifecycle/job-record';
import { runAttempt } from './attempt';
import { closeKept, innermostCause } from './cleanup';
import { evaluateOnBackend, type AttemptMode } from './eval-attempts';
import { PATCH_EVAL_ON_BACKEND } from './patches';
import type { JobRun } from './run';

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
export async function integrate(run: JobRun, settings: ResultSettings): Promise<void> {
  const { job, signed } = run;
  const { spec } = signed;
  const deployment = job.status.deployments.at(-1)!.ref;
  try {
    const summary = `commit the outputs of attempt ${deployment.attempt} to ${displayRepo(spec.artifacts.output_repo)} ${spec.artifacts.output_branch}`;
    job.setArtifacts(await results(settings).commitArtifacts.executeWithOptions({ summary }, [{ spec, specHash: signed.sha256, deployment }]));
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
    const candidates = backendCandidates(spec);
    const attemptOn = (attempt: number, preferred: number, mode: AttemptMode) => runAttempt(run, { candidates, preferred, attempt, mode });
    summaries = await evaluateOnBackend(job, spec, run.settings, deployment.attempt + 1, attemptOn, () => closeKept(job));
    if (!summaries) return;
  }
  if (await evaluate(job, signed, settings, undefined, summaries)) job.transition('COMPLETED', `evaluated: ${evalSummary(job)}`);
}

/** The integrateResults child: evals (and promotion for trained models). False when it failed (job abandoned). */
export async function evaluate(
  job: JobRecord,
  signed: SignedSpec,
  settings: ResultSettings,
  onStarted?: (childWorkflowId: string) => void,
  /** Already evaluated on a backend: the child only promotes. */
  summaries?: EvalSummary[],
): Promise<boolean> {
  const { spec } = signed;
  try {
    // startChild + result() issues the same commands as executeChild, so older histories replay either way.
    const child = await startChild(integrateResults, {
      workflowId: integrateWorkflowId(spec.job_id),
      args: [{ spec, specHash: signed.sha256, artifacts: job.status.artifacts, maxMinutes: settings.maxMinutes, ...(summaries && { summaries }) }],
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

/** The evals of a job in one line ("qa 80.0% (promoted), code no eval tasks"). */
export function evalSummary(job: JobRecord): string {
  const parts = job.status.evals.map((e) => {
    const rate = e.tasks ? `${(e.success_rate * 100).toFixed(1)}%` : 'no eval tasks';
    return `${e.task_type} ${rate}${e.promoted ? ' (promoted)' : ''}`;
  });
  return parts.join(', ') || 'no task types';
}
