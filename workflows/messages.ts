/** Messages of the trainingJob workflow (docs/architecture.md §3): the `status` query and the `cancel` update. */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { ArtifactsRecord } from '../activities/artifacts';
import type { DeploymentRef, DeploymentState, TrainingProgress } from '../activities/backends/types';
import type { EvalSummary } from '../activities/evals';
import type { FailureClass } from '../jobspec/failure';
import type { CancelRequest } from '../jobspec/signing';
import type { RlProgress } from './grpo-run';
import type { JobState } from './lifecycle/states';

export interface TransitionRecord {
  state: JobState;
  at: string;
  reason: string;
  attempt: number;
  backend: string | null;
}

export interface DeploymentRecord {
  attempt: number;
  backend: string;
  id: string;
  state: DeploymentState;
  cost_usd: number;
  exit_code: number | null;
  submitted_at: string;
  closed: boolean;
  progress: TrainingProgress | null;
  ref: DeploymentRef;
  /**
   * Set when closing it kept failing past the close budget (4 × backend_outage_seconds): why. The deployment may still
   * be running and billing; the reaper (forge-reaper) closes it once the backend answers again.
   */
  close_pending?: string;
  /** Set while its backend's API fails to answer the follower: since when (ISO). Past backend_outage_seconds: LOST. */
  api_unreachable_since?: string;
}

export interface ErrorRecord {
  class: FailureClass;
  detail: string;
  attempt: number;
  backend: string | null;
  at: string;
}

/** One task type's eval result (the eval activity's summary), and what the elite registry made of it. */
export interface EvalRecord extends EvalSummary {
  /** Promoted into the elite registry; null when not considered (eval jobs). */
  promoted: boolean | null;
  /** Why (not) promoted. */
  promotion: string | null;
  /** The elite's success rate it was compared with (null: none, or not considered). */
  elite_success_rate: number | null;
  registry_commit: string | null;
}

export interface NotificationRecord {
  event: 'job.completed' | 'job.failed' | 'job.cancelled';
  /** nostr:npub… or a webhook's origin (never its path, which often holds a token). */
  target: string;
  delivered: boolean;
  detail: string;
  at: string;
}

export interface JobStatus {
  job_id: string;
  job_type: string | null;
  owner_did: string | null;
  state: JobState;
  attempt: number;
  backend: string | null;
  transitions: TransitionRecord[];
  cost_usd: number;
  deployments: DeploymentRecord[];
  last_error: ErrorRecord | null;
  /** Every failure, in order, with its class (the last one is also last_error). */
  errors: ErrorRecord[];
  /** Where the job's artifacts were committed (repo, branch, commit, files); null until they are. */
  artifacts: ArtifactsRecord | null;
  /** Eval results per task type (and promotion), once evaluated. */
  evals: EvalRecord[];
  notifications: NotificationRecord[];
  /** rl jobs: the current attempt's GRPO progress (trainer host, policy version, the latest training_log line). */
  rl?: RlProgress | null;
  /**
   * A job with very many retries: how many of the oldest transitions, errors and closed deployments were left out of
   * the lists above when it continued as new, and the cost of those deployments (still counted in cost_usd).
   */
  dropped?: { transitions: number; errors: number; deployments: number; cost_usd: number };
}

export const statusQuery = defineQuery<JobStatus>('status');
export const cancelUpdate = defineUpdate<JobStatus, [CancelRequest]>('cancel');
