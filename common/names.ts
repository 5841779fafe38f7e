/** Contract names of docs/architecture.md §3: workflow types, ids and task queues. */
export const TASK_QUEUE_ORCHESTRATOR = 'forge-orchestrator';
export const TASK_QUEUE_ROLLOUT = 'forge-rollout';
export const TASK_QUEUE_GRPO = 'forge-grpo';

export const WORKFLOW_TYPE_TRAINING_JOB = 'trainingJob';
export const WORKFLOW_TYPE_INTEGRATE_RESULTS = 'integrateResults';
export const WORKFLOW_TYPE_GRPO_RUN = 'grpoRun';
export const WORKFLOW_TYPE_REAPER = 'forgeReaper';

/** The Temporal Schedule that runs the reaper (infra/reaper-schedule.ts); its runs' ids start with it too. */
export const REAPER_SCHEDULE_ID = 'forge-reaper';

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

export const WORKFLOW_TYPE_BACKEND_CAPACITY = 'backendCapacity';

/**
 * The admission entity of a backend's max_concurrent (workflows/backend-capacity.ts). Workers on another task queue
 * than forge-orchestrator (tests, a blue/green roll-out) keep their own entity, named after the queue.
 */
export function capacityWorkflowId(backend: string, taskQueue: string = TASK_QUEUE_ORCHESTRATOR): string {
  return taskQueue === TASK_QUEUE_ORCHESTRATOR ? `forge-capacity-${backend}` : `forge-capacity-${backend}@${taskQueue}`;
}

/**
 * The admission entities' own task queue, next to the orchestrator's: its own worker slots, so that jobs whose
 * workflow tasks wait on their admission (a local activity asking the entity) can never take every slot it needs.
 */
export function capacityTaskQueue(taskQueue: string = TASK_QUEUE_ORCHESTRATOR): string {
  return `${taskQueue}-capacity`;
}

export const WORKFLOW_TYPE_BACKEND_READ = 'backendRead';

/**
 * The read entity of a backend (workflows/backend-read.ts): the API asks it for a deployment's logs and the backend's
 * health, and an orchestrator worker, which holds the backend's credentials, reads them. Named like the capacity entity.
 */
export function backendReadWorkflowId(backend: string, taskQueue: string = TASK_QUEUE_ORCHESTRATOR): string {
  return taskQueue === TASK_QUEUE_ORCHESTRATOR ? `forge-read-${backend}` : `forge-read-${backend}@${taskQueue}`;
}

/** The read entities' task queue (workflow and activity): reads never wait behind the jobs' followers for a slot. */
export function backendReadTaskQueue(taskQueue: string = TASK_QUEUE_ORCHESTRATOR): string {
  return `${taskQueue}-read`;
}

/** Why a job's workflow id does not fit its spec's job_id (undefined when it does): such a job is refused. */
export function workflowIdMismatch(workflowId: string, jobId: string): string | undefined {
  const want = jobWorkflowId(jobId);
  return workflowId === want ? undefined : `job_id: workflow id must be ${want}, got ${workflowId}`;
}
