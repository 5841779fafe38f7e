/**
 * Everything the cf-* commands share: argument parsing (node:util parseArgs) with --help/--json, exit codes, the
 * HTTP client of the orchestrator API (problem+json → a message and an exit code), key files, status rendering and
 * --watch. Each command file only declares its options and does its one job.
 */
import { createHash } from 'node:crypto';
import { chmodSync, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { parseArgs } from 'node:util';
import { base64urlnopad } from '@scure/base';
import { z } from 'zod';
import { forgeHome } from '../../common/paths';
import { didKeyFromPublicKey } from '../../spec/did-key';
import { publicKeyFromSecretKey, type KeyPair } from '../../spec/signing';
import { isTerminal, type JobState } from '../../workflows/lifecycle/states';
import { jobStatusSchema } from '../api/schemas';

// ---- exit codes -------------------------------------------------------------------------------------------------

export const EXIT = {
  OK: 0,
  /** --watch: the job ended, but not COMPLETED. */
  JOB_NOT_COMPLETED: 1,
  USAGE: 2,
  /** The API could not be reached, or failed (5xx). */
  UNAVAILABLE: 3,
  NOT_FOUND: 4,
  /** The API refused the request: invalid spec, bad signature, owner not allowed, missing token. */
  REFUSED: 5,
  /** job_id used by a different spec; job already finished. */
  CONFLICT: 6,
  /** cf-fetch-artifacts: a hash, a size or the manifest's signature does not verify. */
  VERIFY_FAILED: 7,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

const EXIT_HELP: Record<ExitCode, string> = {
  0: 'success',
  1: 'the watched job ended other than COMPLETED',
  2: 'usage error (arguments, unreadable or invalid input files)',
  3: 'the API is unreachable or failed',
  4: 'not found',
  5: 'refused by the API (invalid spec, signature, owner, token)',
  6: 'conflict (job id taken by another spec, job already finished)',
  7: 'verification failed (hash, size or manifest signature)',
};

export class CliError extends Error {
  override name = 'CliError';
  constructor(
    readonly code: ExitCode,
    message: string,
  ) {
    super(message);
  }
}

// ---- commands ---------------------------------------------------------------------------------------------------

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder for a string option's value in --help, e.g. FILE. */
  value?: string;
  description: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** Positional part of the usage line, e.g. `<spec.json>`. */
  args: string;
  positionals: { min: number; max: number };
  options: Record<string, OptionSpec>;
  /** Whether the command talks to the API (adds --api). */
  usesApi: boolean;
  exitCodes: readonly ExitCode[];
  details?: string;
}

export type OptionValues = Record<string, string | boolean | undefined>;

export interface CliContext {
  values: OptionValues;
  positionals: string[];
  json: boolean;
  out: Output;
  api(): ApiClient;
}

const COMMON_OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean', description: 'machine-readable JSON on stdout (one object, or one per line with --watch)' },
  help: { type: 'boolean', short: 'h', description: 'this help' },
};
const API_OPTION: Record<string, OptionSpec> = {
  api: { type: 'string', value: 'URL', description: 'orchestrator API (default $FORGE_API_URL, else http://127.0.0.1:$FORGE_API_PORT, port 8080)' },
};

function allOptions(spec: CommandSpec): Record<string, OptionSpec> {
  return { ...spec.options, ...(spec.usesApi ? API_OPTION : {}), ...COMMON_OPTIONS };
}

export function helpText(spec: CommandSpec): string {
  const options = Object.entries(allOptions(spec)).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    return `  ${flag.padEnd(30)} ${o.description}`;
  });
  const codes = spec.exitCodes.map((c) => `  ${c}  ${EXIT_HELP[c]}`);
  const env = spec.usesApi ? '\nEnvironment: FORGE_API_URL, FORGE_API_PORT, FORGE_API_TOKEN (sent as a bearer token).\n' : '';
  return `${spec.name} — ${spec.summary}\n\nUsage: ${spec.name} ${spec.args}\n\nOptions:\n${options.join('\n')}\n${spec.details ? `\n${spec.details}\n` : ''}${env}\nExit codes:\n${codes.join('\n')}\n`;
}

