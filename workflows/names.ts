/** Contract names of DESIGN.md §3: workflow types, ids and task queues. */
export const TASK_QUEUE_ORCHESTRATOR = 'forge-orchestrator';
export const TASK_QUEUE_ROLLOUT = 'forge-rollout';
export const TASK_QUEUE_GRPO = 'forge-grpo';

export const WORKFLOW_TYPE_TRAINING_JOB = 'trainingJob';
export const WORKFLOW_TYPE_INTEGRATE_RESULTS = 'integrateResults';
export const WORKFLOW_TYPE_GRPO_RUN = 'grpoRun';

export function jobWorkflowId(jobId: string): string {
  return `job-${jobId}`;
}

/** The child that evaluates a job's model and updates the elite registry. */
export function integrateWorkflowId(jobId: string): string {
  return `job-${jobId}-integrate`;
}

/** The child that runs GRPO for one attempt of an rl job (continues-as-new under the same id). */
export function grpoWorkflowId(jobId: string, attempt: number): string {
  return `job-${jobId}-grpo-${attempt}`;
}

/** A trainer host's own queue: updates of the policies it holds go there. */
export function grpoHostTaskQueue(hostId: string, base: string = TASK_QUEUE_GRPO): string {
  return `${base}@${hostId}`;
}
