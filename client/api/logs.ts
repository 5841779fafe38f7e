/**
 * GET /jobs/:id/logs as server-sent events, read from each deployment's backend adapter (`logs(deployment, cursor)`).
 *
 * Events: `state` (a job transition), `log` ({attempt, backend, stream, line}), `error` ({attempt, backend, detail,
 * retrying}: a backend could not be read) and `end` ({state}) once the job is terminal (or at once without follow).
 * Log events carry an id from which a reconnecting client resumes (Last-Event-ID). A disconnect stops polling, timers
 * and reads at once.
 *
 * While following, a failed read is not the end of that deployment's log: a worker restart or a provider's bad minute
 * must not cut a long follow short. The error is sent once (retrying: true), the read is tried again with backoff, and
 * once the job is terminal a deployment still unreadable gets a few last tries before a final error (retrying: false).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { LogChunk } from '../../activities/backends/types';
import type { ApiBackendReader } from './backend-readers';
import { isTerminal } from '../../workflows/lifecycle/states';
import type { DeploymentRecord, JobStatus, TransitionRecord } from '../../workflows/messages';
import type { JobsService } from './jobs';
import type { ApiMetrics } from './metrics';
import { ProblemError } from './problem';

const KEEPALIVE_MS = 15_000;
/** The longest wait before a failed read is tried again while following. */
const MAX_RETRY_MS = 30_000;
/** Tries, after the job is terminal, for a deployment whose log could not be read. */
const FINAL_TRIES = 3;

export interface LogStreamOptions {
  request: FastifyRequest;
  reply: FastifyReply;
  jobs: JobsService;
  backends: ReadonlyMap<string, ApiBackendReader>;
  metrics: ApiMetrics;
  jobId: string;
  follow: boolean;
  tail: number | undefined;
  pollMs: number;
}

interface Position {
  index: number;
  cursor: string | undefined;
}

/** A deployment whose last read failed: why, how often in a row, and when to try again. */
interface ReadFailure {
  attempt: number;
  backend: string;
  detail: string;
  failures: number;
  retryAt: number;
}

interface LogEvent {
  attempt: number;
  backend: string;
  stream: 'stdout' | 'stderr';
  line: string;
}

/** `<deployment index>.<base64url cursor>`: opaque to clients, parsed leniently (a bad id restarts from the top). */
export function encodePosition(p: Position): string {
  return `${p.index}.${Buffer.from(p.cursor ?? '', 'utf8').toString('base64url')}`;
}

export function decodePosition(id: string | undefined): Position | undefined {
  const m = id ? /^(\d{1,6})\.([A-Za-z0-9_-]{0,4096})$/.exec(id) : null;
  if (!m) return undefined;
  const cursor = Buffer.from(m[2]!, 'base64url').toString('utf8');
  return { index: Number(m[1]), cursor: cursor === '' ? undefined : cursor };
}

