/**
 * What happens after a failed attempt: retry (maybe on the next backend, after a backoff) or abandon. Pure, so the
 * whole policy is unit-tested without Temporal.
 */
import { FAILOVER_FAILURES, isRetryable, type FailureClass } from '../../jobspec/failure';

export interface RetryInput {
  failure: FailureClass;
  /** Retries already used (0 after the first attempt failed). */
  retriesUsed: number;
  maxRetries: number;
  /** Index into the candidate backends (provider, then fallbacks) of the attempt that failed. */
  backendIndex: number;
  backendCount: number;
  costUsd: number;
  maxCostUsd: number;
  backoff: { initialSeconds: number; maxSeconds: number };
}

export type RetryPlan =
  | { action: 'retry'; backendIndex: number; delayMs: number; reason: string }
  | { action: 'abandon'; failure: FailureClass; reason: string };

export function backoffMs(retriesUsed: number, backoff: RetryInput['backoff']): number {
  const seconds = Math.min(backoff.initialSeconds * 2 ** retriesUsed, backoff.maxSeconds);
  return Math.round(seconds * 1000);
}

export function planAfterFailure(i: RetryInput): RetryPlan {
  if (!isRetryable(i.failure)) {
    return { action: 'abandon', failure: i.failure, reason: `${i.failure} is not retryable` };
  }
  if (i.costUsd >= i.maxCostUsd) {
    return {
      action: 'abandon',
      failure: 'BUDGET',
      reason: `budget spent: $${i.costUsd.toFixed(4)} of max_cost_usd $${i.maxCostUsd}`,
    };
  }
  if (i.retriesUsed >= i.maxRetries) {
    return { action: 'abandon', failure: i.failure, reason: `max_retries (${i.maxRetries}) used up` };
  }
  // Capacity-type failures say the backend is the problem: move on. Trainer-side ones retry where they ran.
  const failover = FAILOVER_FAILURES.has(i.failure) && i.backendCount > 1;
  const backendIndex = failover ? (i.backendIndex + 1) % i.backendCount : i.backendIndex;
  const delayMs = backoffMs(i.retriesUsed, i.backoff);
  return {
    action: 'retry',
    backendIndex,
    delayMs,
    reason: `retry ${i.retriesUsed + 1}/${i.maxRetries} after ${i.failure}${failover ? ' (failover)' : ''} in ${delayMs / 1000}s`,
  };
}
