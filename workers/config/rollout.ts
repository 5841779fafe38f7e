/**
 * The rollout role's configuration: its environment, read and checked once at the role's start (workers/rollout.ts
 * main), then passed on. docs/configuration.md lists it.
 */
import { z } from 'zod';
import { forgeHome } from '../../common/paths';
import { parseEnv } from '../../common/temporal';
import { TASK_QUEUE_ROLLOUT } from '../../common/names';
import { readPool, type PoolDefaults, type PoolSettings } from '../pool';
import { readWorkerRoleConfig, sessionKeyEnv, sessionKeyEnvShape, type SessionKeyEnv, type WorkerRoleConfig } from './worker';

export const ROLLOUT_POOL: PoolDefaults = {
  workflowTasks: 2,
  activities: 4,
  localActivities: 1,
  cachedWorkflows: 0,
  shutdownGraceSeconds: 30,
};

export const rolloutEnvSchema = z.object({
  FORGE_INFERENCE_URL: z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, '')),
  FORGE_INFERENCE_ADMIN_TOKEN: z.string().min(1).optional(),
  FORGE_ROLLOUT_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_ROLLOUT),
  FORGE_ROLLOUT_CACHE_DIR: z.string().min(1).optional(),
  FORGE_ROLLOUT_KEEP_VERSIONS: z.coerce.number().int().min(1).default(4),
  FORGE_ROLLOUT_HEARTBEAT_MS: z.coerce.number().int().min(100).default(2000),
  FORGE_RL_TASKS_DIR: z.string().min(1).optional(),
  FORGE_HOST_ID: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'letters, digits, ".", "_" and "-"').optional(),
  FORGE_MQTT_URL: z.url({ protocol: /^(mqtts?|wss?)$/ }).optional(),
  ...sessionKeyEnvShape,
});
export type RolloutEnv = z.output<typeof rolloutEnvSchema>;

/** What the rollout worker reads of the environment (the builder's part: createRolloutWorker). */
export interface RolloutSettings {
  env: RolloutEnv;
  pool: PoolSettings;
  /** FORGE_HOME: the default cache and RL session key live under it. */
  home: string;
  sessionKey: SessionKeyEnv;
}

export function rolloutSettings(env: NodeJS.ProcessEnv, home: string = forgeHome(env)): RolloutSettings {
  return { env: parseEnv(rolloutEnvSchema, env), pool: readPool('ROLLOUT', ROLLOUT_POOL, env), home, sessionKey: sessionKeyEnv(env) };
}

export interface RolloutConfig extends WorkerRoleConfig {
  role: 'rollout';
  rollout: RolloutSettings;
}

/** The rollout role's one configuration value; throws naming the bad variable. */
export function readRolloutConfig(env: NodeJS.ProcessEnv = process.env): RolloutConfig {
  const base = readWorkerRoleConfig(env);
  return { role: 'rollout', ...base, rollout: rolloutSettings(env, base.home) };
}
