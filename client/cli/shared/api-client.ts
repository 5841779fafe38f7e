/** The HTTP client of the orchestrator API: problem+json answers become a message and an exit code. */
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { signedRequestHeaders, type RequestSigner } from '../request-signing';
import { CliError, EXIT, type ExitCode } from './exit';
import { defaultKeyFile, readKeyFile } from './key-file';

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

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    /** The owner key every request is signed with (none: unsigned, for an API without owners auth). */
    private readonly signer?: RequestSigner,
  ) {}

  /** --key, else the default owner key when it exists, signs the requests. */
  static fromEnv(apiFlag: string | undefined, keyFlag?: string): ApiClient {
    const env = cliEnv();
    const raw = apiFlag ?? env.FORGE_API_URL ?? `http://127.0.0.1:${env.FORGE_API_PORT}`;
    const url = z.url({ protocol: /^https?$/ }).safeParse(raw);
    if (!url.success) throw new CliError(EXIT.USAGE, `--api: not an http(s) URL: ${raw}`);
    const keyFile = keyFlag ?? (existsSync(defaultKeyFile()) ? defaultKeyFile() : undefined);
    return new ApiClient(url.data.replace(/\/+$/, ''), env.FORGE_API_TOKEN, keyFile === undefined ? undefined : readKeyFile(keyFile));
  }

  async fetch(method: string, pathname: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    if (text !== undefined) headers['content-type'] = 'application/json';
    const url = `${this.baseUrl}${pathname}`;
    if (this.signer) Object.assign(headers, signedRequestHeaders(this.signer, { method, url, ...(text !== undefined ? { body: text } : {}) }));
    try {
      return await fetch(url, { method, headers, ...(text !== undefined ? { body: text } : {}) });
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
