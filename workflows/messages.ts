/** Messages of the trainingJob workflow (DESIGN.md §3): the `status` query and the `cancel` update. */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { DeploymentRef, DeploymentState, TrainingProgress } from '../activities/backends/types';
import type { FailureClass } from '../spec/failure';
import type { CancelRequest } from '../spec/signing';
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
}

export const statusQuery = defineQuery<JobStatus>('status');
export const cancelUpdate = defineUpdate<JobStatus, [CancelRequest]>('cancel');
