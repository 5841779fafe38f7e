/**
 * Evaluation on the backends (README "Where evaluation runs"): an eval attempt runs `forge-trainer eval` where the
 * model is, submitted, followed and closed like a training attempt; its rows are then taken back, checked and appended
 * to evals.jsonl by the ingestBackendEvals activity (activities/backend-evals.ts).
 *
 * Eval jobs run their attempts through trainingJob's retry loop (QUEUED → SUBMITTED → RUNNING → COMPLETED). A
 * finetune's EVALUATING step runs them here, staying EVALUATING: a failed eval attempt is recorded in `errors` and
 * retried per the same plan (planAfterFailure), without FAILED/RETRY transitions (the state table has no way back
 * from EVALUATING); when the plan gives up, EVALUATING → FAILED → ABANDONED.
 */
import { isCancellation, proxyActivities, sleep } from '@temporalio/workflow';
import type { JobSettings } from '../../activities/control/activities';
import type { EvalSummary } from '../../activities/evals';
import type { IngestEvalsInput, ResultActivities } from '../../activities/results';
import type { ResultSettings } from '../../common/results-config';
import { type FailureInfo, typedFailure } from '../../jobspec/failure';
import type { TrainingJobSpec } from '../../jobspec/schema';
import { backendCandidates } from '../../jobspec/candidates';
import { innermostCause } from './cleanup';
import type { EvalAttemptRequest } from '../lifecycle/eval-placement';
import type { JobRecord } from '../lifecycle/job-record';
import { planAfterFailure, type RetryPlan } from '../lifecycle/retry-plan';

/** How an attempt runs: training (default), or evaluating `evalRun`; `quiet` keeps the job's state (EVALUATING). */
export interface AttemptMode {
  evalRun?: EvalAttemptRequest;
  quiet?: boolean;
}

export type AttemptOutcome = { ok: true; outputsOnDeployment?: boolean } | { ok: false; failure: FailureInfo };
export type RunAttemptFn = (attempt: number, preferred: number, mode: AttemptMode) => Promise<{ index: number; outcome: AttemptOutcome }>;

/** The retry plan (lifecycle/retry-plan.ts) after a failed attempt of this job: training and eval attempts alike. */
export function planRetry(
  job: JobRecord,
  spec: TrainingJobSpec,
  settings: JobSettings,
  failure: FailureInfo,
  at: { retriesUsed: number; backendIndex: number; backendCount: number },
): RetryPlan {
  return planAfterFailure({
    failure: failure.class,
    ...at,
    maxRetries: settings.maxRetries,
    costUsd: job.status.cost_usd,
    maxCostUsd: spec.backend.max_cost_usd,
    backoff: settings.backoff,
  });
}

/** The successful eval attempt's rows into evals.jsonl; the summaries, or why they were refused. */
export async function ingestEvals(job: JobRecord, spec: TrainingJobSpec, settings: ResultSettings): Promise<EvalSummary[] | FailureInfo> {
  const deployment = job.status.deployments.at(-1)!.ref;
  const input: IngestEvalsInput = {
    jobId: spec.job_id,
    taskTypes: spec.objective.task_types,
    model: job.status.artifacts ? { artifacts: job.status.artifacts } : { baseModel: spec.base_model },
    deployment,
  };
  const ingest = proxyActivities<ResultActivities>({
    startToCloseTimeout: `${settings.maxMinutes} minutes`,
    scheduleToCloseTimeout: `${settings.maxMinutes} minutes`,
    heartbeatTimeout: '1 minute',
    retry: { initialInterval: '2 seconds', maximumInterval: '1 minute', maximumAttempts: 5 },
  }).ingestBackendEvals;
  try {
    return await ingest.executeWithOptions({ summary: `take the eval rows of attempt ${deployment.attempt} from ${deployment.backend} (${deployment.id})` }, [input]);
  } catch (err) {
    if (isCancellation(err)) throw err;
    const cause = innermostCause(err);
    return { class: typedFailure(cause)?.class ?? 'LOST', detail: `the eval rows of attempt ${deployment.attempt} on ${deployment.backend}: ${cause instanceof Error ? cause.message : String(cause)}` };
  }
}

/**
 * A finetune's EVALUATING on the backend: eval attempts from `firstAttempt` until one succeeds and its rows are taken
 * (the summaries), or the plan gives up (undefined: the job is ABANDONED). `closeKept` releases a deployment kept open
 * for its outputs once they are read.
 */
export async function evaluateOnBackend(
  job: JobRecord,
  spec: TrainingJobSpec,
  settings: JobSettings,
  firstAttempt: number,
  runAttempt: RunAttemptFn,
  closeKept: () => Promise<void>,
): Promise<EvalSummary[] | undefined> {
  const results = settings.results!;
  const candidates = backendCandidates(spec);
  const model = job.status.artifacts!;
  const evalRun: EvalAttemptRequest = {
    taskTypes: spec.objective.task_types,
    model: { kind: 'git', repo: spec.artifacts.output_repo, branch: model.branch, commit: model.commit, path: model.path },
  };
  let preferred = candidates.indexOf(job.status.deployments.at(-1)!.ref.backend);
  if (preferred < 0) preferred = 0;
  for (let attempt = firstAttempt, retriesUsed = 0; ; attempt++, retriesUsed++) {
    const { index, outcome } = await runAttempt(attempt, preferred, { evalRun, quiet: true });
    let failure: FailureInfo;
    if (outcome.ok) {
      const rows = await ingestEvals(job, spec, results);
      await closeKept();
      if (Array.isArray(rows)) return rows;
      failure = rows;
      job.attemptFailed(failure);
    } else failure = outcome.failure;
    const plan = planRetry(job, spec, settings, failure, { retriesUsed, backendIndex: index, backendCount: candidates.length });
    if (plan.action === 'abandon') {
      // The error is recorded already (attemptFailed): only the state moves.
      job.transition('FAILED', `${failure.class}: ${failure.detail}`);
      job.transition('ABANDONED', `${plan.failure}: evaluation on the backend failed: ${plan.reason}`);
      return undefined;
    }
    await sleep(plan.delayMs);
    preferred = plan.backendIndex;
  }
}
