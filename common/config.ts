/**
 * Operator configuration (FORGE_CONFIG, a JSON file). It decides what runs on the orchestrator's hosts — never the
 * spec: a signed spec names a trainer image, and only this file maps that image to a command.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_TRAINER_IMAGE, MAX_HOURS_LIMIT } from '../jobspec/constants';
import { repoRoot } from './paths';
import { defaultResultsConfig, resultsConfigSchema } from './results-config';
import { defaultRlConfig, rlConfigSchema } from './rl-config';
import { envNameSchema } from './trainer-env';

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
  /** This backend's own outage budget (overrides the top-level backend_outage_seconds). */
  backend_outage_seconds: z.number().positive().max(30 * 24 * 3600).optional(),
});
export type LocalBackendConfig = z.infer<typeof localBackendSchema>;

// ---- remote backends (docs/architecture.md §5) ------------------------------------------------------------------------------
// Every kind shares the fields the API lists (enabled, hourly_usd, trainers, max_concurrent) and poll_interval_ms.
// Credentials live here only, as a value or as the path of a file that holds it (read when used, never logged);
// a signed spec can name a backend but never carry or choose a credential.

/** How a remote backend runs one trainer image: the container (or template) and the trainer command inside it. */
const remoteTrainerSchema = z.strictObject({
  /** Container image to run; default: the spec's trainer.image itself. */
  image: z.string().regex(/^\S+$/, 'must be an image name without spaces').optional(),
  /** Prime Intellect: the custom template (in your account) whose image runs the trainer. */
  template_id: z.string().min(1).optional(),
  /** The trainer command inside the container (the agent wrapper runs it, docs/architecture.md §6). */
  command: z.array(z.string().min(1)).min(1).default(['forge-trainer', 'run']),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'), z.string()).default({}),
});
export type RemoteTrainerConfig = z.infer<typeof remoteTrainerSchema>;

/** A credential: its value, or the file that holds it (mode 0600; read at use, so rotation needs no restart). */
function oneSecret(value: string | undefined, file: string | undefined, name: string, ctx: z.RefinementCtx): void {
  if ((value === undefined) === (file === undefined)) {
    ctx.addIssue({ code: 'custom', message: `give exactly one of ${name} or ${name}_file`, path: [`${name}_file`] });
  }
}

const remoteCommon = {
  enabled: z.boolean().default(true),
  /** The price cap: the most this backend may cost per hour (USD). Bids, pods and quotes above it are refused. */
  hourly_usd: z.number().positive(),
  max_concurrent: z.number().int().nonnegative().optional(),
  poll_interval_ms: z.number().int().min(10).max(600_000).default(10_000),
  /** One HTTP request to the backend's API, retries excluded. */
  request_timeout_ms: z.number().int().min(50).max(600_000).default(30_000),
  trainers: z.record(z.string().min(1), remoteTrainerSchema).default({}),
  /** Port of the forge agent inside the container (status and outputs over HTTP, see remote-agent.ts). */
  agent_port: z.number().int().min(1).max(65535).default(8080),
  /** This backend's own outage budget (overrides the top-level backend_outage_seconds). */
  backend_outage_seconds: z.number().positive().max(30 * 24 * 3600).optional(),
};

const akashConsoleSchema = z
  .strictObject({
    url: z.url({ protocol: /^https?$/ }).default('https://console-api.akash.network'),
    api_key: z.string().min(1).optional(),
    api_key_file: z.string().min(1).optional(),
    /** Escrow deposit of a new deployment, USD (the Console's minimum is 5). */
    deposit_usd: z.number().positive().default(5),
  })
  .superRefine((c, ctx) => oneSecret(c.api_key, c.api_key_file, 'api_key', ctx));

