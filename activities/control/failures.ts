/**
 * How a backend's answers become the control activities' typed failures (failure classes: docs/architecture.md §4).
 */
import { ApplicationFailure } from '@temporalio/activity';
import { BackendError, type DeploymentRef, type DeploymentStatus } from '../backends/types';
import { isTransientError } from '../backends/remote/remote-http';

/** Type of the retryable failure of a backend whose API (network, 5xx, 429) or disk does not answer now. */
export const BACKEND_UNAVAILABLE = 'BACKEND_UNAVAILABLE';

/**
 * A backend's refusal becomes a typed, non-retryable failure: the workflow decides what to do next. A transient error
 * becomes a retryable BACKEND_UNAVAILABLE, retried through the outage budget (then LOST, or close pending).
 */
export function asFailure(err: unknown): unknown {
  if (err instanceof BackendError) return ApplicationFailure.create({ message: err.message, type: err.failureClass, nonRetryable: true });
  if (isTransientError(err)) return ApplicationFailure.create({ message: (err as Error).message, type: BACKEND_UNAVAILABLE, nonRetryable: false });
  return err;
}

/** The backend's API stayed unreachable for its whole outage budget: the attempt is LOST (the retry plan moves on). */
export function outageFailure(d: DeploymentRef, since: number, outageMs: number, lastError: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: 'LOST',
    nonRetryable: true,
    message:
      `backend ${d.backend}: API unreachable since ${new Date(since).toISOString()}, longer than its outage budget ` +
      `(backend_outage_seconds ${outageMs / 1000}); deployment ${d.id} is closed and the job retries per its plan. Last error: ${lastError}`,
  });
}

/**
 * The trainer is done, one way or the other: its deployment is released at once — unless its outputs are still on it
 * (a remote backend's SUCCEEDED): then the workflow closes it once they are committed.
 */
export function hasEnded(status: DeploymentStatus): boolean {
  return (status.state === 'SUCCEEDED' && !status.outputsOnDeployment) || status.state === 'FAILED';
}
