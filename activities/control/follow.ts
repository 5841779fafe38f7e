/**
 * followDeployment: polls a deployment and returns only when its state changes (or progress, time, budget or the
 * backend's reachability does), so the workflow's history grows with transitions, not with duration.
 */
import { Context, ApplicationFailure, activityInfo } from '@temporalio/activity';
import { outageSeconds } from '../../common/config';
import { progressDecile } from '../../jobspec/progress';
import { BackendError, type Backend, type DeploymentRef, type DeploymentStatus } from '../backends/types';
import { asFailure, hasEnded, outageFailure } from './failures';
import { pause } from './pause';
import type { ControlDeps, FollowInput, FollowResult } from './types';

/** Heartbeat details: where a retried follow picks up. */
interface FollowCursor {
  polls: number;
  last: DeploymentStatus | null;
  /** Epoch ms of the first failed status() since the last good answer (the backend's API is unreachable). */
  failingSince?: number;
  lastError?: string;
}

export function createFollow(deps: ControlDeps, backend: (name: string) => Backend, release: (b: Backend, d: DeploymentRef) => Promise<void>) {
  return async function followDeployment(input: FollowInput): Promise<FollowResult> {
    const ctx = Context.current();
    const b = backend(input.deployment.backend);
    const since = input.unreachableSince ? Date.parse(input.unreachableSince) : undefined;
    const cursor: FollowCursor = (activityInfo().heartbeatDetails as FollowCursor | undefined) ?? {
      polls: 0,
      last: null,
      ...(since ? { failingSince: since } : {}),
    };
    const deadline = Date.parse(input.deadline);
    const pollMs = deps.pollIntervalMs(input.deployment.backend);
    const outageMs = outageSeconds(deps.config, input.deployment.backend) * 1000;
    for (;;) {
      let status: DeploymentStatus;
      const asked = Date.now();
      try {
        status = await b.status(input.deployment);
      } catch (err) {
        if (err instanceof BackendError || err instanceof ApplicationFailure) throw asFailure(err);
        // The backend's API does not answer (network, 5xx, 429, disk): keep polling through the outage budget.
        cursor.failingSince ??= asked;
        cursor.lastError = (err as Error).message;
        ctx.heartbeat(cursor);
        const failingMs = Date.now() - cursor.failingSince;
        if (failingMs >= outageMs) throw outageFailure(input.deployment, cursor.failingSince, outageMs, cursor.lastError);
        // Past a third of the budget (30 s at most) the workflow learns of it once, so the status query shows it.
        if (!since && failingMs >= Math.min(30_000, outageMs / 3)) {
          return { status: cursor.last ?? { state: input.known, costUsd: 0 }, reason: 'unreachable', unreachableSince: new Date(cursor.failingSince).toISOString() };
        }
        await pause(ctx, pollMs);
        continue;
      }
      delete cursor.failingSince;
      delete cursor.lastError;
      cursor.polls += 1;
      cursor.last = status;
      ctx.heartbeat(cursor);
      if (status.state !== input.known) {
        // An ended deployment is released by its follower right away: one step less before the job can end.
        const ended = hasEnded(status);
        if (ended) await release(b, input.deployment);
        return { status, reason: 'changed', closed: ended };
      }
      if (since) return { status, reason: 'reachable' };
      if (progressDecile(status.progress) > input.knownDecile) return { status, reason: 'progress' };
      if (status.costUsd >= input.budgetUsd) return { status, reason: 'budget' };
      if (Date.now() >= deadline) return { status, reason: 'timeout' };
      // Wakes early when the backend sees a change; ctx.cancelled rejects when the job is cancelled.
      await pause(ctx, pollMs, ...(b.waitForChange ? [b.waitForChange(input.deployment, pollMs)] : []));
    }
  };
}