const apiEnvSchema = z.object({
  FORGE_API_URL: z.url({ protocol: /^https?$/ }).optional(),
  FORGE_API_PORT: z.coerce.number().int().min(1).max(65535).default(8080),
  FORGE_API_TOKEN: z.string().min(1).optional(),
  /** How often --watch polls the job (tests poll faster). */
  FORGE_CLI_POLL_MS: z.coerce.number().int().min(50).max(60_000).default(1000),
});

export function cliEnv(env: NodeJS.ProcessEnv = process.env): z.output<typeof apiEnvSchema> {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = apiEnvSchema.safeParse(present);
  if (!parsed.success) {
    throw new CliError(EXIT.USAGE, `invalid environment: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** Parses argv, handles --help, runs the command and exits with its code; errors become a message and a code. */
export async function runCli(spec: CommandSpec, handler: (ctx: CliContext) => Promise<ExitCode>, argv = process.argv.slice(2)): Promise<never> {
  const out = new Output(argv.includes('--json'));
  let code: ExitCode;
  try {
    const options = Object.fromEntries(
      Object.entries(allOptions(spec)).map(([name, o]) => [name, { type: o.type, ...(o.short ? { short: o.short } : {}) }]),
    );
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    } catch (err) {
      throw new CliError(EXIT.USAGE, `${(err as Error).message}\nRun ${spec.name} --help for usage.`);
    }
    const { values, positionals } = parsed;
    if (values.help) {
      process.stdout.write(helpText(spec));
      process.exit(EXIT.OK);
    }
    if (positionals.length < spec.positionals.min || positionals.length > spec.positionals.max) {
      throw new CliError(EXIT.USAGE, `usage: ${spec.name} ${spec.args}\nRun ${spec.name} --help for more.`);
    }
    let client: ApiClient | undefined;
    code = await handler({
      values,
      positionals,
      json: values.json === true,
      out,
      api: () => (client ??= ApiClient.fromEnv(typeof values.api === 'string' ? values.api : undefined)),
    });
  } catch (err) {
    if (err instanceof CliError) {
      out.error(err.message);
      code = err.code;
    } else {
      out.error(`unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      code = EXIT.UNAVAILABLE;
    }
  }
  // Let stdout drain before exiting (large --json output to a pipe).
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(code);
}

// ---- output -----------------------------------------------------------------------------------------------------

/** Human text to a terminal, or JSON; errors and progress chatter go to stderr so stdout stays parseable. */
export class Output {
  readonly tty = process.stdout.isTTY === true;
  private openLine = false;
  constructor(readonly json: boolean) {}

  /** One JSON document (or NDJSON line). */
  data(value: unknown): void {
    process.stdout.write(`${JSON.stringify(value)}\n`);
  }

  line(text = ''): void {
    this.endTransient();
    process.stdout.write(`${text}\n`);
  }

  /** A line a terminal may overwrite (the progress bar); a plain line elsewhere. */
  transient(text: string): void {
    if (!this.tty) return this.line(text);
    process.stdout.write(`\r\u001b[2K${text}`);
    this.openLine = true;
  }

  error(message: string): void {
    this.endTransient();
    process.stderr.write(`${message.startsWith('error') ? '' : 'error: '}${message}\n`);
  }

  note(message: string): void {
    this.endTransient();
    process.stderr.write(`${message}\n`);
  }

  private endTransient(): void {
    if (this.openLine) process.stdout.write('\n');
    this.openLine = false;
  }
}

// ---- API client -------------------------------------------------------------------------------------------------

const problemSchema = z.looseObject({
  type: z.string().optional(),
  title: z.string().optional(),
  status: z.number().optional(),
  detail: z.string().optional(),
  errors: z.array(z.looseObject({ path: z.string(), detail: z.string() })).optional(),
});

