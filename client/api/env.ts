/**
 * The api role's configuration: the operator file (FORGE_CONFIG) and the environment, checked by zod once at start
 * (an invalid variable or field stops the process with its name), then passed on. docs/configuration.md lists it.
 */
import { z } from 'zod';
import { API_AUTH_MODES } from './auth';
import { loadConfig, type ForgeConfig } from '../../common/config';
import { forgeHome } from '../../common/paths';
import { parseEnv, readTemporalEnv, type TemporalEnv } from '../../common/temporal';
import { TASK_QUEUE_ORCHESTRATOR } from '../../common/names';

const port = z.coerce.number().int().min(0).max(65535);
const millis = z.coerce.number().int().min(1).max(600_000);

export const apiEnvSchema = z.object({
  FORGE_API_PORT: port.default(8080),
  /** Loopback by default: exposing the API is a deliberate act (and then set FORGE_API_TOKEN). */
  FORGE_API_HOST: z.string().min(1).default('127.0.0.1'),
  FORGE_API_TOKEN: z.string().min(16, 'use a token of at least 16 characters').optional(),
  /**
   * owners: each request signed by an owner's did:key, who sees only their jobs (FORGE_API_TOKEN: the operator, sees
   * all); token: FORGE_API_TOKEN when set, else open. Default: owners unless FORGE_API_HOST is a loopback address.
   */
  FORGE_API_AUTH: z.enum(API_AUTH_MODES).optional(),
  /** Host names the API answers to besides localhost, 127.0.0.1, [::1] and FORGE_API_HOST (comma-separated). */
  FORGE_API_ALLOWED_HOSTS: z
    .string()
    .optional()
    .transform((s) => (s ?? '').split(',').map((h) => h.trim()).filter(Boolean))
    .pipe(z.array(z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+|[0-9a-fA-F:]+)$/, 'must be host names (no scheme, port or path), comma-separated'))),
  FORGE_API_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** The queue the orchestrator worker polls (the worker reads the same variable). */
  FORGE_ORCHESTRATOR_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_ORCHESTRATOR),
  /** Base URL of the Temporal Web UI for `web_ui_url`; defaults to the embedded dev server's UI. */
  FORGE_WEB_UI_URL: z.url({ protocol: /^https?$/ }).optional(),
  FORGE_API_QUERY_TIMEOUT_MS: millis.default(10_000),
  FORGE_API_HEALTH_TIMEOUT_MS: millis.default(5_000),
  FORGE_API_LOG_POLL_MS: millis.default(1_000),
});
export type ApiEnv = z.infer<typeof apiEnvSchema>;

export interface ApiSettings {
  api: ApiEnv;
  temporal: TemporalEnv;
  webUiUrl: string | null;
}

export function readApiSettings(env: NodeJS.ProcessEnv = process.env): ApiSettings {
  const api = parseEnv(apiEnvSchema, env);
  const temporal = readTemporalEnv(env);
  // Without TEMPORAL_ADDRESS the stack runs the dev server, whose UI listens on FORGE_UI_PORT.
  const webUiUrl = api.FORGE_WEB_UI_URL ?? (temporal.TEMPORAL_ADDRESS ? null : `http://127.0.0.1:${temporal.FORGE_UI_PORT}`);
  return { api, temporal, webUiUrl: webUiUrl?.replace(/\/+$/, '') ?? null };
}

export interface ApiConfig extends ApiSettings {
  role: 'api';
  /** The operator file (FORGE_CONFIG), or the built-in default. */
  operator: ForgeConfig;
  /** FORGE_HOME: keys, p2pfl web-logger records. */
  home: string;
}

/** The api role's one configuration value; throws naming the bad variable or config field. */
export function readApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const settings = readApiSettings(env);
  return { role: 'api', ...settings, operator: loadConfig(env), home: forgeHome(env) };
}
