/**
 * The environment of every process the orchestrator's hosts run on a job's behalf (local and p2pfl trainers, the
 * GRPO trainer host's policy processes, the eval suite's model server): built from an allow-list, never the worker's
 * whole environment. A worker's environment holds the operator's credentials (FORGE_API_TOKEN under `npm start`,
 * TEMPORAL_API_KEY, cloud keys); a trainer runs code and data chosen by whoever signed the spec, so it gets only:
 *
 *   1. the basics of a Unix process, when the worker has them: PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE,
 *      LC_*, TZ, TMPDIR, TERM;
 *   2. the names the operator lists in `trainer_env_passthrough` (FORGE_CONFIG; for the GRPO host,
 *      FORGE_GRPO_TRAINER_ENV_PASSTHROUGH), copied from the worker's environment when set;
 *   3. the operator's values for this trainer (`backends.<name>.trainers.<image>.env`, `results.evals.serve_env`,
 *      FORGE_GRPO_TRAINER_ENV);
 *   4. the trainer contract (activities/backends/trainer-contract.ts) and per-attempt values, last: nothing overrides
 *      them.
 *
 * spawnTrainer() is the one way those processes start, and it takes only an environment trainerEnvironment() made.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { z } from 'zod';

/** An environment variable name (POSIX portable). */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const envNameSchema = z.string().regex(ENV_NAME, 'must be an environment variable name');

/** What every trainer gets from the worker's environment when set: nothing in them is a credential. */
export const BASIC_TRAINER_ENV: readonly string[] = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'TZ', 'TMPDIR', 'TERM'];
const BASIC_LOCALE = /^LC_[A-Z]+$/;
/** PATH when the worker has none (a trainer command is usually an absolute path anyway). */
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

declare const trainerEnvBrand: unique symbol;
/** An environment trainerEnvironment() made: the only kind spawnTrainer() takes (the brand is compile-time only). */
export type TrainerEnv = Readonly<Record<string, string>> & { readonly [trainerEnvBrand]: true };

export interface TrainerEnvInput {
  /** The worker's environment; only the basics and the `passthrough` names are read from it. */
  base: NodeJS.ProcessEnv;
  /** More names to copy from `base` when set (the operator's `trainer_env_passthrough`). */
  passthrough?: readonly string[];
  /** The operator's values for this trainer. */
  operator?: Readonly<Record<string, string>>;
  /** The trainer contract and per-attempt values: set last. */
  contract?: Readonly<Record<string, string>>;
}

/** The allow-listed environment of one trainer process (see the module comment for what goes in, in which order). */
export function trainerEnvironment(input: TrainerEnvInput): TrainerEnv {
  const allowed = new Set([...BASIC_TRAINER_ENV, ...(input.passthrough ?? [])]);
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.base)) {
    if (value !== undefined && (allowed.has(name) || BASIC_LOCALE.test(name))) env[name] = value;
  }
  env.PATH ??= DEFAULT_PATH;
  return { ...env, ...input.operator, ...input.contract } as TrainerEnv;
}

/**
 * Starts a process on a job's behalf (the local backend's trainer wrapper, the GRPO host's policy processes, the eval
 * suite's model server) with `argv` (program first) and an allow-listed environment, never the worker's own.
 */
export function spawnTrainer(argv: readonly string[], env: TrainerEnv, options: Omit<SpawnOptions, 'env'> = {}): ChildProcess {
  const [program, ...args] = argv;
  if (program === undefined || program === '') throw new Error('spawnTrainer: the command is empty');
  return spawn(program, args, { ...options, env });
}

/**
 * The GRPO host's passthrough list (it is configured by its environment, not FORGE_CONFIG):
 * FORGE_GRPO_TRAINER_ENV_PASSTHROUGH, names separated by commas or spaces. An invalid name is an error that says so.
 */
export function passthroughFromEnv(env: NodeJS.ProcessEnv, variable = 'FORGE_GRPO_TRAINER_ENV_PASSTHROUGH'): string[] {
  const names = (env[variable] ?? '').split(/[\s,]+/).filter(Boolean);
  const bad = names.filter((n) => !ENV_NAME.test(n));
  if (bad.length) throw new Error(`${variable}: ${bad.map((n) => JSON.stringify(n)).join(', ')} is not an environment variable name; list names separated by commas`);
  return names;
}
