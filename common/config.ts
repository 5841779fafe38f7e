/**
 * Operator configuration (FORGE_CONFIG, a JSON file). It decides what runs on the orchestrator's hosts — never the
 * spec: a signed spec names a trainer image, and only this file maps that image to a command.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_TRAINER_IMAGE } from '../spec/constants';
import { repoRoot } from './paths';

const backendName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'backend names are lower-case letters, digits and "-", starting with a letter');

const trainerCommandSchema = z.strictObject({
  command: z.array(z.string().min(1)).min(1, 'command needs at least the program to run'),
  env: z.record(z.string(), z.string()).default({}),
});
export type TrainerCommand = z.infer<typeof trainerCommandSchema>;

const localBackendSchema = z.strictObject({
  kind: z.literal('local'),
  enabled: z.boolean().default(true),
  /** Trainer image name → how to run it on this host. */
  trainers: z.record(z.string().min(1), trainerCommandSchema).default({}),
  /** Cost accounting over wall time. */
  hourly_usd: z.number().nonnegative().default(0),
  max_concurrent: z.number().int().nonnegative().optional(),
  /** How often the follow activity looks at a running process. */
  poll_interval_ms: z.number().int().min(10).max(60_000).default(1000),
});
export type LocalBackendConfig = z.infer<typeof localBackendSchema>;

// Remote backends are added to this union by their own issues.
const backendSchema = z.discriminatedUnion('kind', [localBackendSchema]);
export type BackendConfig = z.infer<typeof backendSchema>;

export const forgeConfigSchema = z.strictObject({
  backends: z.record(backendName, backendSchema).refine((b) => Object.keys(b).length > 0, 'configure at least one backend'),
  retry_backoff: z
    .strictObject({
      initial_seconds: z.number().nonnegative().default(10),
      max_seconds: z.number().nonnegative().default(600),
    })
    .refine((b) => b.max_seconds >= b.initial_seconds, { message: 'max_seconds must be >= initial_seconds', path: ['max_seconds'] })
    .default({ initial_seconds: 10, max_seconds: 600 }),
  /** did:key identities allowed to submit; absent = any valid signature. */
  allowed_owners: z.array(z.string().startsWith('did:key:')).optional(),
  /** Heartbeat timeout of the activity that follows a deployment: how fast a dead worker is noticed. */
  follow_heartbeat_seconds: z.number().positive().default(30),
  /** How long QUEUED waits between admission checks when no backend has capacity. */
  admission_poll_seconds: z.number().positive().default(15),
});
export type ForgeConfig = z.infer<typeof forgeConfigSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The reference trainer (trainer/), installed by the bootstrap into .tools/venv. */
export function defaultConfig(): ForgeConfig {
  const trainer = path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer');
  return forgeConfigSchema.parse({
    backends: {
      local: {
        kind: 'local',
        trainers: { [DEFAULT_TRAINER_IMAGE]: { command: [trainer, 'run'] } },
      },
    },
  });
}

export function parseConfig(value: unknown, source = 'config'): ForgeConfig {
  const result = forgeConfigSchema.safeParse(value);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid operator config ${source}:\n${lines.join('\n')}`);
  }
  return result.data;
}

/** Reads FORGE_CONFIG (a JSON file) or returns the default config. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ForgeConfig {
  const file = env.FORGE_CONFIG;
  if (!file) return defaultConfig();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`FORGE_CONFIG=${file}: cannot read it (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`FORGE_CONFIG=${file}: not valid JSON (${(err as Error).message})`);
  }
  return parseConfig(json, file);
}
