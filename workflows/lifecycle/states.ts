/**
 * The job state machine of docs/architecture.md §4 as data. The workflow moves only along these edges; a unit test pins them.
 */
export const JOB_STATES = [
  'CREATED',
  'QUEUED',
  'SUBMITTED',
  'RUNNING',
  'EVALUATING',
  'COMPLETED',
  'FAILED',
  'RETRY',
  'ABANDONED',
  'CANCELLED',
] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set<JobState>(['COMPLETED', 'ABANDONED', 'CANCELLED']);

const EDGES: Record<JobState, readonly JobState[]> = {
  // CREATED → EVALUATING only replays eval jobs recorded before they ran QUEUED → … → RUNNING → COMPLETED (§4: eval
  // jobs skip EVALUATING; patch forge-eval-jobs-run).
  CREATED: ['QUEUED', 'EVALUATING', 'ABANDONED'],
  // Submission itself can fail (the backend refuses): that is a failed attempt too.
  QUEUED: ['SUBMITTED', 'FAILED', 'ABANDONED'],
  SUBMITTED: ['RUNNING', 'FAILED'],
  RUNNING: ['EVALUATING', 'COMPLETED', 'FAILED'],
  EVALUATING: ['COMPLETED', 'FAILED'],
  FAILED: ['RETRY', 'ABANDONED'],
  RETRY: ['SUBMITTED', 'FAILED', 'ABANDONED'],
  COMPLETED: [],
  ABANDONED: [],
  CANCELLED: [],
};

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.has(state);
}

/** Every non-terminal state may go to CANCELLED (owner's signed cancel or a Temporal cancellation). */
export function canTransition(from: JobState, to: JobState): boolean {
  if (to === 'CANCELLED') return !isTerminal(from);
  return EDGES[from].includes(to);
}

export class IllegalTransitionError extends Error {
  override name = 'IllegalTransitionError';
  constructor(from: JobState, to: JobState) {
    super(`illegal job state transition ${from} → ${to}`);
  }
}
