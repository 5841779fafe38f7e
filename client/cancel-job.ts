/**
 * Sends the owner's signed cancel to a job (the `cancel` Update). Shared by the API, the CLIs and tests.
 *
 * Why a retry: when the workflow task that carries an Update also races another event (say the follow activity
 * returning at that moment), the server fails that task with UnhandledCommand and rejects the Update with
 * FAILED_PRECONDITION "unexpected workflow task failure". Nothing was applied; the same signed request (valid for
 * five minutes) is simply sent again.
 */
import { ServiceError, type WorkflowHandle } from '@temporalio/client';
import type { CancelRequest } from '../jobspec/signing';
import { cancelUpdate, type JobStatus } from '../workflows/messages';

/** gRPC status code FAILED_PRECONDITION. */
const FAILED_PRECONDITION = 9;

function isRacedWorkflowTask(err: unknown): boolean {
  if (!(err instanceof ServiceError)) return false;
  const cause = err.cause as { code?: number; details?: string; message?: string } | undefined;
  const text = `${cause?.details ?? ''} ${cause?.message ?? ''} ${err.message}`;
  return cause?.code === FAILED_PRECONDITION && /workflow task failure/i.test(text);
}

export async function cancelJob(handle: WorkflowHandle, request: CancelRequest, attempts = 5): Promise<JobStatus> {
  for (let i = 1; ; i++) {
    try {
      return await handle.executeUpdate(cancelUpdate, { args: [request] });
    } catch (err) {
      if (i >= attempts || !isRacedWorkflowTask(err)) throw err;
      await new Promise((r) => setTimeout(r, 50 * i));
    }
  }
}
