/**
 * The backend interface of DESIGN.md §5. One implementation per file in this folder; the workflow only ever
 * sees the plain-data types below (they cross the Temporal boundary as JSON).
 */
import type { FailureInfo } from '../../spec/failure';
import type { TrainingJobSpec } from '../../spec/schema';

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
}

export interface Quote {
  available: boolean;
  hourlyUsd: number;
  detail?: string;
}

export interface SubmitOptions {
  maxHourlyUsd?: number;
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

export interface Backend {
  readonly name: string;
  readonly kind: string;
  health(): Promise<HealthReport>;
  quote(spec: TrainingJobSpec): Promise<Quote>;
  /**
   * Idempotent per (job, attempt): a second call returns the first call's deployment and starts nothing.
   * `options.maxHourlyUsd` (from admission: the job's remaining budget over max_hours) lowers the price cap of
   * backends that bid or rent at a price; a backend never exceeds its own configured cap either.
   */
  submit(spec: TrainingJobSpec, rawSpec: unknown, attempt: number, options?: SubmitOptions): Promise<DeploymentRef>;
  status(deployment: DeploymentRef): Promise<DeploymentStatus>;
  logs(deployment: DeploymentRef, cursor?: string): Promise<LogChunk>;
  /** Copies the trainer's outputs into dir; returns the relative paths copied. */
  collectArtifacts(deployment: DeploymentRef, dir: string): Promise<string[]>;
  /** Idempotent: stops and releases everything the deployment holds. */
  close(deployment: DeploymentRef): Promise<void>;
  /**
   * Optional: resolves when the deployment may have changed, or after `timeoutMs` at the latest. Lets the follow
   * activity react at once (a finished process) instead of on its next poll. Without it, the follower just sleeps.
   */
  waitForChange?(deployment: DeploymentRef, timeoutMs: number): Promise<void>;
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
