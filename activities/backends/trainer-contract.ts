/** The trainer contract's environment (DESIGN.md §6): one definition for every backend that runs a trainer. */
import type { TrainingJobSpec } from '../../spec/schema';

/**
 * The variables every trainer gets. FORGE_SPEC and FORGE_OUTPUT_DIR are paths on the host that runs the trainer,
 * so each backend adds them where it knows them (the local workspace; the remote agent's own folder).
 */
export function trainerContractEnv(spec: TrainingJobSpec, attempt: number): Record<string, string> {
  return {
    JOB_ID: spec.job_id,
    JOB_TYPE: spec.job_type,
    MODEL: spec.base_model.name,
    DATA_REPO: spec.data.repo,
    DATA_BRANCH: spec.data.branch,
    DATA_PATH: spec.data.path,
    FORGE_ATTEMPT: String(attempt),
  };
}
