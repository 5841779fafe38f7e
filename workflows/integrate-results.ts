/**
 * integrateResults (child of trainingJob, id `job-<job_id>-integrate`; DESIGN.md §3, §8): the EVALUATING state.
 * Evaluates the job's committed model on the eval suite of its task types, then — for trained models — offers it to
 * the elite registry, which promotes it where it beats the current elite. Eval jobs evaluate the spec's base model
 * and promote nothing.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { ArtifactsRecord } from '../activities/artifacts';
import type { EvalSummary } from '../activities/evals';
import type { PromotionDecision } from '../activities/registry';
import type { ResultActivities } from '../activities/results';
import type { TrainingJobSpec } from '../spec/schema';
import type { EvalRecord } from './messages';

export interface IntegrateInput {
  spec: TrainingJobSpec;
  specHash: string;
  /** The committed artifacts of a trained model; null for an eval job (its base model is evaluated). */
  artifacts: ArtifactsRecord | null;
  /** How long evaluation (with its retries) may take. */
  maxMinutes: number;
}

export interface IntegrateResult {
  evals: EvalRecord[];
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
  const { spec, artifacts } = input;
  const acts = proxyActivities<ResultActivities>({
    startToCloseTimeout: `${input.maxMinutes} minutes`,
    scheduleToCloseTimeout: `${input.maxMinutes} minutes`,
    // The activities heartbeat every few seconds while they serve a model or talk to git.
    heartbeatTimeout: '1 minute',
    retry: { initialInterval: '2 seconds', maximumInterval: '1 minute', maximumAttempts: 5 },
  });
  const summaries = await acts.evaluateModel({
    jobId: spec.job_id,
    taskTypes: spec.objective.task_types,
    model: artifacts ? { artifacts } : { baseModel: spec.base_model },
  });
  if (!artifacts) return { evals: evalRecords(summaries, null) };
  const decisions = await acts.promoteElites({
    job_id: spec.job_id,
    owner_did: spec.owner_did,
    base_model: spec.base_model,
    spec_sha256: input.specHash,
    target_metric: spec.objective.target_metric,
    artifacts: { repo: artifacts.repo, branch: artifacts.branch, commit: artifacts.commit, path: artifacts.path, manifest_sha256: artifacts.manifest_sha256 },
    evals: summaries,
  });
  return { evals: evalRecords(summaries, decisions) };
}