export interface ApiResponse {
  status: number;
  body: unknown;
  headers: Headers;
}

export function exitCodeFor(status: number): ExitCode {
  if (status === 404) return EXIT.NOT_FOUND;
  if (status === 409) return EXIT.CONFLICT;
  if (status >= 400 && status < 500) return EXIT.REFUSED;
  return EXIT.UNAVAILABLE;
}

/** A problem+json answer as a readable message: title, detail, then one line per field. */
export function formatProblem(status: number, body: unknown): string {
  const p = problemSchema.safeParse(body);
  if (!p.success) return `the API answered ${status}`;
  const head = [p.data.title, p.data.detail].filter(Boolean).join(': ') || `the API answered ${status}`;
  const fields = (p.data.errors ?? []).map((e) => `  ${e.path}: ${e.detail}`);
  return [`${head} (HTTP ${status})`, ...fields].join('\n');
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  static fromEnv(apiFlag: string | undefined): ApiClient {
    const env = cliEnv();
    const raw = apiFlag ?? env.FORGE_API_URL ?? `http://127.0.0.1:${env.FORGE_API_PORT}`;
    const url = z.url({ protocol: /^https?$/ }).safeParse(raw);
    if (!url.success) throw new CliError(EXIT.USAGE, `--api: not an http(s) URL: ${raw}`);
    return new ApiClient(url.data.replace(/\/+$/, ''), env.FORGE_API_TOKEN);
  }

  async fetch(method: string, pathname: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      return await fetch(`${this.baseUrl}${pathname}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
      throw new CliError(EXIT.UNAVAILABLE, `cannot reach the orchestrator API at ${this.baseUrl}${cause} (is \`npm start\` running? set --api or FORGE_API_URL)`);
    }
  }

  async request(method: string, pathname: string, body?: unknown): Promise<ApiResponse> {
    const res = await this.fetch(method, pathname, body);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text for the message
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  /** The response when its status is one of `ok`; otherwise a CliError carrying the problem and its exit code. */
  async expect(method: string, pathname: string, ok: readonly number[], body?: unknown): Promise<ApiResponse> {
    const res = await this.request(method, pathname, body);
    if (!ok.includes(res.status)) throw new CliError(exitCodeFor(res.status), formatProblem(res.status, res.body));
    return res;
  }
}

/** An API answer checked against the API's own schema (a mismatch means another API version). */
export function parseAnswer<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new CliError(EXIT.UNAVAILABLE, `unexpected ${what} from the API: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? ''}`);
  return r.data;
}

export const JOB_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function jobIdArg(value: string | undefined, what = 'job id'): string {
  if (!value || !JOB_ID_PATTERN.test(value)) throw new CliError(EXIT.USAGE, `${what} must be a lower-case UUID, got ${JSON.stringify(value ?? '')}`);
  return value;
}

// ---- key files --------------------------------------------------------------------------------------------------

/** `{did, secret_key}` with the 32-byte Ed25519 secret in base64url; mode 0600 in a 0700 folder. */
const keyFileSchema = z.object({
  did: z.string().startsWith('did:key:'),
  secret_key: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a base64url Ed25519 secret key (32 bytes)'),
});

export function defaultKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(forgeHome(env), 'keys', 'owner.json');
}

