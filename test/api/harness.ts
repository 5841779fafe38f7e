/**
 * The API under test: a real Fastify server on a free 127.0.0.1 port, talking to the run's real Temporal dev server,
 * optionally with an in-process orchestrator worker on the test file's own task queue.
 */
import { Writable } from 'node:stream';
import { Client, Connection } from '@temporalio/client';
import type { Backend } from '../../activities/backends/types';
import type { ForgeConfig } from '../../common/config';
import { buildApp } from '../../client/api/app';
import type { ArtifactSource } from '../../client/api/artifacts';
import { GitArtifactSource } from '../../client/api/git-artifacts';
import { modelSigningKeyFrom } from '../../common/model-signing';
import { orchestratorKey } from '../../common/orchestrator-key';
import type { ZodApp } from '../../client/api/context';
import { P2pflWebRecords } from '../../client/api/p2pfl-web';
import { startWorker, temporalAddress, type RunningWorker } from '../helpers/forge';
import { tracingClientInterceptors } from '../../common/tracing';

export interface ApiHarness {
  url: string;
  app: ZodApp;
  client: Client;
  connection: Connection;
  /** JSON log lines the server wrote (only with captureLogs). */
  logLines: string[];
  stop(): Promise<void>;
}

export interface HarnessOptions {
  taskQueue: string;
  config: ForgeConfig;
  home: string;
  /** Run an orchestrator worker on taskQueue (default true). */
  worker?: boolean;
  token?: string;
  /** 'owners': signed requests, owner-scoped reads (client/api/auth.ts). */
  auth?: 'owners' | 'token';
  allowedHosts?: string[];
  artifacts?: ArtifactSource;
  /** The orchestrator did:key served at GET /identity. */
  identity?: () => string;
  /** The model signing public key (PEM) served at GET /identity. */
  modelSigningKey?: () => string;
  backends?: ReadonlyMap<string, Backend>;
  logPollMs?: number;
  queryTimeoutMs?: number;
  healthTimeoutMs?: number;
  captureLogs?: boolean;
  /** Connect the API to this address instead of the run's dev server. */
  temporalAddress?: string;
}

export async function startApi(o: HarnessOptions): Promise<ApiHarness> {
  const worker: RunningWorker | undefined = o.worker === false ? undefined : await startWorker(o.config, o.home, o.taskQueue);
  const connection = o.temporalAddress ? Connection.lazy({ address: o.temporalAddress }) : await Connection.connect({ address: temporalAddress() });
  // Traced like the API's own client when the test file called initTracing (common/tracing.ts).
  const interceptors = tracingClientInterceptors();
  const client = new Client({ connection, ...(interceptors ? { interceptors } : {}) });
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const app = await buildApp({
    client,
    connection,
    namespace: 'default',
    taskQueue: o.taskQueue,
    config: o.config,
    ...(o.backends ? { backends: o.backends } : {}), // default: read entities, answered by the orchestrator worker
    ...(o.artifacts ? { artifacts: o.artifacts } : {}),
    ...(o.identity ? { identity: o.identity } : {}),
    ...(o.modelSigningKey ? { modelSigningKey: o.modelSigningKey } : {}),
    ...(o.token ? { token: o.token } : {}),
    ...(o.auth ? { auth: o.auth } : {}),
    ...(o.allowedHosts ? { allowedHosts: o.allowedHosts } : {}),
    webUiUrl: 'http://127.0.0.1:8233',
    queryTimeoutMs: o.queryTimeoutMs ?? 10_000,
    healthTimeoutMs: o.healthTimeoutMs ?? 2_000,
    logPollMs: o.logPollMs ?? 200,
    p2pflWeb: new P2pflWebRecords(o.home),
    home: o.home,
    // FORGE_TEST_API_LOG_LEVEL=error shows the server's own view of a failing test.
    logger: o.captureLogs ? { level: 'info', stream: sink } : { level: process.env.FORGE_TEST_API_LOG_LEVEL ?? 'silent' },
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    app,
    client,
    connection,
    logLines,
    async stop() {
      await app.close();
      await worker?.stop();
      await connection.close();
    },
  };
}

/**
 * The API as `npm start` serves artifacts: no worker of its own (the test file runs one), the committed files read
 * from their output repos by GitArtifactSource and checked against the orchestrator key of `home`, also served at
 * GET /identity.
 */
export function startGitArtifactsApi(taskQueue: string, config: ForgeConfig, home: string, more: Partial<HarnessOptions> = {}): Promise<ApiHarness> {
  const did = (): string => orchestratorKey(home).did;
  const artifacts = new GitArtifactSource({ home, git: config.results.git, signerDid: did });
  const modelSigningKey = (): string => modelSigningKeyFrom(orchestratorKey(home).secretKey).publicKeyPem;
  return startApi({ taskQueue, config, home, worker: false, artifacts, identity: did, modelSigningKey, ...more });
}

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/** One HTTP request; the body is JSON unless it is already a string. */
export async function http(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: { in: string; path: string; pointer: string; detail: string }[];
}

export function problemOf(r: HttpResult): Problem {
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const p = r.json as Problem;
  expect(p.status).toBe(r.status);
  expect(p.type).toMatch(/^https:\/\/chrysalis-forge\.dev\/problems\//);
  return p;
}

export interface SseEvent {
  event: string;
  data: unknown;
  id?: string;
}

/** Reads server-sent events until the stream ends, `until` says stop, or the signal aborts. */
export async function readSse(
  url: string,
  opts: { headers?: Record<string, string>; until?: (e: SseEvent, all: SseEvent[]) => boolean; signal?: AbortSignal } = {},
): Promise<{ status: number; contentType: string | null; events: SseEvent[] }> {
  const controller = new AbortController();
  opts.signal?.addEventListener('abort', () => controller.abort());
  const res = await fetch(url, { headers: opts.headers ?? {}, signal: controller.signal });
  const events: SseEvent[] = [];
  if (!res.body || !res.headers.get('content-type')?.startsWith('text/event-stream')) {
    await res.text();
    return { status: res.status, contentType: res.headers.get('content-type'), events };
  }
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let sep: number;
      while ((sep = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, sep);
        buffer = buffer.slice(sep + 2);
        const e: Partial<SseEvent> = {};
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) e.event = line.slice(7);
          else if (line.startsWith('data: ')) e.data = JSON.parse(line.slice(6));
          else if (line.startsWith('id: ')) e.id = line.slice(4);
        }
        if (!e.event) continue; // a keepalive comment
        events.push(e as SseEvent);
        if (opts.until?.(e as SseEvent, events)) {
          controller.abort();
          return { status: res.status, contentType: res.headers.get('content-type'), events };
        }
      }
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  return { status: res.status, contentType: res.headers.get('content-type'), events };
}

/** Polls GET /jobs/:id until `predicate` holds. */
export async function waitForJob<T = { state: string }>(base: string, jobId: string, predicate: (s: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await http(base, 'GET', `/jobs/${jobId}`);
    if (r.status === 200 && predicate(r.json as T)) return r.json as T;
    if (Date.now() > deadline) throw new Error(`job ${jobId} never matched; last: ${r.status} ${r.text.slice(0, 300)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}
