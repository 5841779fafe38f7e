/**
 * The embedded RL roles' configuration (`npm start`, workers/local-rl.ts): their own variables plus those of the
 * rollout and grpo roles, read and checked once at start. The inference server is the process's own (started on
 * first use), so FORGE_INFERENCE_URL and its admin token are filled in when it listens. docs/configuration.md lists it.
 */
import { z } from 'zod';
import { parseEnv } from '../../common/temporal';
import { readPool } from '../pool';
import { defaultTrainerCommand, grpoSettings, type GrpoSettings } from './grpo';
import { ROLLOUT_POOL, rolloutEnvSchema, type RolloutSettings } from './rollout';
import { readWorkerRoleConfig, sessionKeyEnv, type WorkerRoleConfig } from './worker';

export const localRlEnvSchema = z.object({
  /** The model the inference server starts with (default FORGE_HOME/models/tiny-base, made when missing). */
  FORGE_LOCAL_RL_MODEL: z.string().min(1).optional(),
  /** The inference server stops after this long without a request. */
  FORGE_LOCAL_RL_IDLE_SECONDS: z.coerce.number().positive().default(300),
  /** The forge-trainer program (default the bootstrap's .tools/venv/bin/forge-trainer). */
  FORGE_LOCAL_RL_TRAINER: z.string().min(1).optional(),
});
export type LocalRlEnv = z.output<typeof localRlEnvSchema>;

/** The rollout variables the embedded roles read: all but the inference server's, which is their own. */
const localRolloutEnvSchema = rolloutEnvSchema.omit({ FORGE_INFERENCE_URL: true, FORGE_INFERENCE_ADMIN_TOKEN: true });

export interface LocalRlConfig extends WorkerRoleConfig {
  role: 'local-rl';
  localRl: LocalRlEnv;
  /** The forge-trainer program: the inference server, and the policy processes unless FORGE_GRPO_TRAINER_COMMAND. */
  trainer: string;
  /** The rollout worker's settings, given the inference server's URL and admin token once it listens. */
  rollout(inference: { url: string; adminToken: string }): RolloutSettings;
  grpo: GrpoSettings;
  /** The environment the inference server inherits (common/trainer-env.ts filters nothing here: it is this process's). */
  childEnv: NodeJS.ProcessEnv;
  /** After an idle inference server stopped and no policy is held, the process ends and `npm start` starts it afresh. */
  recycleWhenIdle: boolean;
}

/** The embedded RL roles' one configuration value; throws naming the bad variable. */
export function readLocalRlConfig(env: NodeJS.ProcessEnv = process.env): LocalRlConfig {
  // Quiet unless asked: the embedded stack's terminal is the user's (the Core's "no workflows registered" warnings).
  // No health endpoint of their own: under `npm start` FORGE_HEALTH_ADDRESS is the orchestrator child's.
  const base = readWorkerRoleConfig({ ...env, FORGE_WORKER_LOG_LEVEL: env.FORGE_WORKER_LOG_LEVEL || 'ERROR', FORGE_HEALTH_ADDRESS: undefined });
  const localRl = parseEnv(localRlEnvSchema, env);
  const trainer = localRl.FORGE_LOCAL_RL_TRAINER ?? defaultTrainerCommand()[0]!;
  const omp = env.OMP_NUM_THREADS ?? '1';
  const grpoEnv: NodeJS.ProcessEnv = {
    ...env,
    FORGE_GRPO_TRAINER_COMMAND: env.FORGE_GRPO_TRAINER_COMMAND ?? JSON.stringify([trainer, 'grpo-server']),
    FORGE_GRPO_TRAINER_ENV: env.FORGE_GRPO_TRAINER_ENV ?? JSON.stringify({ OMP_NUM_THREADS: omp }),
  };
  parseEnv(localRolloutEnvSchema, env); // at start: a bad rollout variable stops the process before anything runs
  const rolloutPool = readPool('ROLLOUT', ROLLOUT_POOL, env);
  return {
    role: 'local-rl',
    ...base,
    localRl,
    trainer,
    rollout: ({ url, adminToken }) => ({
      env: parseEnv(rolloutEnvSchema, { ...env, FORGE_INFERENCE_URL: url, FORGE_INFERENCE_ADMIN_TOKEN: adminToken }),
      pool: rolloutPool,
      home: base.home,
      sessionKey: sessionKeyEnv(env),
    }),
    grpo: grpoSettings(grpoEnv, base.home),
    childEnv: { ...env, OMP_NUM_THREADS: omp },
    recycleWhenIdle: env.FORGE_EMBEDDED === '1',
  };
}
