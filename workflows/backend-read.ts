/**
 * `backendRead`: the read entity of one backend (id `forge-read-<backend>`, see common/names.ts). The HTTP API holds no
 * backend credentials: for a deployment's logs or the backend's health it sends this entity an Update (with start:
 * whoever reads first starts it), and the Update runs one `readBackend` activity on an orchestrator worker, which
 * holds the backend and its credentials (docs/architecture.md §10).
 *
 * - Reads run side by side (each Update its own activity); the API keeps a few in flight per backend, under
 *   Temporal's limit of 10 Updates in flight per workflow.
 * - It continues as new after CONTINUE_AFTER_READS accepted reads or when Temporal suggests it (log pages make the
 *   history grow fast), and ends after IDLE_MINUTES without a read. While it closes, new reads are refused by the
 *   validator (BACKEND_READ_CLOSING, nothing recorded) and the API asks again, reaching the next run.
 */
import { ApplicationFailure, allHandlersFinished, condition, continueAsNew, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import { BACKEND_READ_CLOSING, backendReadUpdate, type BackendReadActivities, type BackendReadInput, type BackendReadRequest } from './read/messages';

export const CONTINUE_AFTER_READS = 200;
export const IDLE_MINUTES = 10;

const acts = proxyActivities<BackendReadActivities>({
  // A read answers a person waiting on the API: one quick retry, then the error goes back to them.
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 milliseconds', maximumAttempts: 2 },
});

export async function backendRead(input: BackendReadInput): Promise<void> {
  const continueAfter = input.continueAfterReads ?? CONTINUE_AFTER_READS;
  const idleMs = (input.idleMinutes ?? IDLE_MINUTES) * 60_000;
  let accepted = 0;
  let lastRead = Date.now();
  let closing = false;

  setHandler(
    backendReadUpdate,
    async (request) => {
      accepted++;
      lastRead = Date.now();
      return await acts.readBackend(input.backend, request);
    },
    {
      validator: (_request: BackendReadRequest) => {
        if (closing) throw ApplicationFailure.create({ type: BACKEND_READ_CLOSING, message: 'this run of the read entity is closing: ask again', nonRetryable: true });
      },
    },
  );

  const mustContinue = (): boolean => accepted >= continueAfter || workflowInfo().continueAsNewSuggested;
  for (;;) {
    // One timer per idle window, not one per read: reads only move lastRead.
    const due = await condition(mustContinue, Math.max(1, lastRead + idleMs - Date.now()));
    if (!due && Date.now() < lastRead + idleMs) continue; // reads came meanwhile: wait out the rest of the window
    closing = true;
    await condition(allHandlersFinished);
    if (due) await continueAsNew<typeof backendRead>(input);
    return; // idle: the next read starts a new run
  }
}
