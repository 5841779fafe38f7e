/**
 * The one HTTP client of the remote backends (Akash Console and providers, Prime Intellect, the forge
 * agent in a container): JSON in and out, every answer checked with zod, bounded retries (429 honours Retry-After),
 * timeouts on everything, optional mutual TLS with certificate pinning, and no credential ever in a message. Streamed
 * downloads are in remote-download.ts, WebSocket reads in remote-ws.ts.
 *
 * Errors: an HTTP status the caller did not accept is an HttpStatusError (with `status`); `backendErrorFor` turns
 * the ones that say something about the job or the account into a BackendError (REJECTED, NO_CAPACITY). Network
 * trouble and 5xx stay plain errors: the activity's retry policy tries again.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { z } from 'zod';
import { BackendError } from '../types';

export interface TlsOptions {
  /** Client certificate and key (PEM) for mutual TLS. */
  cert?: string;
  key?: string;
  ca?: string;
  /** Default true; Akash providers serve self-signed certificates, checked by `pinned` instead. */
  rejectUnauthorized?: boolean;
  /** The server's certificate must be one of these (PEM); checked before the request body is sent. */
  pinned?: readonly string[];
}

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
  url: string;
  headers?: Record<string, string>;
  /** Sent as JSON. */
  json?: unknown;
  timeoutMs: number;
  tls?: TlsOptions;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

