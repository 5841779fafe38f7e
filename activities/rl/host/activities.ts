/**
 * The trainer host's activities: acquireTrainerHost on the shared queue `forge-grpo`; grpoUpdate, watchTrainerHost,
 * exportPolicy and releaseTrainerHost on the host's own queue `forge-grpo@<hostId>` (docs/architecture.md §7).
 */
import { Context } from '@temporalio/activity';
import type { AcquireInput, ExportResult, HostLease, SessionInput, UpdateInput, UpdateResult, WatchResult } from '../types';
import type { TrainerHost } from './trainer-host';

function heartbeater(): () => void {
  const ctx = Context.current();
  return () => ctx.heartbeat();
}

/** Runs `work`, heartbeating every second (with `details`) until it settles: the host's calls may take long. */
async function withHeartbeat<T>(work: (ctx: Context) => Promise<T>, details?: unknown): Promise<T> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(details), 1_000);
  try {
    return await work(ctx);
  } finally {
    clearInterval(timer);
  }
}

/** The shared queue's one activity. */
export function createAcquireActivities(host: TrainerHost) {
  return {
    async acquireTrainerHost(input: AcquireInput): Promise<HostLease> {
      return host.acquire(input, heartbeater());
    },
  };
}

/** This host's own queue. */
export function createHostActivities(host: TrainerHost) {
  return {
    async grpoUpdate(input: UpdateInput): Promise<UpdateResult> {
      return withHeartbeat((ctx) => host.update(input, ctx.cancellationSignal), { step: input.step });
    },
    async watchTrainerHost(input: SessionInput): Promise<WatchResult> {
      const ctx = Context.current();
      return host.watch(input, () => ctx.heartbeat(), ctx.cancelled);
    },
    async exportPolicy(input: SessionInput): Promise<ExportResult> {
      return withHeartbeat(() => host.export(input));
    },
    async releaseTrainerHost(input: SessionInput & { final?: boolean }): Promise<{ released: boolean }> {
      return withHeartbeat(() => host.release(input));
    },
  };
}

export type AcquireActivities = ReturnType<typeof createAcquireActivities>;
export type HostActivities = ReturnType<typeof createHostActivities>;