function sseEvent(event: string, data: unknown, id?: string): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Fixed-size ring of the last N events, for `tail`. */
class Ring<T> {
  private readonly items: T[] = [];
  private next = 0;
  constructor(private readonly size: number) {}
  push(item: T): void {
    if (this.size === 0) return;
    if (this.items.length < this.size) this.items.push(item);
    else this.items[this.next] = item;
    this.next = (this.next + 1) % this.size;
  }
  toArray(): T[] {
    return this.items.length < this.size ? [...this.items] : [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
  }
}

export async function streamJobLogs(o: LogStreamOptions): Promise<void> {
  // Before hijacking: an unknown job or an unreachable Temporal still answers as problem+json.
  let status = await o.jobs.status(o.jobId);
  const lastEventId = o.request.headers['last-event-id'];
  const resume = decodePosition(Array.isArray(lastEventId) ? lastEventId[0] : lastEventId);

  o.reply.hijack();
  const res = o.reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': o.request.id,
  });

  let closed = false;
  let wake: (() => void) | undefined;
  const onClose = (): void => {
    closed = true;
    wake?.();
  };
  // The response's 'close' is the disconnect signal (a request's 'close' fires once its body is read).
  res.once('close', onClose);

  const write = async (chunk: string): Promise<void> => {
    if (closed) return;
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.once('drain', done);
        res.once('close', done);
      });
    }
  };
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      if (closed) return resolve();
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  const keepalive = setInterval(() => void write(': keepalive\n\n'), KEEPALIVE_MS);
  o.metrics.logStreams.inc();

  // Per deployment index: the cursor after the last line sent. Deployments before a resume point were sent in full.
  const cursors = new Map<number, string | undefined>();
  const done = new Set<number>();
  if (resume) {
    for (let i = 0; i < resume.index; i++) done.add(i);
    cursors.set(resume.index, resume.cursor);
  }
  const ring = !resume && o.tail !== undefined ? new Ring<string>(o.tail) : undefined;
  const emit = async (event: string): Promise<void> => {
    if (ring) ring.push(event);
    else await write(event);
  };

  const failing = new Map<number, ReadFailure>();
  const readError = (f: Pick<ReadFailure, 'attempt' | 'backend' | 'detail'>, retrying: boolean): string =>
    sseEvent('error', { attempt: f.attempt, backend: f.backend, detail: f.detail, retrying });

  /** Reads every deployment from its cursor to the current end of its log; `now` ignores a failed read's backoff. */
  const drain = async (s: JobStatus, now = false): Promise<void> => {
    for (const [index, d] of s.deployments.entries()) {
      if (closed || done.has(index)) continue;
      if (!now && (failing.get(index)?.retryAt ?? 0) > Date.now()) continue;
      const backend = o.backends.get(d.ref.backend);
      if (!backend) {
        await write(readError({ attempt: d.attempt, backend: d.backend, detail: `backend "${d.backend}" is not configured on this API` }, false));
        done.add(index);
        continue;
      }
      await drainDeployment(backend, d, index);
    }
  };
  const drainDeployment = async (backend: ApiBackendReader, d: DeploymentRecord, index: number): Promise<void> => {
    for (;;) {
      if (closed) return;
      let chunk: LogChunk;
      try {
        chunk = await backend.logs(d.ref, cursors.get(index));
      } catch (err) {
        const detail = err instanceof Error ? err.message : String(err);
        if (!o.follow) {
          await write(readError({ attempt: d.attempt, backend: d.backend, detail }, false));
          done.add(index);
          return;
        }
        const before = failing.get(index);
        const failures = (before?.failures ?? 0) + 1;
        const retryAt = Date.now() + Math.min(o.pollMs * 2 ** failures, MAX_RETRY_MS);
        failing.set(index, { attempt: d.attempt, backend: d.backend, detail, failures, retryAt });
        if (!before) await write(readError({ attempt: d.attempt, backend: d.backend, detail }, true));
        return;
      }
      failing.delete(index);
      if (chunk.lines.length === 0) return;
      const id = encodePosition({ index, cursor: chunk.cursor });
      for (const [i, l] of chunk.lines.entries()) {
        const data: LogEvent = { attempt: d.attempt, backend: d.backend, stream: l.stream, line: l.line };
        // Only a chunk's last line carries the id: resuming from it never skips a line.
        await emit(sseEvent('log', data, i === chunk.lines.length - 1 ? id : undefined));
      }
      cursors.set(index, chunk.cursor);
    }
  };
  const transition = (t: TransitionRecord): string => sseEvent('state', { state: t.state, at: t.at, reason: t.reason, attempt: t.attempt, backend: t.backend });

  try {
    let seenTransitions = status.transitions.length;
    if (o.follow) {
      const last = status.transitions.at(-1);
      if (last) await write(transition(last));
    }
    await drain(status);
    if (ring) for (const event of ring.toArray()) await write(event);
    // Following: the status is read before each drain, so when it says terminal the drain that follows has the
    // trainer's last lines.
    while (o.follow && !closed && !isTerminal(status.state)) {
      await sleep(o.pollMs);
      if (closed) break;
      try {
        status = await o.jobs.status(o.jobId);
      } catch (err) {
        // A worker restart or a Temporal hiccup must not end a long follow: say so and poll again.
        if (!(err instanceof ProblemError) || (err.kind !== 'timeout' && err.kind !== 'temporal-unavailable')) throw err;
        await write(`: status unavailable (${err.message}); retrying\n\n`);
        continue;
      }
      for (const t of status.transitions.slice(seenTransitions)) await write(transition(t));
      seenTransitions = status.transitions.length;
      await drain(status);
    }
    // The job is over: a deployment whose log could not be read gets a few last tries, then a final error.
    for (let k = 0; o.follow && !closed && failing.size > 0 && k < FINAL_TRIES; k++) {
      await sleep(o.pollMs * 2 ** k);
      await drain(status, true);
    }
    for (const f of failing.values()) await write(readError({ ...f, detail: `${f.detail} (gave up after ${f.failures} tries)` }, false));
    await write(sseEvent('end', { state: status.state }));
  } catch (err) {
    o.request.log.warn({ err }, 'log stream failed');
    await write(sseEvent('error', { detail: err instanceof Error ? err.message : String(err) }));
  } finally {
    clearInterval(keepalive);
    res.off('close', onClose);
    o.metrics.logStreams.dec();
    if (!res.writableEnded) res.end();
  }
}