export interface DownloadResult {
  status: number;
  size: number;
  sha256: string;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;
const SNIPPET_CHARS = 300;

export class HttpStatusError extends Error {
  override name = 'HttpStatusError';
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export class UnexpectedResponseError extends Error {
  override name = 'UnexpectedResponseError';
}

/** Node's network error codes worth another try. ECONNREFUSED means the request never arrived. */
/** ECONNRESET on a reused keep-alive socket before any answer: the request was not read (see httpRequest). */
const STALE_SOCKET = 'ESTALESOCKET';
const RETRYABLE_NETWORK = new Set([STALE_SOCKET, 'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'TIMEOUT']);

export class NetworkError extends Error {
  override name = 'NetworkError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function pemToDer(pem: string): string {
  return pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
}

export function pinProblem(cert: PeerCertificate | undefined, pinned: readonly string[]): string | undefined {
  if (!cert?.raw) return 'the server presented no certificate';
  const served = cert.raw.toString('base64');
  return pinned.some((p) => pemToDer(p) === served) ? undefined : 'the server certificate is not the one published for it';
}

/** One request, no retry; any status comes back. Times out as a NetworkError with code TIMEOUT. */
export function httpRequest(req: HttpRequest): Promise<HttpResponse> {
  const url = new URL(req.url);
  const isHttps = url.protocol === 'https:';
  const body = req.json === undefined ? undefined : Buffer.from(JSON.stringify(req.json));
  const headers: Record<string, string> = { accept: 'application/json', ...req.headers };
  if (body) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(body.length);
  }
  const tls = req.tls;
  const options: https.RequestOptions = { method: req.method, headers, ...tlsRequestOptions(isHttps, tls) };
  const where = `${req.method} ${url.origin}${url.pathname}`;
  return new Promise((resolve, reject) => {
    const client = (isHttps ? https : http).request(url, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) {
          client.destroy(new NetworkError('EMSGSIZE', `${where}: answer larger than ${MAX_BODY_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    client.setTimeout(req.timeoutMs, () => client.destroy(new NetworkError('TIMEOUT', `${where}: no answer within ${req.timeoutMs} ms`)));
    client.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof NetworkError) reject(err);
      // A kept-alive socket that the server closed as idle just as this request went out: the server never read the
      // request, so even a POST may be sent again (STALE_SOCKET is retried whatever the method).
      else if (client.reusedSocket && err.code === 'ECONNRESET') reject(new NetworkError(STALE_SOCKET, `${where}: ${err.message} (kept-alive connection closed by the server)`));
      else reject(new NetworkError(err.code ?? 'ERROR', `${where}: ${err.message}`));
    });
    afterPinCheck(client, isHttps ? tls : undefined, where, () => client.end(body));
  });
}

/** https options of a request under `tls` (none for plain http). */
export function tlsRequestOptions(isHttps: boolean, tls: TlsOptions | undefined): https.RequestOptions {
  return isHttps && tls ? { cert: tls.cert, key: tls.key, ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized ?? true, agent: false } : {};
}

/** Runs `send` once the server's certificate is checked against `tls.pinned` (at once when nothing is pinned). */
export function afterPinCheck(client: http.ClientRequest, tls: TlsOptions | undefined, where: string, send: () => void): void {
  const pinned = tls?.pinned;
  if (!pinned) {
    send();
    return;
  }
  client.on('socket', (socket) => {
    const check = (): void => {
      const problem = pinProblem((socket as TLSSocket).getPeerCertificate(true), pinned);
      if (problem) client.destroy(new NetworkError('ECERTPIN', `${where}: ${problem}`));
      else send();
    };
    if ((socket as TLSSocket).getPeerCertificate?.()?.raw) check();
    else socket.once('secureConnect', check);
  });
}

export function retryAfterMs(headers: IncomingHttpHeaders, now = Date.now()): number | undefined {
  const value = headers['retry-after'];
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Replaces every secret (and its URL-encoded form) by [redacted]. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (s.length < 4) continue;
    out = out.split(s).join('[redacted]').split(encodeURIComponent(s)).join('[redacted]');
  }
  return out;
}

export interface RetryPolicy {
  attempts: number;
  /** First back-off; doubles each time. */
  baseDelayMs: number;
  /** A Retry-After longer than this is not waited for: the call fails (retryably) instead. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 250, maxRetryAfterMs: 30_000 };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface ApiClientOptions {
  /** For messages: "Akash Console", "Prime Intellect", ... */
  service: string;
  baseUrl: string;
  timeoutMs: number;
  /** Headers of every request (credentials); read on each request so a rotated key file is picked up. */
  headers?: () => Promise<Record<string, string>> | Record<string, string>;
  tls?: TlsOptions;
  retry?: Partial<RetryPolicy>;
  /** Strings that must never appear in a message. */
  secrets?: () => readonly string[];
}

export interface CallOptions {
  json?: unknown;
  /** Statuses that count as success (default 2xx). Others throw HttpStatusError. */
  ok?: readonly number[];
  query?: Record<string, string | number | readonly (string | number)[] | undefined>;
}

/** A JSON API under one base URL. */
export class ApiClient {
  private readonly retry: RetryPolicy;
  constructor(private readonly o: ApiClientOptions) {
    this.retry = { ...DEFAULT_RETRY, ...o.retry };
  }

  get service(): string {
    return this.o.service;
  }

  url(pathname: string, query?: CallOptions['query']): string {
    const url = new URL(pathname.replace(/^\/+/, ''), this.o.baseUrl.endsWith('/') ? this.o.baseUrl : `${this.o.baseUrl}/`);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      for (const item of Array.isArray(v) ? v : [v]) url.searchParams.append(k, String(item));
    }
    return url.toString();
  }

  /** A request whose answer is parsed as JSON and checked against `schema`. */
  async json<S extends z.ZodType>(method: HttpRequest['method'], pathname: string, schema: S, options: CallOptions = {}): Promise<z.output<S>> {
    const res = await this.send(method, pathname, options);
    return this.parse(schema, res, `${method} ${pathname}`);
  }

  parse<S extends z.ZodType>(schema: S, res: HttpResponse, what: string): z.output<S> {
    let value: unknown;
    try {
      value = res.text === '' ? null : JSON.parse(res.text);
    } catch {
      throw new UnexpectedResponseError(this.clean(`${this.o.service} ${what}: answer is not JSON: ${res.text.slice(0, SNIPPET_CHARS)}`));
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new UnexpectedResponseError(this.clean(`${this.o.service} ${what}: unexpected answer (${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'})`));
    }
    return parsed.data;
  }

  /** The raw response of a successful call, retried per the policy. */
  async send(method: HttpRequest['method'], pathname: string, options: CallOptions = {}): Promise<HttpResponse> {
    const idempotent = method !== 'POST' && method !== 'PATCH';
    const url = this.url(pathname, options.query);
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= this.retry.attempts;
      let res: HttpResponse;
      try {
        res = await httpRequest({
          method,
          url,
          headers: (await this.o.headers?.()) ?? {},
          json: options.json,
          timeoutMs: this.o.timeoutMs,
          ...(this.o.tls ? { tls: this.o.tls } : {}),
        });
      } catch (err) {
        const code = err instanceof NetworkError ? err.code : '';
        const retryable = RETRYABLE_NETWORK.has(code) && (idempotent || code === 'ECONNREFUSED' || code === STALE_SOCKET);
        if (!retryable || last) throw new NetworkError(code, this.clean(`${this.o.service}: ${(err as Error).message}`));
        await sleep(this.backoff(attempt));
        continue;
      }
      const ok = options.ok ? options.ok.includes(res.status) : res.status >= 200 && res.status < 300;
      if (ok) return res;
      const after = retryAfterMs(res.headers);
      const retryable = res.status === 429 || (idempotent && (res.status === 502 || res.status === 503 || res.status === 504));
      if (retryable && !last && (after === undefined || after <= this.retry.maxRetryAfterMs)) {
        await sleep(after ?? this.backoff(attempt));
        continue;
      }
      throw new HttpStatusError(res.status, this.clean(`${this.o.service} ${method} ${new URL(url).pathname}: HTTP ${res.status}${describeBody(res.text)}`), after);
    }
  }

  private backoff(attempt: number): number {
    return this.retry.baseDelayMs * 2 ** (attempt - 1);
  }

  clean(text: string): string {
    return redact(text, this.o.secrets?.() ?? []);
  }
}

function describeBody(text: string): string {
  const t = text.trim();
  if (!t) return '';
  try {
    const v = JSON.parse(t) as unknown;
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      const msg = o.detail ?? o.message ?? o.error ?? o.title;
      if (typeof msg === 'string') return `: ${msg.slice(0, SNIPPET_CHARS)}`;
    }
  } catch {
    // not JSON
  }
  return `: ${t.slice(0, SNIPPET_CHARS)}`;
}

/**
 * What a failed call says about the job or the account: refused credentials or a request the API will never take
 * → REJECTED; no funds → NO_CAPACITY (another backend may run it). Anything else comes back unchanged (retried).
 */
export function backendErrorFor(err: unknown, context: string): unknown {
  if (!(err instanceof HttpStatusError)) return err;
  if (err.status === 401 || err.status === 403) {
    return new BackendError('REJECTED', `${context}: credentials refused (${err.message}); check the API key in the operator config`);
  }
  if (err.status === 402) return new BackendError('NO_CAPACITY', `${context}: account cannot pay (${err.message})`);
  if (err.status === 400 || err.status === 422) return new BackendError('REJECTED', `${context}: request refused (${err.message})`);
  return err;
}

/** Filesystem errors that say the host is struggling now (not that the request is wrong). */
const TRANSIENT_FS = new Set(['EIO', 'EAGAIN', 'EBUSY', 'ENOSPC', 'EMFILE', 'ENFILE', 'ETXTBSY']);

/**
 * Whether a failed backend call may succeed later: the network (refused, reset, timed out, unresolvable), an HTTP 429
 * or 5xx, a struggling disk. The control activities retry these through the backend's outage budget
 * (backend_outage_seconds); a pinned certificate that does not match or an oversized answer are not transient.
 */
export function isTransientError(err: unknown): boolean {
  if (err instanceof NetworkError) return err.code !== 'ECERTPIN' && err.code !== 'EMSGSIZE';
  if (err instanceof HttpStatusError) return err.status === 429 || err.status >= 500;
  const code = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  return typeof code === 'string' && TRANSIENT_FS.has(code);
}

export function isStatus(err: unknown, ...statuses: number[]): err is HttpStatusError {
  return err instanceof HttpStatusError && statuses.includes(err.status);
}
