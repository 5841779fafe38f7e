/**
 * What grpoRun does next on one trainer host, pure: the decisions of its loop (workflows/grpo-run.ts), taken from a
 * snapshot of the pipeline's state. The workflow runs the commands; this module only decides, so that the order of
 * the checks — and with it the order of the commands in the history — is fixed here and tested in test/unit.
 */
import { dispatchableSteps } from './pipeline';

export interface HostTickState {
  /** The latest policy version the run holds. */
  version: number;
  maxSteps: number;
  maxOffPolicySteps: number;
  /** The first step whose batch is not dispatched yet. */
  nextStep: number;
  /** The newest step whose update was sent to this host. */
  sent: number;
  /** Updates in flight, and how many the host takes at once. */
  updating: number;
  depth: number;
  /** Rollouts in flight. */
  inFlight: number;
  /** Steps whose batches are dispatched and complete (every rollout back) but not updated yet. */
  complete: ReadonlySet<number>;
  /** Draining for continue-as-new already, and whether Temporal suggests it now. */
  draining: boolean;
  continueAsNewSuggested: boolean;
  /** Why the host is lost (null: it is not), and whether it still answered when lost. */
  lost: string | null;
  alive: boolean;
}

export type HostTick =
  | { kind: 'lost'; reason: string; alive: boolean }
  | { kind: 'done' }
  | { kind: 'continue-as-new'; startDraining: boolean }
  /** Dispatch these steps' batches, then send these steps' updates (in this order), then wait for a change. */
  | { kind: 'act'; startDraining: boolean; dispatch: number[]; update: number[] };

export function planHostTick(st: HostTickState): HostTick {
  if (st.lost !== null) return { kind: 'lost', reason: st.lost, alive: st.alive };
  if (st.version >= st.maxSteps && st.updating === 0) return { kind: 'done' };
  const startDraining = !st.draining && st.continueAsNewSuggested;
  const draining = st.draining || startDraining;
  // Continue-as-new once drained: nothing in flight, and no complete batch left to update.
  if (draining && st.updating === 0 && st.inFlight === 0 && !st.complete.has(st.sent + 1)) return { kind: 'continue-as-new', startDraining };
  const dispatch = draining ? [] : dispatchableSteps(st.nextStep, st.version, st.maxOffPolicySteps, st.maxSteps);
  // Updates go out in step order as soon as their batches are complete, at most `depth` in flight (pipelined).
  const update: number[] = [];
  for (let step = st.sent + 1; st.updating + update.length < st.depth && st.complete.has(step); step++) update.push(step);
  return { kind: 'act', startDraining, dispatch, update };
}
