/**
 * The Temporal priority a job's workflow starts with: its owner as the fairness key. Activities and child workflows
 * inherit it, so task queues hand out the work of different owners in round robin instead of first in, first out —
 * one owner's flood of submissions no longer delays everybody else's first workflow task (bench/load, 10,000
 * queued jobs). Needs fairness on the server (the embedded dev server turns it on; see README for a cluster).
 * Services that start trainingJob with their own Temporal client should pass the same priority.
 */
import type { Priority } from '@temporalio/common';

/** Temporal's limit on a fairness key. */
const MAX_FAIRNESS_KEY_BYTES = 64;

export function jobPriority(ownerDid: string): Priority {
  // An Ed25519 did:key is 56 bytes; anything longer (not a valid owner) simply gets no key of its own.
  return Buffer.byteLength(ownerDid) <= MAX_FAIRNESS_KEY_BYTES ? { fairnessKey: ownerDid } : {};
}
