/** Messages of the admission entity (workflows/backend-capacity.ts), shared with the activities that call it. */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { CapacityState, PackedCapacity, SlotOp, SlotOpResult } from './slots';

export interface CapacityInput {
  backend: string;
  cap: number;
  /** How often holders' workflows are checked (operator config admission.reclaim_seconds). */
  reclaimSeconds: number;
  /** Carried over continue-as-new (packed: a long queue stays well under Temporal's payload limit). */
  packed?: PackedCapacity;
  /** Unpacked state (tests). */
  state?: CapacityState;
  /** Accepted Updates per run before continuing as new (default CONTINUE_AFTER_UPDATES; tests use fewer). */
  continueAfterUpdates?: number;
}

/** One replica's pending asks and give-backs for this backend, in one Update (Temporal allows 10 in flight). */
export interface CapacityBatch {
  ops: SlotOp[];
  reclaimSeconds: number;
}

/** Each op's answer, and every job granted a slot by the batch (their replicas may wake them). */
export interface CapacityBatchResult {
  results: SlotOpResult[];
  granted: string[];
}

/** Failure type of a batch answered by the validator (it changed nothing): `details[0]` is its results. */
export const CAPACITY_UNCHANGED = 'CAPACITY_UNCHANGED';

export const capacityUpdate = defineUpdate<CapacityBatchResult, [CapacityBatch]>('slots');
export const capacityQuery = defineQuery<CapacityState>('capacity');

export interface CapacityActivities {
  /** Of these workflow ids, the ones whose workflow no longer runs. */
  capacityEnded(workflowIds: string[]): Promise<string[]>;
}
