/** grpoRun's failures (workflows/grpo-run.ts): typed ApplicationFailures (jobspec/failure.ts), and what an activity's was. */
import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/workflow';
import { type FailureClass, type FailureInfo, typedFailure } from '../../jobspec/failure';

/** What failed: a typed failure of ours as it is, INTERNAL for anything else (a bug, an error nobody typed). */
export function runFailure(err: unknown): FailureInfo {
  return typedFailure(err) ?? { class: 'INTERNAL', detail: `grpoRun failed unexpectedly: ${err instanceof Error ? err.message : String(err)}` };
}

export function fail(failureClass: FailureClass, message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: failureClass, nonRetryable: true });
}

/** The innermost ApplicationFailure type of an activity failure, and its message. */
export function causeOf(err: unknown): { type: string | undefined; message: string; timeout: boolean } {
  let cause: unknown = err;
  while (cause instanceof ActivityFailure && cause.cause) cause = cause.cause;
  if (cause instanceof ApplicationFailure) return { type: cause.type ?? undefined, message: cause.message, timeout: false };
  if (cause instanceof TimeoutFailure) return { type: undefined, message: `${cause.timeoutType} timeout`, timeout: true };
  return { type: undefined, message: cause instanceof Error ? cause.message : String(cause), timeout: false };
}
