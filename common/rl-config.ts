/**
 * The `rl` section of the operator config (FORGE_CONFIG): how grpoRun children reach trainer hosts and rollout
 * workers, and how long they wait for them. Spec-independent; a job's own GRPO settings are its spec's `rl` block.
 */
import { DEFAULT_MAX_REJECTIONS, DEFAULT_VERIFY_FRACTION, DEFAULT_VERIFY_LOGPROB_TOLERANCE } from './rl-rejections';
import { z } from 'zod';

export { RL_BACKEND, RL_BACKEND_KIND } from './rl-names';

const seconds = z.number().positive();

export const rlConfigSchema = z.strictObject({
  /** Shared queue of trainer hosts (a host also polls <grpo_task_queue>@<hostId>). */
  grpo_task_queue: z.string().min(1).default('forge-grpo'),
  rollout_task_queue: z.string().min(1).default('forge-rollout'),
  /** No trainer host takes the run within this long: the attempt fails NO_CAPACITY (retryable). */
  acquire_timeout_seconds: seconds.default(600),
  /** A host may take this long to load the policy (and resume its checkpoint). */
  load_timeout_seconds: seconds.default(900),
  /** An activity on a host's own queue not picked up within this long: the host is gone. */
  host_start_timeout_seconds: seconds.default(60),
  /** Heartbeat timeout of a trainer host's watch and updates: how fast a dead host is noticed. */
  host_heartbeat_seconds: seconds.default(30),
  /** Heartbeat timeout of a rollout: how fast a dead rollout worker's activity is retried elsewhere. */
  rollout_heartbeat_seconds: seconds.default(30),
  /** One rollout activity, retries included. */
  rollout_timeout_seconds: seconds.default(1800),
  update_timeout_seconds: seconds.default(3600),
  /** Trainer hosts lost by one attempt before it fails LOST (each loss resumes from the last checkpoint). */
  max_host_losses: z.int().min(0).default(3),
  /** The job's status shows the latest step at most this stale (one signal to the job per interval). */
  status_interval_seconds: z.number().min(0).default(30),
  /** Price of an RL attempt per hour (trainer host plus its share of rollout workers), for max_cost_usd. */
  hourly_usd: z.number().min(0).default(0),
  /** Rollouts of one worker rejected (their rewards are not the task checker's) before that worker is refused for the
   *  rest of the run. */
  max_rejections: z.int().min(1).default(DEFAULT_MAX_REJECTIONS),
  /** Share of each step's rollout groups the trainer host verifies (TOPLOC proofs and logprobs, one prefill under the
   *  claimed policy version; activities/rl/verify.ts); 0 turns verification off, 1 checks every group. */
  verify_fraction: z.number().min(0).max(1).default(DEFAULT_VERIFY_FRACTION),
  /** Max absolute difference between a reported token logprob and the trainer's own for a verified completion. */
  verify_logprob_tolerance: z.number().positive().max(100).default(DEFAULT_VERIFY_LOGPROB_TOLERANCE),
});
export type RlConfig = z.output<typeof rlConfigSchema>;

export const defaultRlConfig: RlConfig = rlConfigSchema.parse({});

/** What grpoRun reads (plain JSON through the workflow's input). */
export interface RlSettings {
  grpoTaskQueue: string;
  rolloutTaskQueue: string;
  acquireTimeoutSeconds: number;
  loadTimeoutSeconds: number;
  hostStartTimeoutSeconds: number;
  hostHeartbeatSeconds: number;
  rolloutHeartbeatSeconds: number;
  rolloutTimeoutSeconds: number;
  updateTimeoutSeconds: number;
  maxHostLosses: number;
  statusIntervalSeconds: number;
  hourlyUsd: number;
  /** Absent in runs started before re-scoring: DEFAULT_MAX_REJECTIONS. */
  maxRejections?: number;
  /** Absent in runs started before TOPLOC verification: nothing is verified. */
  verifyFraction?: number;
  verifyLogprobTolerance?: number;
}

export { DEFAULT_MAX_REJECTIONS };

export function rlSettings(c: RlConfig = defaultRlConfig): RlSettings {
  return {
    grpoTaskQueue: c.grpo_task_queue,
    rolloutTaskQueue: c.rollout_task_queue,
    acquireTimeoutSeconds: c.acquire_timeout_seconds,
    loadTimeoutSeconds: c.load_timeout_seconds,
    hostStartTimeoutSeconds: c.host_start_timeout_seconds,
    hostHeartbeatSeconds: c.host_heartbeat_seconds,
    rolloutHeartbeatSeconds: c.rollout_heartbeat_seconds,
    rolloutTimeoutSeconds: c.rollout_timeout_seconds,
    updateTimeoutSeconds: c.update_timeout_seconds,
    maxHostLosses: c.max_host_losses,
    statusIntervalSeconds: c.status_interval_seconds,
    hourlyUsd: c.hourly_usd,
    maxRejections: c.max_rejections,
    verifyFraction: c.verify_fraction,
    verifyLogprobTolerance: c.verify_logprob_tolerance,
  };
}
