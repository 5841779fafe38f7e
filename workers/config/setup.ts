/**
 * The setup role's configuration (infra/setup.ts, the one-shot job): Temporal, the operator file (FORGE_CONFIG: the
 * reaper's schedule follows it) and its own variables, read and checked once at start. docs/configuration.md lists it.
 */
import { z } from 'zod';
import { loadConfig, type ForgeConfig } from '../../common/config';
import { parseEnv, readTemporalEnv, type TemporalEnv } from '../../common/temporal';
import { TASK_QUEUE_ORCHESTRATOR } from '../../common/names';

export const setupEnvSchema = z.object({
  /** A fresh cluster (compose, Helm) takes a while to answer: how long setup waits for Temporal. */
  FORGE_SETUP_WAIT_SECONDS: z.coerce.number().positive().default(120),
  /** The orchestrator workers' queue, where the reaper's schedule starts its runs. */
  FORGE_ORCHESTRATOR_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_ORCHESTRATOR),
});
export type SetupEnv = z.output<typeof setupEnvSchema>;

export interface SetupConfig {
  role: 'setup';
  temporal: TemporalEnv;
  operator: ForgeConfig;
  setup: SetupEnv;
}

/** The setup role's one configuration value; throws naming the bad variable or config field. */
export function readSetupConfig(env: NodeJS.ProcessEnv = process.env): SetupConfig {
  const temporal = readTemporalEnv(env);
  return { role: 'setup', temporal, operator: loadConfig(env), setup: parseEnv(setupEnvSchema, env) };
}