const akashChainSchema = z
  .strictObject({
    /** The chain's REST (LCD) endpoint: queries and transaction broadcast. */
    rest_url: z.url({ protocol: /^https?$/ }),
    chain_id: z.string().min(1).default('akashnet-2'),
    mnemonic: z.string().min(1).optional(),
    mnemonic_file: z.string().min(1).optional(),
    /** Gas limit and price of each transaction (fee = gas × price, in uakt). */
    gas: z.number().int().positive().default(800_000),
    gas_price_uakt: z.number().nonnegative().default(0.025),
    /** Escrow deposit of a new deployment, in units of the pricing denom (5 AKT or 5 USDC by default). */
    deposit_amount: z.number().int().positive().default(5_000_000),
    /** Where the client certificate for provider mTLS is kept (mode 0600); default FORGE_HOME/akash/<backend>/cert.json. */
    certificate_file: z.string().min(1).optional(),
    /** Compare each provider's TLS certificate with the one it published on chain. */
    verify_provider_certificates: z.boolean().default(true),
  })
  .superRefine((c, ctx) => oneSecret(c.mnemonic, c.mnemonic_file, 'mnemonic', ctx));

export const AKASH_NETWORKS = ['mainnet', 'sandbox'] as const;

/**
 * An installation's tag: eight hex digits derived from its orchestrator key, in the provider-visible name of each of its
 * remote deployments (activities/backends/installation.ts).
 */
export const INSTALLATION_TAG = /^[0-9a-f]{8}$/;

const akashBackendSchema = z
  .strictObject({
    kind: z.literal('akash'),
    ...remoteCommon,
    mode: z.enum(['console', 'chain']),
    network: z.enum(AKASH_NETWORKS).default('mainnet'),
    /** Payment denom of the bid price cap: uakt, or "usdc" for the network's USDC IBC denom. */
    denom: z.string().min(1).default('uakt'),
    /** USD per AKT, for pricing in uakt (cost accounting and the bid cap). */
    akt_usd: z.number().positive().optional(),
    /** Average block time, to turn per-block lease prices into USD per hour. */
    block_seconds: z.number().positive().default(6.117),
    /** No bid under the cap within this long → NO_CAPACITY (the deployment is closed). */
    bid_timeout_seconds: z.number().positive().default(300),
    bid_poll_seconds: z.number().positive().default(5),
    /** Placement name, service name and the attributes providers must have (e.g. {"region": "us-west"}). */
    placement: z.string().regex(/^[a-z][a-z0-9-]*$/).default('dcloud'),
    service: z.string().regex(/^[a-z][a-z0-9-]*$/).default('trainer'),
    attributes: z.record(z.string().min(1), z.string().min(1)).default({}),
    /** Only bids from these provider addresses are taken (empty: any). */
    providers: z.array(z.string().startsWith('akash1')).default([]),
    console: akashConsoleSchema.optional(),
    chain: akashChainSchema.optional(),
  })
  .superRefine((c, ctx) => {
    if (c.mode === 'console' && !c.console) ctx.addIssue({ code: 'custom', message: 'mode "console" needs a console section', path: ['console'] });
    if (c.mode === 'chain' && !c.chain) ctx.addIssue({ code: 'custom', message: 'mode "chain" needs a chain section', path: ['chain'] });
    if (c.denom === 'uakt' && c.akt_usd === undefined) {
      ctx.addIssue({ code: 'custom', message: 'pricing in uakt needs akt_usd (USD per AKT) for the price cap and cost', path: ['akt_usd'] });
    }
  });
export type AkashBackendConfig = z.infer<typeof akashBackendSchema>;

const primeIntellectBackendSchema = z
  .strictObject({
    kind: z.literal('prime-intellect'),
    ...remoteCommon,
    api_url: z.url({ protocol: /^https?$/ }).default('https://api.primeintellect.ai'),
    api_key: z.string().min(1).optional(),
    api_key_file: z.string().min(1).optional(),
    /** The spec's gpu_type → Prime Intellect's gpuType (built-in table for the common ones). */
    gpu_types: z.record(z.string().min(1), z.string().min(1)).default({}),
    socket: z.string().min(1).optional(),
    security: z.enum(['secure_cloud', 'community_cloud']).optional(),
    /** A pod still provisioning after this long is deleted and the attempt fails NO_CAPACITY. */
    start_timeout_seconds: z.number().positive().default(900),
    /**
     * TLS between the orchestrator and the forge agent in the pod, its certificate derived per attempt from the API
     * key and pinned (activities/backends/remote/agent-tls.ts). Needs python3 with ssl (OpenSSL 1.1.1+) in the image.
     */
    agent_tls: z.boolean().default(false),
  })
  .superRefine((c, ctx) => {
    oneSecret(c.api_key, c.api_key_file, 'api_key', ctx);
    for (const [image, t] of Object.entries(c.trainers)) {
      if (!t.template_id) ctx.addIssue({ code: 'custom', message: 'Prime Intellect runs a custom template: set template_id', path: ['trainers', image, 'template_id'] });
    }
  });
