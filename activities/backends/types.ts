/**
 * The backend interface of docs/architecture.md §5. One implementation per file in this folder; the workflow only ever
 * sees the plain-data types below (they cross the Temporal boundary as JSON).
 */
import type { FailureInfo } from '../../jobspec/failure';
import type { TrainingJobSpec } from '../../jobspec/schema';
import type { SignedSpec } from '../../jobspec/signed-spec';
import type { CollectProgress } from './remote/remote-agent';

export type DeploymentState = 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED';

/** What a backend returns from submit(): enough to find the deployment again from any worker. JSON only. */
export interface DeploymentRef {
  backend: string; // operator-config name of the backend, e.g. "local" or "local-b"
  kind: string; // implementation, e.g. "local", "akash"
  id: string; // backend-specific deployment id
  jobId: string;
  attempt: number;
  submittedAt: string; // ISO-8601
  /** Backend-specific, JSON-serialisable details (workspace dir, lease id, ...). */
  data: Record<string, string | number | boolean | null>;
}

export interface TrainingProgress {
  step: number;
  maxSteps?: number;
  loss?: number;
}

export interface DeploymentStatus {
  state: DeploymentState;
  /** Set when state is FAILED. */
  failure?: FailureInfo;
  exitCode?: number;
  costUsd: number;
  progress?: TrainingProgress;
  startedAt?: string;
  finishedAt?: string;
  /**
   * SUCCEEDED on a remote backend: the outputs are still in the deployment (its agent serves them), so it must stay
   * open until collectArtifacts has fetched them; the workflow closes it after the commit.
   */
  outputsOnDeployment?: boolean;
}

export interface Quote {
  available: boolean;
  hourlyUsd: number;
  detail?: string;
}

export interface SubmitOptions {
  maxHourlyUsd?: number;
  /** This attempt evaluates instead of training (README "Where evaluation runs"): trainerContractEnv ships it. */
  evalRun?: EvalRunInputs;
}

/** An eval attempt's inputs: the suite's task files (task type → file text) and the committed model, if any. */
export interface EvalRunInputs {
  suite: Record<string, string>;
  model?: { kind: 'git'; repo: string; branch: string; commit: string; path: string };
}

export interface HealthReport {
  ok: boolean;
  detail: string;
}

/** The most lines one logs() call returns, on every backend. */
export const MAX_LOG_LINES = 1000;

export interface LogChunk {
  lines: { stream: 'stdout' | 'stderr'; line: string }[];
  /** Opaque; pass it back to get the lines after these. */
  cursor: string;
}

/**
 * The read side of a backend: what a job's deployments show (logs, outputs) and whether the backend answers. The
 * HTTP API depends on this side only (docs/architecture.md). Reading is not credential-free: a remote backend's logs
 * and outputs come through its provider's API and the forge agent, whose token derives from the backend credential.
 */
export interface BackendReader {
  readonly name: string;
  readonly kind: string;
  health(): Promise<HealthReport>;
  logs(deployment: DeploymentRef, cursor?: string): Promise<LogChunk>;
  /**
   * Copies the trainer's outputs into dir; returns the relative paths copied. `onProgress` is called during long
   * transfers (the activity heartbeats with it). Remote backends fetch from the still-open deployment, so any
   * replica can run it; a retry on the same replica resumes (files already in dir and whole are kept).
   */
  collectArtifacts(deployment: DeploymentRef, dir: string, onProgress?: (p: CollectProgress) => void): Promise<string[]>;
}

/** The compute side of a backend: pricing, placing, following and releasing deployments (the worker's activities). */
export interface ComputeBackend {
  readonly name: string;
  readonly kind: string;
  quote(spec: TrainingJobSpec): Promise<Quote>;
  /**
   * Idempotent per (job, attempt): a second call returns the first call's deployment and starts nothing.
   * `options.maxHourlyUsd` (from admission: the job's remaining budget over max_hours) lowers the price cap of
   * backends that bid or rent at a price; a backend never exceeds its own configured cap either. The trainer gets
   * `signed.raw`, the spec as its owner signed it (it checks the signature again).
   */
  submit(signed: SignedSpec, attempt: number, options?: SubmitOptions): Promise<DeploymentRef>;
  status(deployment: DeploymentRef): Promise<DeploymentStatus>;
  /** Idempotent: stops and releases everything the deployment holds. */
  close(deployment: DeploymentRef): Promise<void>;
  /**
   * Optional: resolves when the deployment may have changed, or after `timeoutMs` at the latest. Lets the follow
   * activity react at once (a finished process) instead of on its next poll. Without it, the follower just sleeps.
   */
  waitForChange?(deployment: DeploymentRef, timeoutMs: number): Promise<void>;
  /**
   * Optional (the reaper): this backend's deployments that are open now and carry this installation's mark, each
   * with the job and attempt the mark names. Found on the backend itself (process groups, the provider's list), not
   * only in the job's status, so that a deployment no workflow remembers is found too.
   */
  listOpen?(): Promise<OpenDeployment[]>;
}

/** A whole backend, both sides: what the registry builds for the worker. */
export interface Backend extends ComputeBackend, BackendReader {}

/** One open deployment as a backend lists it: `ref` is what close() takes. JSON only. */
export interface OpenDeployment {
  ref: DeploymentRef;
  jobId: string;
  attempt: number;
  /** ISO-8601: when the deployment was made (the reaper's grace period counts from here). */
  createdAt: string;
}

/**
 * Thrown by a backend when it refuses or fails in a way the workflow must classify (NO_CAPACITY, REJECTED, ...).
 * The activity layer turns it into a typed ApplicationFailure.
 */
export class BackendError extends Error {
  constructor(
    readonly failureClass: FailureInfo['class'],
    message: string,
  ) {
    super(message);
    this.name = 'BackendError';
  }
}
