/**
 * The `results` section of the operator config (FORGE_CONFIG): where a finished job's artifacts, evals, elites and
 * notifications go, and the credentials that takes. Credentials come from here only — never from a spec — as a
 * value or as the path of a file that holds it (read when used, never logged).
 */
import { z } from 'zod';

/** At most one of a secret's value and its file. */
function notBoth(value: unknown, file: unknown, name: string, ctx: z.RefinementCtx): void {
  if (value !== undefined && file !== undefined) {
    ctx.addIssue({ code: 'custom', message: `give only one of ${name} or ${name}_file`, path: [`${name}_file`] });
  }
}

/**
 * Credentials for git remotes whose URL starts with `match` (the longest match wins): an ssh key for ssh:// and
 * user@host: URLs, or a token sent as HTTP basic auth (username + token) for https:// URLs.
 */
const gitCredentialSchema = z
  .strictObject({
    match: z.string().min(1),
    ssh_key_file: z.string().min(1).optional(),
    /** known_hosts for ssh; without it, unknown host keys are accepted on first use and checked afterwards. */
    known_hosts_file: z.string().min(1).optional(),
    username: z.string().min(1).default('x-access-token'),
    token: z.string().min(1).optional(),
    token_file: z.string().min(1).optional(),
  })
  .superRefine((c, ctx) => {
    const hasToken = c.token !== undefined || c.token_file !== undefined;
    notBoth(c.token, c.token_file, 'token', ctx);
    if (hasToken === (c.ssh_key_file !== undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give either ssh_key_file or a token (token / token_file)', path: ['ssh_key_file'] });
    }
  });
export type GitCredential = z.infer<typeof gitCredentialSchema>;

const gitSchema = z.strictObject({
  author: z.strictObject({ name: z.string().min(1), email: z.string().min(3) }).default({ name: 'Chrysalis Forge', email: 'forge@localhost' }),
  credentials: z.array(gitCredentialSchema).default([]),
  /**
   * Directories under which file:// repositories may be written (output repos, the registry). Default: FORGE_HOME
   * only, so that a signed spec cannot make the orchestrator push into any repository on its host.
   */
  file_roots: z.array(z.string().min(1)).optional(),
  /** One git command (clone, fetch, push) may take this long. */
  timeout_seconds: z.number().positive().default(600),
});
export type GitSettings = z.infer<typeof gitSchema>;

const evalsSchema = z.strictObject({
  /** Task files (<task_type>.json); default: evals/ of this repository. */
  suite_dir: z.string().min(1).optional(),
  /** Where rows are appended; default FORGE_HOME/evals.jsonl. */
  results_file: z.string().min(1).optional(),
  /** How a model directory is served (an OpenAI-compatible server that prints {"event":"serving","url":...}). */
  serve_command: z.array(z.string().min(1)).min(1).optional(),
  serve_env: z.record(z.string(), z.string()).default({}),
  /** Base models that are not a directory on this host (eval jobs of hub models): model name → endpoint URL. */
  endpoints: z.record(z.string().min(1), z.url({ protocol: /^https?$/ })).default({}),
  /** One completion request may take this long. */
  request_timeout_ms: z.number().int().positive().default(120_000),
  /** How long a model server may take to start. */
  serve_timeout_ms: z.number().int().positive().default(180_000),
});
export type EvalSettings = z.infer<typeof evalsSchema>;

const registrySchema = z.strictObject({
  /** The registry's git repository; default file://FORGE_HOME/registry (a bare repository made on first use). */
  repo: z.string().min(1).optional(),
  branch: z.string().min(1).default('main'),
  /** Where `cf-export-elites --auto-publish` pushes the registry (e.g. a GitHub repository). */
  publish_remote: z.string().min(1).optional(),
});
export type RegistrySettings = z.infer<typeof registrySchema>;

const notificationsSchema = z.strictObject({
  nostr: z
    .strictObject({
      /** Relays a `nostr:npub…` notification is published to; it is delivered when one of them accepts it. */
      relays: z.array(z.url({ protocol: /^wss?$/ })).default([]),
      /** The orchestrator's Nostr (secp256k1) key; default FORGE_HOME/keys/nostr.json, made on first use. */
      secret_key_file: z.string().min(1).optional(),
      timeout_ms: z.number().int().positive().default(10_000),
    })
    .default({ relays: [], timeout_ms: 10_000 }),
  webhook: z
    .strictObject({
      /** HMAC-SHA256 key of the X-Forge-Signature-256 header (without one, webhooks go unsigned and are refused). */
      secret: z.string().min(1).optional(),
      secret_file: z.string().min(1).optional(),
      /** When set, webhooks go only to these host names (a spec cannot make the orchestrator POST elsewhere). */
      allowed_hosts: z.array(z.string().min(1)).optional(),
      /** Extra CA certificates (PEM) to trust for https:// webhooks (an internal CA). */
      ca_file: z.string().min(1).optional(),
      timeout_ms: z.number().int().positive().default(10_000),
    })
    .superRefine((w, ctx) => notBoth(w.secret, w.secret_file, 'secret', ctx))
    .default({ timeout_ms: 10_000 }),
  /** Temporal's retries of one delivery; after the last one the failure is recorded in the status, the job unaffected. */
  retry: z
    .strictObject({
      maximum_attempts: z.int().min(1).default(5),
      initial_interval_seconds: z.number().positive().default(2),
      maximum_interval_seconds: z.number().positive().default(60),
    })
    .default({ maximum_attempts: 5, initial_interval_seconds: 2, maximum_interval_seconds: 60 }),
});
export type NotificationSettings = z.infer<typeof notificationsSchema>;

export const resultsConfigSchema = z.strictObject({
  /** Commit artifacts, evaluate and promote after a successful finetune/rl attempt (EVALUATING). */
  enabled: z.boolean().default(true),
  git: gitSchema.default(() => gitSchema.parse({})),
  evals: evalsSchema.default(() => evalsSchema.parse({})),
  registry: registrySchema.default(() => registrySchema.parse({})),
  notifications: notificationsSchema.default(() => notificationsSchema.parse({})),
  /** How long committing a job's artifacts (and evaluating it) may keep retrying before the job is abandoned. */
  max_minutes: z.number().positive().default(120),
});
export type ResultsConfig = z.infer<typeof resultsConfigSchema>;

export function defaultResultsConfig(): ResultsConfig {
  return resultsConfigSchema.parse({});
}

/** What the workflow needs to know of the results config (it travels in JobSettings, so it is in history). */
export interface ResultSettings {
  enabled: boolean;
  maxMinutes: number;
  notify: { maximumAttempts: number; initialIntervalSeconds: number; maximumIntervalSeconds: number };
}

export function resultSettings(c: ResultsConfig): ResultSettings {
  const r = c.notifications.retry;
  return {
    enabled: c.enabled,
    maxMinutes: c.max_minutes,
    notify: { maximumAttempts: r.maximum_attempts, initialIntervalSeconds: r.initial_interval_seconds, maximumIntervalSeconds: r.maximum_interval_seconds },
  };
}
