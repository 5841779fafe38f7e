/**
 * The activities grpoRun (workflows/grpo-run.ts) calls, with their queues, timeouts and retries: the shared trainer
 * queue (acquire), a host's own queue (update, watch, export, release), the rollout workers and the orchestrator.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { RlCollectActivities } from '../../activities/rl/collect';
import type { AcquireActivities, HostActivities } from '../../activities/rl/host/activities';
import type { RolloutActivities } from '../../activities/rl/rollout';
import type { HostLease } from '../../activities/rl/types';
import type { RlSettings } from '../../common/rl-config';
import { RL_FAILURE } from '../../common/rl-names';

export function grpoActivities(settings: RlSettings) {
  const acquireActs = proxyActivities<AcquireActivities>({
    taskQueue: settings.grpoTaskQueue,
    scheduleToStartTimeout: `${settings.acquireTimeoutSeconds} seconds`,
    startToCloseTimeout: `${settings.loadTimeoutSeconds} seconds`,
    heartbeatTimeout: `${Math.max(settings.hostHeartbeatSeconds, 10)} seconds`,
    retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 3, nonRetryableErrorTypes: ['EXIT_CODE', 'REJECTED'] },
  });
  const hostActs = (lease: HostLease, opts: { timeoutSeconds: number; attempts: number }) =>
    proxyActivities<HostActivities>({
      taskQueue: lease.taskQueue,
      scheduleToStartTimeout: `${settings.hostStartTimeoutSeconds} seconds`,
      startToCloseTimeout: `${opts.timeoutSeconds} seconds`,
      heartbeatTimeout: `${settings.hostHeartbeatSeconds} seconds`,
      retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: opts.attempts, nonRetryableErrorTypes: [RL_FAILURE.SESSION_LOST, RL_FAILURE.UPDATE_REFUSED] },
    });
  const rolloutActs = proxyActivities<RolloutActivities>({
    taskQueue: settings.rolloutTaskQueue,
    scheduleToCloseTimeout: `${settings.rolloutTimeoutSeconds} seconds`,
    heartbeatTimeout: `${settings.rolloutHeartbeatSeconds} seconds`,
    retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 10, nonRetryableErrorTypes: ['REJECTED', RL_FAILURE.SESSION_LOST] },
  });
  const orchestratorActs = proxyActivities<RlCollectActivities>({
    startToCloseTimeout: `${settings.updateTimeoutSeconds} seconds`,
    heartbeatTimeout: '2 minutes',
    retry: { initialInterval: '2 seconds', maximumInterval: '1 minute', maximumAttempts: 5 },
  });

  return { acquireActs, hostActs, rolloutActs, orchestratorActs };
}
