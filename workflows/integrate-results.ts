/**
 * integrateResults (child of trainingJob, id `job-<job_id>-integrate`; docs/architecture.md §3, §8): the EVALUATING state.
 * Evaluates the job's committed model on the eval suite of its task types, then — for trained models — offers it to
 * the elite registry, which promotes it where it beats the current elite. Eval jobs evaluate the spec's base model
 * and promote nothing.
 */
import { ActivityFailure, isCancellation, patched, proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import { type FailureInfo, typedFailure } from '../jobspec/failure';
import type { ArtifactsRecord } from '../activities/artifacts';
import type { EvalSummary } from '../activities/evals';
import type { PromotionDecision } from '../activities/registry';
import type { ResultActivities } from '../activities/results';
import type { TrainingJobSpec } from '../jobspec/schema';
import type { EvalRecord } from './messages';
import { integrateDetails } from './lifecycle/details';

export interface IntegrateInput {
  spec: TrainingJobSpec;
  specHash: string;
  /** The committed artifacts of a trained model; null for an eval job (its base model is evaluated). */
  artifacts: ArtifactsRecord | null;
  /** How long evaluation (with its retries) may take. */
  maxMinutes: number;
  /** Evaluated already, on a backend (workflows/job/eval-attempts.ts): only promotion is left. Absent in older inputs. */
  summaries?: EvalSummary[];
}

export interface IntegrateResult {
  evals: EvalRecord[];
  /**
   * Evaluation or promotion failed (the child completes all the same, never Failed): the parent abandons the job with
   * this. Absent in results from before it (their failures failed the child).
   */
  failure?: FailureInfo;
}

/** Results of children from before this patch failed the child execution instead of returning the failure. */
const PATCH_NO_FAIL = 'forge-integrate-no-fail';

/** What failed: a typed failure of ours, LOST for an activity that gave up, INTERNAL for anything else. */
function integrateFailure(err: unknown): FailureInfo {
  const cause = err instanceof ActivityFailure && err.cause ? err.cause : err;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return typedFailure(cause) ?? { class: err instanceof ActivityFailure ? 'LOST' : 'INTERNAL', detail };
}

export function evalRecords(summaries: EvalSummary[], decisions: PromotionDecision[] | null): EvalRecord[] {
  return summaries.map((s) => {
    const d = decisions?.find((x) => x.task_type === s.task_type);
    return {
      ...s,
      promoted: d ? d.promoted : null,
      promotion: d?.reason ?? null,
      elite_success_rate: d?.elite_success_rate ?? null,
      registry_commit: d?.registry_commit ?? null,
    };
  });
}

export async function integrateResults(input: IntegrateInput): Promise<IntegrateResult> {
  try {
    return await evaluateAndPromote(input);
  } catch (err) {
    if (isCancellation(err) || !patched(PATCH_NO_FAIL)) throw err;
    const failure = integrateFailure(err);
    setCurrentDetails(integrateDetails({ ...shown(input.spec, input.artifacts), stage: 'failed', failure: `${failure.class}: ${failure.detail}` }));
    return { evals: [], failure };
  }
}

async function evaluateAndPromote(input: IntegrateInput): Promise<IntegrateResult> {
  const { spec, artifacts } = input;
  const acts = proxyActivities<ResultActivities>({
    startToCloseTimeout: `${input.maxMinutes} minutes`,
    scheduleToCloseTimeout: `${input.maxMinutes} minutes`,
    // The activities heartbeat every few seconds while they serve a model or talk to git.
    heartbeatTimeout: '1 minute',
    retry: { initialInterval: '2 seconds', maximumInterval: '1 minute', maximumAttempts: 5 },
  });
  // Summaries and current details: user metadata shown in the Web UI (not checked on replay).
  const tasks = spec.objective.task_types.join(', ');
  const what = shown(spec, artifacts);
  const { model } = what;
  setCurrentDetails(integrateDetails({ ...what, stage: 'evaluating' }));
  const summaries = input.summaries ?? await acts.evaluateModel.executeWithOptions({ summary: `evaluate ${model} on ${tasks}` }, [
    {
      jobId: spec.job_id,
      taskTypes: spec.objective.task_types,
      model: artifacts ? { artifacts } : { baseModel: spec.base_model },
    },
  ]);
  if (!artifacts) {
    const evals = evalRecords(summaries, null);
    setCurrentDetails(integrateDetails({ ...what, stage: 'done', evals }));
    return { evals };
  }
  setCurrentDetails(integrateDetails({ ...what, stage: 'promoting', evals: evalRecords(summaries, null) }));
  const offered = summaries.map((e) => `${e.task_type} ${(e.success_rate * 100).toFixed(1)}% of ${e.tasks}`).join(', ');
  const decisions = await acts.promoteElites.executeWithOptions({ summary: `offer ${model} to the elite registry: ${offered}` }, [{
    job_id: spec.job_id,
    owner_did: spec.owner_did,
    base_model: spec.base_model,
    spec_sha256: input.specHash,
    target_metric: spec.objective.target_metric,
    artifacts: {
      repo: artifacts.repo,
      branch: artifacts.branch,
      commit: artifacts.commit,
      path: artifacts.path,
      manifest_sha256: artifacts.manifest_sha256,
      ...(artifacts.provenance ? { provenance: artifacts.provenance } : {}),
    },
    evals: summaries,
  }]);
  const evals = evalRecords(summaries, decisions);
  setCurrentDetails(integrateDetails({ ...what, stage: 'done', evals }));
  return { evals };
}

/** What the Web UI names: the job, the model evaluated (the trained one's commit, or the base model), its task types. */
function shown(spec: TrainingJobSpec, artifacts: ArtifactsRecord | null) {
  const model = artifacts ? `the trained model (${artifacts.commit.slice(0, 12)})` : spec.base_model.name;
  return { jobId: spec.job_id, model, taskTypes: spec.objective.task_types };
}
