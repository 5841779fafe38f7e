/**
 * `backendCapacity`: the admission entity of one backend's `max_concurrent` (id `forge-capacity-<backend>`, see
 * names.ts). Every orchestrator replica asks it for a slot before submitting to that backend and gives the slot back
 * when the deployment is closed, so the cap and the owners' round robin hold across any number of replicas: Temporal
 * serialises the Updates, and the state (workflows/capacity/slots.ts) lives in this workflow, not in any replica.
 *
 * - One Update, `slots`, carries a batch of asks (acquire: granted, or queued with a position) and give-backs
 *   (release: the job's slot of an attempt is free, and it leaves the queue): each replica sends its pending ones
 *   together, one batch at a time, so a burst of admissions does not meet Temporal's limit of 10 Updates in flight.
 *   It is sent with start (Update-with-start: whoever needs the entity first starts it). A batch that would change
 *   nothing (polls of waiting jobs, releases of unknown ones) is answered by the validator: no trace in history.
 * - Every `reclaim_seconds` the entity asks an activity which holders' workflows no longer run (ended, terminated,
 *   deleted) and frees their slots; grants not picked up in time are withdrawn when they expire.
 * - It continues as new (state carried) when Temporal suggests it or after CONTINUE_AFTER_UPDATES accepted Updates, and
 *   ends when it has held and queued nothing for a whole reclaim interval (the next acquire starts it again).
 */
import { ApplicationFailure, allHandlersFinished, condition, continueAsNew, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import { capacityQuery, capacityUpdate, CAPACITY_UNCHANGED, type CapacityActivities, type CapacityInput } from './capacity/messages';
import { applyBatch, emptyCapacity, expire, isIdle, nextExpiry, packCapacity, reclaim, unchangedBatch, unpackCapacity } from './capacity/slots';

/** Accepted Updates per run before continuing as new (Temporal caps Updates per run; the history stays short). */
export const CONTINUE_AFTER_UPDATES = 500;

const acts = proxyActivities<CapacityActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 5 },
});

export async function backendCapacity(input: CapacityInput): Promise<void> {
  const s = input.packed ? unpackCapacity(input.packed) : (input.state ?? emptyCapacity(input.cap));
  let reclaimMs = input.reclaimSeconds * 1000;
  let accepted = 0;

  setHandler(
    capacityUpdate,
    (b) => {
      accepted++;
      reclaimMs = b.reclaimSeconds * 1000;
      return applyBatch(s, b.ops, Date.now());
    },
    {
      validator: (b) => {
        const same = unchangedBatch(s, b.ops, Date.now());
        if (same) throw ApplicationFailure.create({ type: CAPACITY_UNCHANGED, message: 'nothing changes: answered without recording', details: [same], nonRetryable: true });
      },
    },
  );
  setHandler(capacityQuery, () => s);

  const continueAfter = input.continueAfterUpdates ?? CONTINUE_AFTER_UPDATES;
  const mustContinue = (): boolean => accepted >= continueAfter || workflowInfo().continueAsNewSuggested;
  let lastReclaim = Date.now();
  let quietChecks = 0;
  let acceptedAtCheck = accepted;
  for (;;) {
    const reclaimAt = lastReclaim + reclaimMs;
    const expiry = nextExpiry(s);
    const wakeAt = Math.min(reclaimAt, expiry ?? Infinity);
    // Woken early only when a grant now expires sooner than planned, or it is time to continue as new.
    await condition(() => mustContinue() || (nextExpiry(s) ?? Infinity) < wakeAt, Math.max(1, wakeAt - Date.now()));
    expire(s, Date.now());
    if (Date.now() >= reclaimAt) {
      lastReclaim = Date.now();
      if (s.holders.length > 0) reclaim(s, await acts.capacityEnded([...new Set(s.holders.map((h) => h.workflowId))]), Date.now());
      quietChecks = isIdle(s) && accepted === acceptedAtCheck ? quietChecks + 1 : 0;
      acceptedAtCheck = accepted;
      if (quietChecks >= 2) {
        await condition(allHandlersFinished);
        if (isIdle(s)) return; // nothing held, queued or asked for a whole interval: the next acquire starts a new run
      }
    }
    if (mustContinue()) {
      await condition(allHandlersFinished);
      const { state: _state, ...rest } = input;
      await continueAsNew<typeof backendCapacity>({ ...rest, cap: s.cap, reclaimSeconds: reclaimMs / 1000, packed: packCapacity(s) });
    }
  }
}