export type PrimeIntellectBackendConfig = z.infer<typeof primeIntellectBackendSchema>;

/**
 * The P2PFL experiment (trainer/src/forge_trainer/p2pfl_experiment.py) runs from its own venv (p2pfl pins numpy<2 and
 * click 8.1.8, which the trainer's venv cannot take); the bootstrap installs the trainer package there too.
 */
export function p2pflVenvPython(): string {
  return path.join(repoRoot(), '.tools', 'p2pfl-venv', 'bin', 'python');
}

export function p2pflDefaultCommand(): string[] {
  return [p2pflVenvPython(), '-m', 'forge_trainer.p2pfl_experiment'];
}

const p2pflTrainerSchema = z.strictObject({
  command: z.array(z.string().min(1)).min(1).default(() => p2pflDefaultCommand()),
  env: z.record(z.string(), z.string()).default({}),
});

const p2pflBackendSchema = z.strictObject({
  kind: z.literal('p2pfl'),
  enabled: z.boolean().default(true),
  /** Cost accounting over wall time (the nodes run on the operator's hosts). */
  hourly_usd: z.number().nonnegative().default(0),
  max_concurrent: z.number().int().nonnegative().optional(),
  poll_interval_ms: z.number().int().min(10).max(60_000).default(1000),
  /** Trainer images this backend accepts → how the experiment runs (default: the bundled P2PFL runner). */
  trainers: z.record(z.string().min(1), p2pflTrainerSchema).default(() => ({ [DEFAULT_TRAINER_IMAGE]: { command: p2pflDefaultCommand(), env: {} } })),
  /** Federation: nodes in this process, rounds of gossip + FedAvg, local epochs per round. */
  nodes: z.number().int().min(1).max(64).default(3),
  rounds: z.number().int().min(1).default(2),
  epochs: z.number().int().min(1).default(1),
  /** memory: P2PFL's in-process protocol; grpc: the nodes listen on 127.0.0.1 and also join `peers` on other hosts. */
  protocol: z.enum(['memory', 'grpc']).default('memory'),
  peers: z.array(z.string().regex(/^[^\s:]+:\d+$/, 'must be host:port')).default([]),
  /**
   * The orchestrator API's base URL as the experiment's host reaches it: P2PFL's own web logger then sends the nodes'
   * logs and metrics to its /jobs/<id>/p2pfl endpoints (GET /jobs/<id>/p2pfl). Absent: no web logger.
   */
  web_logger_url: z.url({ protocol: /^https?$/ }).optional(),
});
export type P2pflBackendConfig = z.infer<typeof p2pflBackendSchema>;

