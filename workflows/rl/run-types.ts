/**
 * The input, carried state, progress and outcome of grpoRun (workflows/grpo-run.ts): the types its job, its tests and
 * the benchmarks share.
 */
import type { ExportedFile, HostLease, PolicyRef, StepLine, TrainerSessionConfig } from '../../activities/rl/types';
import type { RlSettings } from '../../common/rl-config';
import type { RejectionCount } from '../../common/rl-rejections';
import type { FailureInfo } from '../../jobspec/failure';
import type { RlParams } from '../../jobspec/rl';

export interface GrpoRunInput {
  jobId: string;
  attempt: number;
  /** The parent trainingJob, told of progress by signal (null: started on its own, e.g. by a test or a bench). */
  parentWorkflowId: string | null;
  taskTypes: string[];
  maxSteps: number;
  rl: RlParams;
  trainer: TrainerSessionConfig;
  settings: RlSettings;
  /** ISO time at which the attempt has run out of resources.max_hours; null: no limit. */
  deadline: string | null;
  /** What the attempt may still spend (max_cost_usd minus the job's earlier attempts); null: no limit. */
  budgetUsd: number | null;
  /** State carried across continue-as-new. */
  carry?: GrpoCarry;
}

export interface GrpoCarry {
  host: HostLease | null;
  version: number;
  policy: PolicyRef | null;
  hostLosses: number;
  latest: StepLine | null;
  startedAt: number;
  runs: number;
  stepsRedone: number;
  lastSignalAt: number;
  /** Rollouts the trainer host rejected, by worker and reason (absent: none, or a run from before re-scoring). */
  rejected?: RejectionCount[];
}

/** The status query of grpoRun, and what it signals to its job (the `rl` part of the job's status). */
export interface RlProgress {
  run_id: string;
  phase: 'acquiring' | 'training' | 'host-lost' | 'finishing' | 'done';
  host: string | null;
  session: string | null;
  policy_version: number;
  policy_sha256: string | null;
  max_steps: number;
  host_losses: number;
  steps_redone: number;
  /** Continue-as-new count of this run. */
  runs: number;
  cost_usd: number;
  /** The newest line of training_log.jsonl. */
  latest: StepLine | null;
  /** Rollouts dropped from updates (re-scored rewards differ, or the worker was refused), by worker and reason. */
  rejected_rollouts: RejectionCount[];
}

export interface GrpoRunResult {
  /** Absent in results from before PATCH_NO_FAIL. */
  ok?: true;
  steps: number;
  policy: PolicyRef;
  /** The collected outputs on the orchestrator host (what the results pipeline commits). */
  outputDir: string;
  files: ExportedFile[];
  hostId: string;
  hostLosses: number;
  stepsRedone: number;
  runs: number;
  costUsd: number;
  latest: StepLine | null;
}

/** The run failed (NO_CAPACITY, LOST, TIMEOUT, BUDGET, ..., INTERNAL); its trainer host is released. */
export interface GrpoRunFailed {
  ok: false;
  failure: FailureInfo;
}

export type GrpoRunOutcome = GrpoRunResult | GrpoRunFailed;

/** The status query's answer (and the job's `rl` status) from the carried state. */
export function progressOf(
  c: GrpoCarry,
  at: { runId: string; phase: RlProgress['phase']; maxSteps: number; costUsd: number },
): RlProgress {
  return {
    run_id: at.runId,
    phase: at.phase,
    host: c.host?.hostId ?? null,
    session: c.host?.sessionId ?? null,
    policy_version: c.version,
    policy_sha256: c.policy?.sha256 ?? null,
    max_steps: at.maxSteps,
    host_losses: c.hostLosses,
    steps_redone: c.stepsRedone,
    runs: c.runs,
    cost_usd: at.costUsd,
    latest: c.latest,
    rejected_rollouts: c.rejected ?? [],
  };
}

/** The state of a run's first execution (nothing carried yet). */
export function freshCarry(startedAt: number): GrpoCarry {
  return { host: null, version: 0, policy: null, hostLosses: 0, latest: null, startedAt, runs: 0, stepsRedone: 0, lastSignalAt: 0 };
}
