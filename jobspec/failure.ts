/**
 * Failure classes of docs/architecture.md §4. Pure: the workflow, the activities and the API all speak this vocabulary.
 */
import { ApplicationFailure } from '@temporalio/common';

export const FAILURE_CLASSES = [
  'NO_CAPACITY',
  'PREEMPTED',
  'LOST',
  'TIMEOUT',
  'TRANSIENT',
  'EXIT_CODE',
  'REJECTED',
  'BUDGET',
  'INVALID_SPEC',
  /**
   * Something inside the orchestrator itself went wrong (a bug, an error nobody typed): the job is ABANDONED after its
   * deployments are closed, never left as a stuck or Temporal-Failed workflow. Not retryable: the same code would
   * fail the same way.
   */
  'INTERNAL',
  /**
   * An eval attempt's rows (the backend's evals.jsonl) were refused: malformed, for another job or model, or a verdict
   * its completion does not support. The compute is untrusted (README "Where evaluation runs"); not retryable.
   */
  'EVAL_ROWS_REFUSED',
] as const;
export type FailureClass = (typeof FAILURE_CLASSES)[number];

/** Another attempt may succeed after these. */
export const RETRYABLE_FAILURES: ReadonlySet<FailureClass> = new Set<FailureClass>([
  'NO_CAPACITY',
  'PREEMPTED',
  'LOST',
  'TIMEOUT',
  'TRANSIENT',
]);

/** These say something about the backend rather than the job: the next attempt goes to the next backend. */
export const FAILOVER_FAILURES: ReadonlySet<FailureClass> = new Set<FailureClass>(['NO_CAPACITY', 'PREEMPTED', 'LOST']);

export function isRetryable(failure: FailureClass): boolean {
  return RETRYABLE_FAILURES.has(failure);
}

/** Trainer contract (docs/architecture.md §6): 0 success, 75 transient (EX_TEMPFAIL), anything else permanent (but see below). */
export const TRANSIENT_EXIT_CODE = 75;

/**
 * Exit statuses of a trainer killed from outside by SIGKILL (137: the OOM killer, `kill -9`, a reclaimed host) or
 * SIGTERM (143: the reference trainer traps SIGTERM and exits 75; one that does not is still being stopped, not
 * failing). Not the trainer's word on the job, so retryable, as PREEMPTED (found by the chaos suite, test/chaos).
 */
export const KILLED_EXIT_CODES: ReadonlySet<number> = new Set([128 + 9, 128 + 15]);

export function classifyExitCode(code: number): FailureClass | undefined {
  if (code === 0) return undefined;
  if (code === TRANSIENT_EXIT_CODE) return 'TRANSIENT';
  return KILLED_EXIT_CODES.has(code) ? 'PREEMPTED' : 'EXIT_CODE';
}

export interface FailureInfo {
  class: FailureClass;
  detail: string;
}

export function isFailureClass(type: string | null | undefined): type is FailureClass {
  return type != null && (FAILURE_CLASSES as readonly string[]).includes(type);
}

/**
 * The failure an ApplicationFailure carries when its type is one of our classes (a backend's typed refusal, a trainer
 * host's EXIT_CODE, …); undefined for anything else, which the caller classifies (usually LOST).
 */
export function typedFailure(err: unknown): FailureInfo | undefined {
  return err instanceof ApplicationFailure && isFailureClass(err.type) ? { class: err.type, detail: err.message } : undefined;
}