const backendSchema = z.discriminatedUnion('kind', [localBackendSchema, akashBackendSchema, primeIntellectBackendSchema, p2pflBackendSchema]);
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
  /** The most `resources.max_hours` a spec may ask for (jobspec/policy.ts); the schema's own bound is one year. */
  max_job_hours: z.number().positive().max(MAX_HOURS_LIMIT).default(720),
  /** did:key identities allowed to submit; absent = any valid signature. */
  allowed_owners: z.array(z.string().startsWith('did:key:')).optional(),
  /** Heartbeat timeout of the activity that follows a deployment: how fast a dead worker is noticed. */
  follow_heartbeat_seconds: z.number().positive().default(30),
  /** How long QUEUED waits between admission checks when no backend has capacity. */
  admission_poll_seconds: z.number().positive().default(15),
  /**
   * A job's run continues as new past this many history events, between two attempts (or earlier, when Temporal
   * suggests it): a job that keeps retrying keeps a short history, quick to replay and to read in the Web UI.
   */
  history_events_per_run: z.number().int().min(100).max(40_000).default(1000),
  /**
   * Outage budget: how long a backend's API may keep failing (network errors, 5xx, 429) before a running attempt fails
   * LOST (retry plan: the next backend). Submissions and closes retry through it too; a close keeps trying for 4× it,
   * then leaves the deployment to the reaper ("close pending"). A backend may set its own backend_outage_seconds.
   */
  backend_outage_seconds: z.number().positive().max(30 * 24 * 3600).default(1800),
  /** Artifacts, evals, the elite registry and notifications of finished jobs (common/results-config.ts). */
  results: resultsConfigSchema.default(defaultResultsConfig),
  /** RL jobs: trainer-host and rollout queues, timeouts, price (common/rl-config.ts). */
  rl: rlConfigSchema.default(defaultRlConfig),
  /**
   * Cost-aware admission (activities/control/admission.ts): `order` "price" tries the cheapest candidate first when the
   * spec's backend.region is "any" ("list": provider, then fallbacks); `budget` "fit" admits a backend only when its
   * hourly price × max_hours fits the job's remaining max_cost_usd, "stop" admits it anyway and relies on the
   * follower stopping the attempt when the budget is spent.
   */
  admission: z
    .strictObject({
      order: z.enum(['price', 'list']).default('price'),
      budget: z.enum(['fit', 'stop']).default('fit'),
      /** A candidate whose quote takes longer is skipped for this round. */
      quote_timeout_ms: z.number().int().positive().default(15_000),
      /** How often a backend's admission entity (max_concurrent) frees the slots of jobs that no longer run. */
      reclaim_seconds: z.number().positive().default(60),
    })
    .default({ order: 'price', budget: 'fit', quote_timeout_ms: 15_000, reclaim_seconds: 60 }),
  /**
   * Names of the worker's environment variables that trainers (and the eval suite's model server) also get, e.g.
   * HF_HOME or CUDA_VISIBLE_DEVICES. Nothing else of the worker's environment reaches them (common/trainer-env.ts).
   */
  trainer_env_passthrough: z.array(envNameSchema).default([]),
  /**
   * The reaper (workflows/reaper.ts): the Temporal Schedule `forge-reaper` runs it every `interval_seconds` and it
   * closes open deployments of this orchestrator whose job no longer runs or is on another attempt; deployments
   * younger than `grace_seconds` are never closed (a submit not yet recorded). `enabled: false` pauses the schedule.
   * `earlier_tags`: the installation tags of this installation's earlier orchestrator keys (after a key rotation), whose
   * deployments it still reaps as its own; `cf-keygen --orchestrator` prints a key's tag.
   */
  reaper: z
    .strictObject({
      enabled: z.boolean().default(true),
      interval_seconds: z.number().int().min(10).max(86_400).default(300),
      grace_seconds: z.number().int().nonnegative().max(86_400).default(120),
      earlier_tags: z
        .array(z.string().regex(INSTALLATION_TAG, 'an installation tag is 8 lowercase hex digits (cf-keygen --orchestrator prints it)'))
        .max(32)
        .default([]),
    })
    .default({ enabled: true, interval_seconds: 300, grace_seconds: 120, earlier_tags: [] }),
});
export type ForgeConfig = z.infer<typeof forgeConfigSchema>;

/** A backend's outage budget in seconds: its own backend_outage_seconds, else the top-level one. */
export function outageSeconds(config: ForgeConfig, backend: string): number {
  const b = config.backends[backend];
  return (b && 'backend_outage_seconds' in b ? b.backend_outage_seconds : undefined) ?? config.backend_outage_seconds;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * The reference trainer (trainer/), installed by the bootstrap into .tools/venv; and, when the bootstrap installed
 * P2PFL (.tools/p2pfl-venv), a `p2pfl` backend (federated finetunes: `backend.provider: "p2pfl"` in a spec).
 */
export function defaultConfig(hasP2pfl: boolean = existsSync(p2pflVenvPython())): ForgeConfig {
  const trainer = path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer');
  return forgeConfigSchema.parse({
    backends: {
      local: {
        kind: 'local',
        trainers: { [DEFAULT_TRAINER_IMAGE]: { command: [trainer, 'run'] } },
      },
      ...(hasP2pfl && { p2pfl: { kind: 'p2pfl', nodes: 2, rounds: 2 } }),
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
