/**
 * The grpo role's configuration: its environment, read and checked once at the role's start (workers/grpo.ts main),
 * then passed on. docs/configuration.md lists it.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { forgeHome, repoRoot } from '../../common/paths';
import { parseEnv } from '../../common/temporal';
import { passthroughFromEnv } from '../../common/trainer-env';
import { TASK_QUEUE_GRPO } from '../../common/names';
import { readPool, type PoolDefaults, type PoolSettings } from '../pool';
import { readWorkerRoleConfig, sessionKeyEnv, sessionKeyEnvShape, type SessionKeyEnv, type WorkerRoleConfig } from './worker';

export const GRPO_POOL: PoolDefaults = {
  workflowTasks: 2,
  activities: 1,
  localActivities: 1,
  cachedWorkflows: 0,
  shutdownGraceSeconds: 120,
};

const argv = z
  .string()
  .transform((s, ctx) => {
    try {
      return JSON.parse(s) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a JSON array of strings' });
      return z.NEVER;
    }
  })
  .pipe(z.array(z.string().min(1)).min(1));

export const grpoEnvSchema = z.object({
  FORGE_HOST_ID: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'letters, digits, ".", "_" and "-"').optional(),
  FORGE_GRPO_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_GRPO),
  FORGE_GRPO_STATE_DIR: z.string().min(1).optional(),
  FORGE_GRPO_WORK_DIR: z.string().min(1).optional(),
  FORGE_GRPO_TRAINER_COMMAND: argv.optional(),
  FORGE_GRPO_TRAINER_ENV: z
    .string()
    .transform((s) => JSON.parse(s) as unknown)
    .pipe(z.record(z.string(), z.string()))
    .optional(),
  FORGE_GRPO_DEVICES: z.string().regex(/^[0-9,]+(;[0-9,]+)*$/, 'device lists like "0;1" or "0,1,2,3"').optional(),
  FORGE_GRPO_BIND_HOST: z.string().min(1).default('127.0.0.1'),
  FORGE_GRPO_ADVERTISE_HOST: z.string().min(1).optional(),
  FORGE_GRPO_LEASE_SECONDS: z.coerce.number().positive().default(300),
  FORGE_GRPO_START_TIMEOUT_SECONDS: z.coerce.number().positive().default(900),
  /** Benchmarks only: pad every update to at least this long (simulated accelerator time). */
  FORGE_GRPO_MIN_UPDATE_SECONDS: z.coerce.number().min(0).default(0),
  FORGE_GRPO_PIPELINE_DEPTH: z.coerce.number().int().min(1).max(2).default(2),
  FORGE_MQTT_URL: z.url({ protocol: /^(mqtts?|wss?)$/ }).optional(),
  ...sessionKeyEnvShape,
  /** Names of this worker's variables the policy process also gets (checked by common/trainer-env.ts passthroughFromEnv). */
  FORGE_GRPO_TRAINER_ENV_PASSTHROUGH: z.string().optional(),
});

export function defaultTrainerCommand(): string[] {
  const local = path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer');
  return [existsSync(local) ? local : 'forge-trainer', 'grpo-server'];
}
export type GrpoEnv = z.output<typeof grpoEnvSchema>;

/** What the trainer host reads of the environment (the builder's part: createGrpoWorker). */
export interface GrpoSettings {
  env: GrpoEnv;
  pool: PoolSettings;
  /** FORGE_HOME: the default state and work folders and RL session key live under it. */
  home: string;
  sessionKey: SessionKeyEnv;
  /** FORGE_GRPO_TRAINER_ENV_PASSTHROUGH: names of this worker's variables the policy process also gets. */
  trainerEnvPassthrough: string[];
}

export function grpoSettings(env: NodeJS.ProcessEnv, home: string = forgeHome(env)): GrpoSettings {
  return {
    env: parseEnv(grpoEnvSchema, env),
    pool: readPool('GRPO', GRPO_POOL, env),
    home,
    sessionKey: sessionKeyEnv(env),
    trainerEnvPassthrough: passthroughFromEnv(env),
  };
}

export interface GrpoConfig extends WorkerRoleConfig {
  role: 'grpo';
  grpo: GrpoSettings;
}

/** The grpo role's one configuration value; throws naming the bad variable. */
export function readGrpoConfig(env: NodeJS.ProcessEnv = process.env): GrpoConfig {
  const base = readWorkerRoleConfig(env);
  return { role: 'grpo', ...base, grpo: grpoSettings(env, base.home) };
}
