/**
 * The `results` section of the operator config (FORGE_CONFIG): where a finished job's artifacts, evals, elites and
 * notifications go, and the credentials that takes. Credentials come from here only — never from a spec — as a
 * value or as the path of a file that holds it (read when used, never logged).
 */
import { z } from 'zod';
import { gitRefProblem } from '../jobspec/git-names';

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

/** An allowed output repository: a URL prefix or glob (jobspec/policy.ts), for every owner or only the listed ones. */
const outputRepoRuleSchema = z
  .union([z.string().min(1), z.strictObject({ match: z.string().min(1), owners: z.array(z.string().startsWith('did:key:')).min(1).optional() })])
  .transform((rule) => (typeof rule === 'string' ? { match: rule } : rule));

const gitSchema = z.strictObject({
  author: z.strictObject({ name: z.string().min(1), email: z.string().min(3) }).default({ name: 'Chrysalis Forge', email: 'forge@localhost' }),
  credentials: z.array(gitCredentialSchema).default([]),
  /**
   * Directories of this host a spec may name: file:// repositories (data.repo, output repos, the registry) and local
   * model directories (base_model.source "local", which eval jobs also read). Default: FORGE_HOME only, so that a
   * signed spec cannot make the orchestrator read or push into any file of its host.
   */
  file_roots: z.array(z.string().min(1)).optional(),
  /**
   * Remote output repositories specs may push to (artifacts.output_repo): URL prefixes or globs, each for every owner
   * or only `owners`. file:// repositories under file_roots are always allowed; default: nothing else. A remote one
   * also needs an entry in `credentials`.
   */
  output_repos: z.array(outputRepoRuleSchema).default([]),
  /** Every artifacts.output_branch starts with it ("" for none; main/master are refused anyway). */
  branch_prefix: z
    .string()
    .refine((p) => p === '' || (p.endsWith('/') && gitRefProblem(`${p}x`) === undefined), 'must be "" or a git ref prefix ending in "/", e.g. "jobs/"')
    .default('jobs/'),
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

const webhookSecretRuleSchema = z
  .strictObject({
    owner: z.string().startsWith('did:key:').optional(),
    url_prefix: z.url({ protocol: /^https$/ }).optional(),
    secret: z.string().min(1).optional(),
    secret_file: z.string().min(1).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.owner === undefined && r.url_prefix === undefined) ctx.addIssue({ code: 'custom', message: 'give owner, url_prefix or both', path: ['owner'] });
    if ((r.secret === undefined) === (r.secret_file === undefined)) ctx.addIssue({ code: 'custom', message: 'give exactly one of secret or secret_file', path: ['secret_file'] });
  });
export type WebhookSecretRule = z.infer<typeof webhookSecretRuleSchema>;

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
      /**
       * The shared HMAC-SHA256 key of the X-Forge-Signature-256 header. Used for every webhook when `secrets` is empty;
       * with `secrets`, only for a webhook no rule matches, and only when `shared_fallback` is true.
       */
      secret: z.string().min(1).optional(),
      secret_file: z.string().min(1).optional(),
      /**
       * Per-owner or per-target keys (activities/webhook-secret.ts): a rule matches a webhook whose spec owner is
       * `owner` and/or whose URL starts with `url_prefix`; the most specific match wins (owner and prefix, then owner,
       * then the longest prefix). Without a key, a webhook is not sent: receivers only ever see signed deliveries.
       */
      secrets: z.array(webhookSecretRuleSchema).default([]),
      /** With `secrets`: sign a webhook no rule matches with the shared `secret` (default false: refuse to send it). */
      shared_fallback: z.boolean().optional(),
      /** When set, webhooks go only to these host names (a spec cannot make the orchestrator POST elsewhere). */
      allowed_hosts: z.array(z.string().min(1)).optional(),
      /** Extra CA certificates (PEM) to trust for https:// webhooks (an internal CA). */
      ca_file: z.string().min(1).optional(),
      timeout_ms: z.number().int().positive().default(10_000),
    })
    .superRefine((w, ctx) => notBoth(w.secret, w.secret_file, 'secret', ctx))
    .default({ timeout_ms: 10_000, secrets: [] }),
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

/** Where the eval suite runs (README "Where evaluation runs"): on the orchestrator's workers, or as an attempt on a backend. */
export const EVAL_PLACES = ['orchestrator', 'backend'] as const;
export type EvalPlace = (typeof EVAL_PLACES)[number];
const evalPlaceSchema = z.enum(EVAL_PLACES, { error: 'must be "orchestrator" or "backend"' });

const evaluationSchema = z.strictObject({
  /** Default for every backend. "backend": eval jobs and a finetune's EVALUATING run `forge-trainer eval` as an attempt. */
  where: evalPlaceSchema.default('orchestrator'),
  /** Per backend name (backends.<name>), over `where`: eval jobs go by their backend.provider, finetunes by the backend that trained. */
  backends: z.record(z.string().min(1), evalPlaceSchema).default({}),
});
export type EvaluationSettings = z.infer<typeof evaluationSchema>;

export const resultsConfigSchema = z.strictObject({
  /** Commit artifacts, evaluate and promote after a successful finetune/rl attempt (EVALUATING). */
  enabled: z.boolean().default(true),
  git: gitSchema.default(() => gitSchema.parse({})),
  evals: evalsSchema.default(() => evalsSchema.parse({})),
  registry: registrySchema.default(() => registrySchema.parse({})),
  evaluation: evaluationSchema.default(() => evaluationSchema.parse({})),
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
  /** Where evaluation runs (absent in histories older than it: on the orchestrator). */
  evaluation?: EvaluationSettings;
}

export function resultSettings(c: ResultsConfig): ResultSettings {
  const r = c.notifications.retry;
  return {
    enabled: c.enabled,
    maxMinutes: c.max_minutes,
    notify: {
      maximumAttempts: r.maximum_attempts,
      initialIntervalSeconds: r.initial_interval_seconds,
      maximumIntervalSeconds: r.maximum_interval_seconds,
    },
    evaluation: c.evaluation,
  };
}
