/** The trainer contract's environment (docs/architecture.md §6): one definition for every backend that runs a trainer. */
import type { TrainingJobSpec } from '../../jobspec/schema';
import type { EvalRunInputs } from './types';

/**
 * The variables every trainer gets. FORGE_SPEC and FORGE_OUTPUT_DIR are paths on the host that runs the trainer,
 * so each backend adds them where it knows them (the local workspace; the remote agent's own folder).
 */
export function trainerContractEnv(spec: TrainingJobSpec, attempt: number, evalRun?: EvalRunInputs): Record<string, string> {
  return {
    ...(evalRun && evalContractEnv(evalRun)),
    JOB_ID: spec.job_id,
    JOB_TYPE: spec.job_type,
    MODEL: spec.base_model.name,
    DATA_REPO: spec.data.repo,
    DATA_BRANCH: spec.data.branch,
    DATA_PATH: spec.data.path,
    FORGE_ATTEMPT: String(attempt),
  };
}

/**
 * An eval attempt (`forge-trainer run` with FORGE_TASK=eval, trainer/src/forge_trainer/evaluate.py): the suite's files
 * as the orchestrator reads them, and the committed model to fetch (none: the spec's base model).
 */
export function evalContractEnv(evalRun: EvalRunInputs): Record<string, string> {
  return {
    FORGE_TASK: 'eval',
    FORGE_EVAL_SUITE_B64: Buffer.from(JSON.stringify(evalRun.suite), 'utf8').toString('base64'),
    ...(evalRun.model && { FORGE_EVAL_MODEL: JSON.stringify(evalRun.model) }),
  };
}
