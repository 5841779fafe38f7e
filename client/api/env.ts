/** The API's environment, checked by zod at start (an invalid variable stops the process with its name). */
import { z } from 'zod';
import { parseEnv, readTemporalEnv, type TemporalEnv } from '../../common/temporal';
import { TASK_QUEUE_ORCHESTRATOR } from '../../workflows/names';

const port = z.coerce.number().int().min(0).max(65535);
const millis = z.coerce.number().int().min(1).max(600_000);

export const apiEnvSchema = z.object({
  FORGE_API_PORT: port.default(8080),
  /** Loopback by default: exposing the API is a deliberate act (and then set FORGE_API_TOKEN). */
  FORGE_API_HOST: z.string().min(1).default('127.0.0.1'),
  FORGE_API_TOKEN: z.string().min(16, 'use a token of at least 16 characters').optional(),
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
