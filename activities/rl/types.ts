/**
 * The plain data that crosses the Temporal boundary in RL (docs/architecture.md §7): the grpoRun workflow, the rollout
 * activities on `forge-rollout`, the trainer-host activities on `forge-grpo` / `forge-grpo@<hostId>` and the policy
 * collection on the orchestrator's queue. JSON only; the big things (weights, completions) never travel through
 * Temporal: rollout workers upload completions straight to the trainer host and download weights from it.
 */

import type { RejectedRollout } from '../../common/rl-rejections';

/** One policy version as its trainer host serves it. */
export interface PolicyRef {
  version: number;
  /** GET it with the session's bearer token: model.safetensors of this version. */
  url: string;
  sha256: string;
}

/**
 * What rollout workers need to reach a trainer session (weights and uploads). No secret: the bearer token is derived
 * from the session id by whoever holds the RL session key (common/rl-session.ts), so it never sits in a history.
 */
export interface TrainerEndpoint {
  baseUrl: string;
  /** The session whose token (HMAC under the RL session key) authorizes weights and uploads. */
  sessionId?: string;
  /** Legacy: the bearer token itself, in histories and in-flight runs from before derived tokens. Never set now. */
  token?: string;
}

/** The settings of one trainer session (the `forge-trainer grpo-server` config less its ids). */
export interface TrainerSessionConfig {
  base_model: { name: string; source: string; revision: string };
  learning_rate: number;
  weight_decay: number;
  warmup_steps: number;
  clip_epsilon: number;
  kl_beta: number;
  max_off_policy_steps: number;
  checkpoint_interval_steps: number;
  max_steps: number;
  seed: number;
}

export interface AcquireInput {
  jobId: string;
  /** The grpoRun workflow id (one per attempt). */
  runId: string;
  attempt: number;
  config: TrainerSessionConfig;
}

/** A trainer host holding the job's policy: where its updates go, and the version it holds. */
export interface HostLease {
  hostId: string;
  /** forge-grpo@<hostId>: updates, watch, export and release go there. */
  taskQueue: string;
  sessionId: string;
  trainer: TrainerEndpoint;
  policy: PolicyRef;
  /** The checkpoint step the session resumed from, or null (fresh from the base model). */
  resumedFrom: number | null;
  /** Updates the session takes at once (the running step and the ones waiting for their turn); absent: 1, a trainer
   *  from before pipelining. */
  pipelineDepth?: number;
}

export interface SessionInput {
  sessionId: string;
}

/** The prompt of a rollout, as a (task type, seed) pair the rollout worker resolves (workflows/rl/prompts.ts). */
export interface RolloutTaskRef {
  taskType: string;
  seed: number;
}

export interface RolloutInput {
  jobId: string;
  /** Unique per dispatch (it ends in a random part the workflow draws): the completions are uploaded under it plus
   *  the activity's attempt (uploadId), which the result carries. */
  rolloutId: string;
  step: number;
  index: number;
  task: RolloutTaskRef;
  policy: PolicyRef;
  trainer: TrainerEndpoint;
  groupSize: number;
  temperature: number;
  maxTokens: number;
  /** The sampling seed sent to the inference server (reproducible runs). */
  seed: number;
}

export interface RolloutResult {
  /** The id the completions were uploaded under (uploadId of the dispatched id and the attempt): what updates name. */
  rolloutId: string;
  step: number;
  index: number;
  /** The policy version that generated every completion of this group. */
  policyVersion: number;
  taskType: string;
  taskId: string;
  rewards: number[];
  /** Completions the task's checker accepted (reward 1). */
  successes: number;
  completionTokens: number;
  /** Epoch milliseconds on the rollout worker: generation started and the upload finished. */
  startedAt: number;
  endedAt: number;
  worker: string;
}

export interface UpdateInput {
  jobId: string;
  sessionId: string;
  step: number;
  /** task, worker, rewards: what the host re-scores each group against (absent in updates from before re-scoring). */
  groups: { rolloutId: string; advantages: number[]; task?: RolloutTaskRef; worker?: string; rewards?: number[] }[];
  rolloutTokensPerS: number | null;
  /** Workers that reached rl.max_rejections in this run: none of their groups enters an update. */
  refusedWorkers?: string[];
  /** TOPLOC and logprob verification of a share of the groups (activities/rl/verify.ts); absent: none (older runs). */
  verify?: { fraction: number; logprobTolerance: number };
}

/** One step's line of training_log.jsonl (the keys of the issue, then extras). */
export interface StepLine {
  step: number;
  policy_version: number;
  reward_mean: number;
  reward_std: number;
  loss: number;
  kl: number;
  staleness_mean: number;
  staleness_max: number;
  trainer_idle_fraction: number;
  rollout_tokens_per_s: number | null;
  step_seconds: number;
  update_seconds?: number;
  clip_fraction?: number;
  grad_norm?: number;
  lr?: number;
}

export interface UpdateResult {
  line: StepLine;
  policy: PolicyRef;
  /** Path of the checkpoint this step wrote, if it wrote one. */
  checkpoint: string | null;
  /** Groups the host dropped from the update (re-scored rewards differ, or the worker is refused); absent: none. */
  rejected?: RejectedRollout[];
}

export interface ExportedFile {
  path: string;
  sha256: string;
  size: number;
}

export interface ExportResult {
  version: number;
  files: ExportedFile[];
  /** GET <url>/<path> with the session's token. */
  url: string;
}

export interface CollectInput {
  jobId: string;
  attempt: number;
  exported: ExportResult;
  trainer: TrainerEndpoint;
}

export interface CollectResult {
  /** Folder on the orchestrator host holding the verified files (what the results pipeline commits). */
  dir: string;
  files: ExportedFile[];
}

/** How the watch of a trainer session ended (it only ends when the session does). */
export interface WatchResult {
  reason: string;
}

/** The id an attempt of a rollout uploads under: a retried attempt never reuses one (the trainer takes an id once). */
export function uploadId(rolloutId: string, attempt: number): string {
  return `${rolloutId}.a${attempt}`;
}

/** The dispatched rollout id of an upload id (uploadId's inverse). */
export function dispatchedId(id: string): string {
  return id.replace(/\.a\d+$/, '');
}
