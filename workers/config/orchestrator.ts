/**
 * The orchestrator role's configuration: the operator file (FORGE_CONFIG, common/config.ts) and the environment, read
 * and checked once at the role's start (workers/orchestrator.ts main), then passed on. docs/configuration.md lists it.
 */
import { z } from 'zod';
import { loadConfig, type ForgeConfig } from '../../common/config';
import { parseEnv } from '../../common/temporal';
import { TASK_QUEUE_ORCHESTRATOR } from '../../common/names';
import { readPool, type PoolDefaults, type PoolSettings } from '../pool';
import { readWorkerRoleConfig, sessionKeyEnv, sessionKeyEnvShape, type SessionKeyEnv, type WorkerRoleConfig } from './worker';

/** Pool defaults of the orchestrator role (FORGE_ORCHESTRATOR_*; see workers/pool.ts for every variable). */
export const ORCHESTRATOR_POOL: PoolDefaults = {
  workflowTasks: 50,
  activities: 500,
  localActivities: 50,
  // Cached workflows cost RSS (bench/load: 1,000 running jobs → 1.03 GiB with 250 cached, 0.84 GiB with 100); an
  // evicted one replays its short history (tens of events) at its next transition. BENCHMARKS.md "Load".
  cachedWorkflows: 100,
  shutdownGraceSeconds: 5,
};

export const orchestratorEnvSchema = z.object({
  /** The pre-built workflow bundle (default dist/workflow-bundle.js when present; else bundled at start). */
  FORGE_WORKFLOW_BUNDLE: z.string().optional(),
  /** Another queue than forge-orchestrator: tests, or a blue/green roll-out. */
  FORGE_ORCHESTRATOR_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_ORCHESTRATOR),
  /** Free slots go to waiting owners in round robin ("owner", activities/control/fair-admission.ts), or first come ("off"). */
  FORGE_ADMISSION_FAIRNESS: z.enum(['owner', 'off']).default('owner'),
  ...sessionKeyEnvShape,
});
export type OrchestratorEnv = z.output<typeof orchestratorEnvSchema>;

/** What the orchestrator worker reads of the environment (the builder's part: createOrchestratorWorker). */
export interface OrchestratorSettings {
  env: OrchestratorEnv;
  pool: PoolSettings;
  /** The rl collect activity derives trainer sessions' tokens from this key (common/rl-session.ts). */
  sessionKey: SessionKeyEnv;
}

export function orchestratorSettings(env: NodeJS.ProcessEnv): OrchestratorSettings {
  return {
    env: parseEnv(orchestratorEnvSchema, env),
    pool: readPool('ORCHESTRATOR', ORCHESTRATOR_POOL, env),
    sessionKey: sessionKeyEnv(env),
  };
}

export interface OrchestratorConfig extends WorkerRoleConfig {
  role: 'orchestrator';
  /** The operator file (FORGE_CONFIG), or the built-in default. */
  operator: ForgeConfig;
  orchestrator: OrchestratorSettings;
}

/** The orchestrator role's one configuration value; throws naming the bad variable or config field. */
export function readOrchestratorConfig(env: NodeJS.ProcessEnv = process.env): OrchestratorConfig {
  const base = readWorkerRoleConfig(env);
  const operator = loadConfig(env);
  return { role: 'orchestrator', ...base, operator, orchestrator: orchestratorSettings(env) };
}