export function writeKeyFile(file: string, keys: KeyPair, overwrite: boolean): void {
  if (existsSync(file) && !overwrite) throw new CliError(EXIT.USAGE, `${file} exists; pass --force to replace it (the old key is lost)`);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const body = `${JSON.stringify({ did: keys.did, secret_key: base64urlnopad.encode(keys.secretKey) }, null, 2)}\n`;
  // Write then rename, so a reader never sees half a key; mode 0600 whatever the umask.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, body, { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

export function readKeyFile(file: string): KeyPair {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(EXIT.USAGE, `cannot read key file ${file}: ${(err as Error).message} (make one with cf-keygen)`);
  }
  if ((statSync(file).mode & 0o077) !== 0) {
    throw new CliError(EXIT.USAGE, `key file ${file} is readable by others; run: chmod 600 ${file}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CliError(EXIT.USAGE, `key file ${file} is not JSON`);
  }
  const parsed = keyFileSchema.safeParse(json);
  if (!parsed.success) throw new CliError(EXIT.USAGE, `key file ${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const secretKey = base64urlnopad.decode(parsed.data.secret_key);
  const publicKey = publicKeyFromSecretKey(secretKey);
  const did = didKeyFromPublicKey(publicKey);
  if (did !== parsed.data.did) throw new CliError(EXIT.USAGE, `key file ${file}: its did does not match its secret key`);
  return { secretKey, publicKey, did };
}


// ---- job status -------------------------------------------------------------------------------------------------

export type ApiJobStatus = z.output<typeof jobStatusSchema>;

export async function fetchStatus(api: ApiClient, jobId: string): Promise<ApiJobStatus> {
  const res = await api.expect('GET', `/jobs/${jobId}`, [200]);
  return parseAnswer(jobStatusSchema, res.body, 'job status');
}

function time(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(11, 19);
}

export function formatTransition(t: ApiJobStatus['transitions'][number]): string {
  return `${time(t.at)}  ${t.state.padEnd(10)}  ${t.reason}`;
}

type Progress = NonNullable<ApiJobStatus['deployments'][number]['progress']>;

export function progressBar(p: Progress, width = 24): string {
  const loss = p.loss === undefined ? '' : `  loss ${p.loss.toFixed(4)}`;
  if (!p.maxSteps) return `step ${p.step}${loss}`;
  const fraction = Math.min(1, Math.max(0, p.step / p.maxSteps));
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.step}/${p.maxSteps} steps ${String(Math.round(fraction * 100)).padStart(3)}%${loss}`;
}

/** The latest attempt's training progress, if the trainer reported any. */
export function currentProgress(s: ApiJobStatus): Progress | null {
  return s.deployments.at(-1)?.progress ?? null;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => `  ${r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}`.trimEnd());
}

/** The readable form of cf-check-training. */
export function statusTable(s: ApiJobStatus): string {
  const progress = currentProgress(s);
  const head = [
    ['job', s.job_id],
    ['type', s.job_type ?? '-'],
    ['owner', s.owner_did ?? '-'],
    ['state', `${s.state}${s.attempt ? ` (attempt ${s.attempt}${s.backend ? ` on ${s.backend}` : ''})` : ''}`],
    ['cost', `$${s.cost_usd.toFixed(4)}`],
    ...(progress ? [['progress', progressBar(progress)]] : []),
    ...(s.last_error ? [['last error', `${s.last_error.class}: ${s.last_error.detail}`]] : []),
  ];
  const lines = head.map(([k, v]) => `${k!.padEnd(11)} ${v}`);
  lines.push('', 'transitions');
  lines.push(...table([['TIME', 'STATE', 'ATTEMPT', 'BACKEND', 'REASON'], ...s.transitions.map((t) => [time(t.at), t.state, String(t.attempt), t.backend ?? '-', t.reason])]));
  if (s.artifacts) {
    const a = s.artifacts;
    lines.push('', 'artifacts', `  ${a.repo} ${a.branch} @ ${a.commit}`, `  ${a.path}/: ${a.files.length} files, manifest sha256 ${a.manifest_sha256.slice(0, 16)}…, signed by ${a.signer_did}`);
  }
  if (s.evals?.length) {
    lines.push('', 'evals');
    lines.push(
      ...table([
        ['TASK TYPE', 'PASSED', 'SUCCESS', 'ELITE'],
        ...s.evals.map((e) => [e.task_type, `${e.successes}/${e.tasks}`, `${(e.success_rate * 100).toFixed(1)}%`, e.promotion ?? '-']),
      ]),
    );
  }
  if (s.deployments.length) {
    lines.push('', 'deployments');
    lines.push(
      ...table([
        ['ATTEMPT', 'BACKEND', 'ID', 'STATE', 'COST', 'EXIT', 'CLOSED'],
        ...s.deployments.map((d) => [String(d.attempt), d.backend, d.id, d.state, `$${d.cost_usd.toFixed(4)}`, d.exit_code === null ? '-' : String(d.exit_code), d.closed ? 'yes' : 'no']),
      ]),
    );
  }
  return lines.join('\n');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** While watching, the API may restart (npm start restarts it): keep trying this long before giving up. */
const WATCH_OUTAGE_MS = 60_000;

/**
 * Follows a job until it is terminal: each new transition, the progress bar of the current attempt (steps and
 * loss), then the final state. Returns the final status.
 */
export async function watchJob(api: ApiClient, jobId: string, out: Output): Promise<ApiJobStatus> {
  const pollMs = cliEnv().FORGE_CLI_POLL_MS;
  let seen = 0;
  let lastProgress = '';
  let failingSince: number | undefined;
  for (;;) {
    let s: ApiJobStatus;
    try {
      s = await fetchStatus(api, jobId);
      failingSince = undefined;
    } catch (err) {
      if (!(err instanceof CliError) || err.code !== EXIT.UNAVAILABLE) throw err;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > WATCH_OUTAGE_MS) throw err;
      out.note(`(still trying: ${err.message.split('\n')[0]})`);
      await sleep(Math.max(pollMs, 1000));
      continue;
    }
    for (const t of s.transitions.slice(seen)) {
      if (out.json) out.data({ event: 'transition', job_id: jobId, ...t });
      else out.line(formatTransition(t));
    }
    seen = s.transitions.length;
    const p = currentProgress(s);
    const key = p ? JSON.stringify([s.attempt, p]) : '';
    if (p && key !== lastProgress && !isTerminal(s.state as JobState)) {
      if (out.json) out.data({ event: 'progress', job_id: jobId, attempt: s.attempt, step: p.step, max_steps: p.maxSteps ?? null, loss: p.loss ?? null });
      else out.transient(`          ${progressBar(p)}`);
    }
    lastProgress = key;
    if (isTerminal(s.state as JobState)) {
      if (out.json) out.data({ event: 'final', job_id: jobId, state: s.state, status: s });
      else {
        const elapsed = s.transitions.length ? (Date.parse(s.transitions.at(-1)!.at) - Date.parse(s.transitions[0]!.at)) / 1000 : 0;
        const final = p ? `; ${progressBar(p)}` : '';
        out.line(`job ${jobId} ${s.state} after ${elapsed.toFixed(0)} s, cost $${s.cost_usd.toFixed(4)}${final}`);
        if (s.last_error && s.state !== 'COMPLETED') out.line(`last error: ${s.last_error.class}: ${s.last_error.detail}`);
      }
      return s;
    }
    await sleep(pollMs);
  }
}

// ---- downloads --------------------------------------------------------------------------------------------------

/**
 * Streams a response body into `file` through sha256, writing to a temporary name first; returns size and hash.
 * Nothing is left at `file` unless the caller renames the temporary file after checking them.
 */
export async function downloadTo(res: Response, tmpFile: string): Promise<{ size: number; sha256: string }> {
  if (!res.body) throw new CliError(EXIT.UNAVAILABLE, 'the API sent no body');
  mkdirSync(path.dirname(tmpFile), { recursive: true });
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), meter, createWriteStream(tmpFile, { mode: 0o644 }));
  } catch (err) {
    rmSync(tmpFile, { force: true });
    throw new CliError(EXIT.UNAVAILABLE, `download interrupted: ${(err as Error).message}`);
  }
  return { size, sha256: hash.digest('hex') };
}
