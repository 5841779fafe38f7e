/**
 * What every worker role reads besides its own settings: how to reach Temporal (common/temporal.ts), the process-wide
 * telemetry, health and versioning variables (workers/pool.ts), and FORGE_HOME. The roles' config modules beside this
 * one build on it; docs/configuration.md lists every variable.
 */
import { z } from 'zod';
import { forgeHome } from '../../common/paths';
import { readTemporalEnv, type TemporalEnv } from '../../common/temporal';
import { readWorkerProcessEnv, type WorkerProcessEnv } from '../pool';

export interface WorkerRoleConfig {
  temporal: TemporalEnv;
  process: WorkerProcessEnv;
  /** FORGE_HOME: keys, secrets, workspaces and caches of this process. */
  home: string;
}

export function readWorkerRoleConfig(env: NodeJS.ProcessEnv): WorkerRoleConfig {
  const process = readWorkerProcessEnv(env);
  const temporal = readTemporalEnv(env);
  return { temporal, process, home: forgeHome(env) };
}

/** The RL session key's variables, in the schemas of the roles that derive trainer sessions' tokens (common/rl-session.ts). */
export const sessionKeyEnvShape = {
  FORGE_RL_SESSION_KEY: z.string().min(32, 'the RL session key needs 32 characters or more').optional(),
  FORGE_RL_SESSION_KEY_FILE: z.string().min(1).optional(),
};

/**
 * The RL session key's variables as set, an empty one included: common/rl-session.ts refuses an empty key rather than
 * falling back to the default file (parseEnv would read an empty variable as unset).
 */
export type SessionKeyEnv = { FORGE_RL_SESSION_KEY?: string; FORGE_RL_SESSION_KEY_FILE?: string };

export function sessionKeyEnv(env: NodeJS.ProcessEnv): SessionKeyEnv {
  const picked: SessionKeyEnv = {};
  if (env.FORGE_RL_SESSION_KEY !== undefined) picked.FORGE_RL_SESSION_KEY = env.FORGE_RL_SESSION_KEY;
  if (env.FORGE_RL_SESSION_KEY_FILE !== undefined) picked.FORGE_RL_SESSION_KEY_FILE = env.FORGE_RL_SESSION_KEY_FILE;
  return picked;
}
