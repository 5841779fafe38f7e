/**
 * Where a job's evaluation runs (README "Where evaluation runs"): pure decisions of the trainingJob workflow.
 */
import type { EvaluationSettings } from '../../common/results-config';
import type { TrainingJobSpec } from '../../jobspec/schema';

/** "backend" when the operator config sends evaluation on `backend` to the backend; histories without it: orchestrator. */
export function evaluatesOnBackend(settings: EvaluationSettings | undefined, backend: string): boolean {
  if (!settings) return false;
  return (settings.backends[backend] ?? settings.where) === 'backend';
}

/** The committed model a finetune's eval attempt fetches (FORGE_EVAL_MODEL), or none: an eval job's base model. */
export interface EvalModelRef {
  kind: 'git';
  repo: string;
  branch: string;
  commit: string;
  path: string;
}

/** What an eval attempt is asked to do; it travels in the admission input (activities/control/activities.ts). */
export interface EvalAttemptRequest {
  taskTypes: string[];
  model?: EvalModelRef;
}

/** An eval job's model as rows name it (the same string as the orchestrator-host path). */
export function baseModelRef(spec: TrainingJobSpec): string {
  return `${spec.base_model.source}:${spec.base_model.name}@${spec.base_model.revision}`;
}
