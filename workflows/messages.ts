/** Messages of the trainingJob workflow (DESIGN.md §3): the `status` query and the `cancel` update. */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { ArtifactsRecord } from '../activities/artifacts';
import type { DeploymentRef, DeploymentState, TrainingProgress } from '../activities/backends/types';
import type { FailureClass } from '../spec/failure';
import type { CancelRequest } from '../spec/signing';
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
}

export interface ErrorRecord {
  class: FailureClass;
  detail: string;
  attempt: number;
  backend: string | null;
  at: string;
}

/** One task type's eval result, and what the elite registry made of it. */
export interface EvalRecord {
  task_type: string;
  tasks: number;
  successes: number;
  success_rate: number;
  suite_sha256: string | null;
  mean_latency_ms: number;
  /** Promoted into the elite registry; null when not considered (eval jobs). */
  promoted: boolean | null;
  /** Why (not) promoted. */
  promotion: string | null;
  /** The elite's success rate it was compared with (null: none, or not considered). */
  elite_success_rate: number | null;
  registry_commit: string | null;
}

export interface NotificationRecord {
  event: 'job.completed' | 'job.failed';
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
}

export const statusQuery = defineQuery<JobStatus>('status');
export const cancelUpdate = defineUpdate<JobStatus, [CancelRequest]>('cancel');
