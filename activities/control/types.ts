/**
 * What the control activities take and return: the values that cross from the trainingJob workflow to
 * `forge-orchestrator` and back (the workflow imports them as types).
 */
import type { SpecIssue } from '../../jobspec/parse';
import type { TrainingJobSpec } from '../../jobspec/schema';
import type { SignedSpec } from '../../jobspec/signed-spec';
import type { FailureInfo } from '../../jobspec/failure';
import type { ResultSettings } from '../../common/results-config';
import type { RlSettings } from '../../common/rl-config';
import { workflowIdMismatch } from '../../common/names';
import { backendCandidates } from '../../jobspec/candidates';
import type { Backend, DeploymentRef, DeploymentState, DeploymentStatus } from '../backends/types';
import type { ForgeConfig } from '../../common/config';
import type { CapacityGate } from './capacity';
import type { EvalAttemptRequest } from '../../workflows/lifecycle/eval-placement';

export interface JobSettings {
  maxRetries: number;
  backoff: { initialSeconds: number; maxSeconds: number };
  followHeartbeatSeconds: number;
  admissionPollSeconds: number;
  /** Result integration (common/results-config.ts); absent in histories older than it. */
  results?: ResultSettings;
  /** RL jobs' grpoRun settings (common/rl-config.ts); absent in histories older than RL. */
  rl?: RlSettings;
  /** Outage budget (backend_outage_seconds) of each candidate backend; absent in histories older than it. */
  outageSeconds?: Record<string, number>;
  /** history_events_per_run; absent in histories older than it (then 1000, its default). */
  historyEventsPerRun?: number;
}

export type ValidationResult =
  | { ok: true; spec: TrainingJobSpec; specHash: string; settings: JobSettings }
  | { ok: false; issues: SpecIssue[] };

export interface FollowInput {
  deployment: DeploymentRef;
  /** Return as soon as the backend reports something other than this. */
  known: DeploymentState;
  /** Progress decile the workflow already knows (see progressDecile). */
  knownDecile: number;
  /** ISO time after which the attempt has run out of `resources.max_hours`. */
  deadline: string;
  /** Money this attempt may still spend before the job's `max_cost_usd` is reached. */
  budgetUsd: number;
  /** The workflow already knows the backend's API has been unreachable since then (ISO time). */
  unreachableSince?: string;
}

export interface FollowResult {
  status: DeploymentStatus;
  /**
   * Why the activity returned: the state changed, training passed another tenth of its steps (so the status query
   * shows progress at most ten extra times per attempt, however long it runs), or time or budget ran out.
   */
  reason: 'changed' | 'progress' | 'timeout' | 'budget' | 'unreachable' | 'reachable';
  /** The follower already closed the deployment (it had ended). */
  closed?: boolean;
  /**
   * reason "unreachable": the backend's API has failed to answer since then (the status query shows it); `status` is
   * the last good answer. "reachable": it answers again.
   */
  unreachableSince?: string;
}


export interface AdmissionInput {
  candidates: string[];
  preferred: number;
  spec: TrainingJobSpec;
  /** What is left of max_cost_usd for this attempt (absent in histories older than cost-aware admission). */
  budgetUsd?: number;
  /** The attempt evaluates a model instead of training (README "Where evaluation runs"). */
  evalRun?: EvalAttemptRequest;
}

/** admitAndSubmit's input: the admission's, with the signed spec a backend ships, for attempt n. */
export type SubmitRequest = Omit<AdmissionInput, 'spec'> & { signed: SignedSpec; attempt: number };

export interface AdmissionResult {
  index: number;
  hourlyUsd: number;
}

export interface Submission {
  deployment: DeploymentRef;
  /** The backend's first word on it (often RUNNING already). */
  status: DeploymentStatus;
  /** The trainer had already ended, and the submit closed the deployment as a follower would have. */
  closed?: boolean;
}

export type SubmitOutcome = { index: number; submission: Submission } | { index: number; failure: FailureInfo };

/**
 * validateSpec and, for a job whose first step is a backend submission, admitAndSubmit of attempt 1, in one local
 * activity: each local activity costs the first workflow task ~15 ms of SDK round trips (bench/lifecycle).
 * `first` is absent when nothing was tried (invalid spec, or a job that does not start with a submission), null when
 * no backend had room (the job waits in awaitAdmission), else what admitAndSubmit would have returned.
 */
export type AcceptResult = ValidationResult & { first?: SubmitOutcome | null };

/** Whether a validated job's first step is submitting attempt 1 to its backends (and with which admission input). */
export function firstSubmission(signed: SignedSpec, workflowId: string): SubmitRequest | undefined {
  const { spec } = signed;
  // Only finetune jobs: eval and rl jobs may take other paths (the eval suite, grpoRun) depending on the operator
  // config, and a job under another workflow id is refused by the workflow. A spent budget submits nothing.
  if (spec.job_type !== 'finetune' || workflowIdMismatch(workflowId, spec.job_id) !== undefined || spec.backend.max_cost_usd <= 0) return undefined;
  return { candidates: backendCandidates(spec), preferred: 0, signed, attempt: 1, budgetUsd: spec.backend.max_cost_usd };
}

export interface ControlDeps {
  config: ForgeConfig;
  backends: Map<string, Backend>;
  /** Poll interval of followDeployment per backend name (ms). */
  pollIntervalMs(backend: string): number;
  /** Per-owner round robin of free slots among waiting jobs (activities/control/fair-admission.ts); default on. */
  fairness?: 'owner' | 'off';
  /** FORGE_HOME, the default root of the spec policy's paths (common/spec-policy.ts); default forgeHome(). */
  home?: string;
  /** Slots of backends with max_concurrent, shared by every replica (activities/control/capacity.ts); default: the entity via the worker's client. */
  capacity?: CapacityGate;
}
