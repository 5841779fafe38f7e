/** Contract names of DESIGN.md §3: workflow types, ids and task queues. */
export const TASK_QUEUE_ORCHESTRATOR = 'forge-orchestrator';
export const TASK_QUEUE_ROLLOUT = 'forge-rollout';
export const TASK_QUEUE_GRPO = 'forge-grpo';

export const WORKFLOW_TYPE_TRAINING_JOB = 'trainingJob';
export const WORKFLOW_TYPE_INTEGRATE_RESULTS = 'integrateResults';

export function jobWorkflowId(jobId: string): string {
  return `job-${jobId}`;
}

/** The child that evaluates a job's model and updates the elite registry. */
export function integrateWorkflowId(jobId: string): string {
  return `job-${jobId}-integrate`;
}
