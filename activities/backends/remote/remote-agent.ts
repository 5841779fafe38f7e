/**
 * The forge agent: how a trainer container on a remote backend (Akash, Prime Intellect) tells the orchestrator how
 * it ended and hands over its outputs, with nothing but the image's own `sh` and `python3`.
 *
 * The container's command is `sh -c <trainer/agent/agent.sh> forge-agent <trainer command...>`. The script writes the spec from
 * FORGE_SPEC_B64 to FORGE_SPEC, serves its folder over HTTP on FORGE_AGENT_PORT, runs the trainer (stdout and stderr
 * still go to the container log), then writes done.json (exit code, the output files with size and sha256, the last
 * stderr lines) and keeps serving until the deployment is closed. Everything is under a path named by a token
 * (HMAC of the backend's credential, job and attempt), so only the orchestrator can read it; the token lives in the
 * container's env and nowhere in the job's history.
 *
 * The orchestrator side (AgentClient) reads started / progress.json / done.json. A trainer that ended 0 is SUCCEEDED
 * with `outputsOnDeployment`: its outputs stay in the container, and the deployment stays open until the activity
 * that commits them (on any replica) has downloaded them from the agent (collectFromAgent): checked against the sizes
 * and sha256 the agent announced in done.json, each download capped at its announced size, resumable file by file.
 * No replica's disk holds anything another activity needs. The token never appears in an error (redactToken).
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { jobAttemptDir } from '../../../common/paths';
import { copyTree } from '../../../common/files';
import { DownloadTooLargeError, httpDownload } from './remote-download';
import { httpRequest, NetworkError, redact, type DownloadResult, type HttpResponse, type TlsOptions } from './remote-http';
import { classifyExitCode, type FailureClass } from '../../../jobspec/failure';
import { BackendError, type DeploymentRef, type DeploymentStatus, type LogChunk, type TrainingProgress } from '../types';

/** Outputs under these folders stay in the container (checkpoints are for resuming there, and large). */
const NOT_STAGED = /^checkpoints\//;

const fileSchema = z.object({
  path: z.string().min(1),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
const doneSchema = z.object({
  exit_code: z.number().int(),
  finished_at: z.string(),
  files: z.array(fileSchema),
  stderr_tail: z.array(z.string()).default([]),
});
export type AgentDone = z.output<typeof doneSchema>;

const progressSchema = z.object({ event: z.literal('progress'), step: z.number(), max_steps: z.number().optional(), loss: z.number().optional() });

export type AgentState =
  | { phase: 'unreachable'; detail: string }
  | { phase: 'running'; startedAt?: string; progress?: TrainingProgress }
  | { phase: 'done'; done: AgentDone; progress?: TrainingProgress };

/** Where the agent answers: "host:port", "host" or a full URL, as providers report them. */
export function agentBaseUrl(uri: string, tls = false): string {
  return /^https?:\/\//.test(uri) ? uri.replace(/\/+$/, '') : `${tls ? 'https' : 'http'}://${uri.replace(/\/+$/, '')}`;
}

/** A relative output path, refusing anything that could leave the output folder. */
function safeRelative(p: string): string | undefined {
  const norm = path.posix.normalize(p);
  if (norm.startsWith('../') || norm === '..' || path.posix.isAbsolute(norm) || norm.includes('\0')) return undefined;
  return norm;
}

/** The one redaction of the agent token: every message that could carry a URL of the agent goes through it. */
export function redactToken(err: unknown, token: string): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const clean = redact(e.message, [token]);
  if (clean === e.message) return e;
  const copy =
    e instanceof NetworkError
      ? new NetworkError(e.code, clean)
      : e instanceof DownloadTooLargeError
        ? new DownloadTooLargeError(clean)
        : new Error(clean);
  if (e.stack) copy.stack = redact(e.stack, [token]);
  return copy;
}

/** A container's log lines as a backend returns them, the agent token (should anything print it) redacted. */
export async function agentLogLines(lines: string[], token: () => string | Promise<string>): Promise<LogChunk['lines']> {
  if (!lines.length) return [];
  const t = await token();
  return lines.map((line) => ({ stream: 'stdout' as const, line: redact(line, [t]) }));
}

/** Outputs of a finished trainer that collectFromAgent brings over (checkpoints stay in the container). */
export function collectedFiles(done: AgentDone): { rel: string; size: number; sha256: string }[] {
  const out: { rel: string; size: number; sha256: string }[] = [];
  for (const f of done.files) {
    const rel = safeRelative(f.path);
    if (!rel) throw new BackendError('REJECTED', `forge agent listed an unsafe output path ${JSON.stringify(f.path)}`);
    if (!NOT_STAGED.test(rel)) out.push({ rel, size: f.size, sha256: f.sha256 });
  }
  return out;
}

/** Progress of a download of outputs, for heartbeats: files done of all, bytes of the current file. */
export interface CollectProgress {
  file: string;
  filesDone: number;
  files: number;
  bytes: number;
}

export class AgentClient {
  private readonly tls: TlsOptions | undefined;

  /** `pinnedCert`: TLS to the agent (an https baseUrl), which must present exactly this certificate (agent-tls.ts). */
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
    private readonly timeoutMs: number,
    pinnedCert?: string,
  ) {
    this.tls = pinnedCert === undefined ? undefined : { rejectUnauthorized: false, pinned: [pinnedCert] };
  }

  private url(file: string): string {
    return `${this.baseUrl}/${this.token}/${file.split('/').map(encodeURIComponent).join('/')}`;
  }

  private async get(file: string): Promise<HttpResponse> {
    try {
      return await httpRequest({ method: 'GET', url: this.url(file), timeoutMs: this.timeoutMs, ...(this.tls && { tls: this.tls }) });
    } catch (err) {
      throw redactToken(err, this.token);
    }
  }

  /** What the agent says now; a container not (yet) reachable is `unreachable`, not an error. */
  async state(): Promise<AgentState> {
    let done: HttpResponse;
    try {
      done = await this.get('done.json');
    } catch (err) {
      if (err instanceof NetworkError) return { phase: 'unreachable', detail: err.message };
      throw err;
    }
    const progress = await this.progress();
    if (done.status === 200) {
      const parsed = doneSchema.safeParse(safeJson(done.text));
      if (parsed.success) return { phase: 'done', done: parsed.data, ...(progress && { progress }) };
      // done.json is renamed into place, so a bad one is a broken agent, not a race
      throw new Error(`forge agent: unreadable done.json (${parsed.error.issues[0]?.message ?? 'invalid'})`);
    }
    if (done.status !== 404) return { phase: 'unreachable', detail: `forge agent answered HTTP ${done.status}` };
    const started = await this.get('started').catch(() => undefined);
    if (started?.status !== 200) return { phase: 'unreachable', detail: 'forge agent has not started the trainer yet' };
    return { phase: 'running', startedAt: started.text.trim(), ...(progress && { progress }) };
  }

  private async progress(): Promise<TrainingProgress | undefined> {
    const res = await this.get('progress.json').catch(() => undefined);
    if (res?.status !== 200) return undefined;
    const p = progressSchema.safeParse(safeJson(res.text));
    if (!p.success) return undefined;
    return {
      step: p.data.step,
      ...(p.data.max_steps !== undefined && { maxSteps: p.data.max_steps }),
      ...(p.data.loss !== undefined && { loss: p.data.loss }),
    };
  }

  /**
   * Downloads the trainer's outputs into `dir`, each checked against the size and sha256 in done.json and refused
   * past its announced size. Resumable: a file already in `dir` with the announced size and sha256 (an earlier try
   * of the same activity on this replica) is kept, not fetched again; a file being written goes to a hidden sibling
   * first, so a half download is never taken for a whole one. Returns the relative paths.
   */
  async download(done: AgentDone, dir: string, onProgress?: (p: CollectProgress) => void): Promise<string[]> {
    const files = collectedFiles(done);
    const copied: string[] = [];
    for (const [i, f] of files.entries()) {
      const target = path.join(dir, f.rel);
      const report = (bytes: number): void => onProgress?.({ file: f.rel, filesDone: i, files: files.length, bytes });
      if (await matches(target, f.size, f.sha256)) {
        copied.push(f.rel);
        report(f.size);
        continue;
      }
      await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 }); // the job's only
      const part = path.join(path.dirname(target), `.forge-part-${path.basename(target)}`);
      let got: DownloadResult;
      try {
        got = await httpDownload(this.url(`output/${f.rel}`), part, { idleMs: this.timeoutMs, maxBytes: f.size, onProgress: report, ...(this.tls && { tls: this.tls }) });
      } catch (err) {
        if (err instanceof DownloadTooLargeError) {
          throw new BackendError('REJECTED', `forge agent: output/${f.rel} is larger than the ${f.size} bytes its done.json announced; refused (${redactToken(err, this.token).message})`);
        }
        throw redactToken(err, this.token);
      }
      if (got.status !== 200) {
        await fs.rm(part, { force: true });
        throw new Error(`forge agent: output/${f.rel} answered HTTP ${got.status}; the deployment must stay open until its outputs are committed`);
      }
      if (got.size !== f.size || got.sha256 !== f.sha256) {
        await fs.rm(part, { force: true });
        throw new BackendError('REJECTED', `forge agent: output/${f.rel} does not match the size (${f.size}) and sha256 its done.json announced (got ${got.size} bytes, ${got.sha256})`);
      }
      await fs.rename(part, target);
      copied.push(f.rel);
    }
    return copied;
  }
}

/**
 * collectArtifacts of a remote backend: the outputs from the agent of the (still open) deployment into `dir`.
 * A trainer that has not ended 0 has nothing to collect. Outputs staged into this replica's FORGE_HOME by an older
 * follower (before this version) are taken from there.
 */
export async function collectFromAgent(
  agentOf: () => Promise<AgentClient | undefined>,
  o: { home: string; ref: DeploymentRef; dir: string; onProgress?: (p: CollectProgress) => void },
): Promise<string[]> {
  const legacy = stagedOutputDir(o.home, o.ref.jobId, o.ref.attempt);
  if (await exists(path.join(legacy, '.staged'))) return collectStaged(o.home, o.ref.jobId, o.ref.attempt, o.dir);
  const what = `attempt ${o.ref.attempt} of job ${o.ref.jobId} on ${o.ref.backend} (${o.ref.id})`;
  const agent = await agentOf();
  if (!agent) throw new Error(`${what}: its forge agent has no address yet; the deployment must be open and running to hand over its outputs`);
  const s = await agent.state();
  if (s.phase !== 'done') throw new Error(`${what}: its forge agent is ${s.phase === 'running' ? 'still running the trainer' : `unreachable (${s.detail})`}; retrying`);
  if (classifyExitCode(s.done.exit_code)) throw new BackendError('REJECTED', `${what}: the trainer exited with code ${s.done.exit_code}; there are no outputs to collect`);
  return agent.download(s.done, o.dir, o.onProgress);
}

async function matches(file: string, size: number, sha256: string): Promise<boolean> {
  const st = await fs.stat(file).catch(() => undefined);
  if (!st?.isFile() || st.size !== size) return false;
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex') === sha256;
}

/** Where an older version staged a remote attempt's outputs (FORGE_HOME of the replica that followed it). */
export function stagedOutputDir(home: string, jobId: string, attempt: number): string {
  return path.join(jobAttemptDir(home, jobId, attempt), 'output');
}

/** Outputs staged by an older version into this replica's FORGE_HOME. */
export async function collectStaged(home: string, jobId: string, attempt: number, dir: string): Promise<string[]> {
  const from = stagedOutputDir(home, jobId, attempt);
  if (!(await exists(path.join(from, '.staged')))) {
    throw new Error(`attempt ${attempt} of job ${jobId} has no staged outputs (it did not succeed, or its status was never read)`);
  }
  return (await copyTree(from, dir)).filter((p) => p !== '.staged');
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * A remote attempt's status from what its agent says: RUNNING while the trainer runs; when it ended 0, SUCCEEDED with
 * `outputsOnDeployment` (its outputs are fetched from the agent by the commit, so the deployment stays open until
 * then); another exit code is classified like the local backend's.
 */
export function statusFromAgent(
  s: AgentState,
  o: { ready: boolean; base: { costUsd: number; startedAt?: string }; platform: string },
): DeploymentStatus {
  if (s.phase === 'unreachable') return { state: o.ready ? 'RUNNING' : 'PENDING', ...o.base };
  const progress = s.progress ? { progress: s.progress } : {};
  if (s.phase === 'running') return { state: 'RUNNING', ...o.base, ...progress };
  const code = s.done.exit_code;
  const finished = { ...o.base, ...progress, exitCode: code, finishedAt: s.done.finished_at };
  const failureClass = classifyExitCode(code);
  if (!failureClass) return { state: 'SUCCEEDED', ...finished, outputsOnDeployment: true };
  const tail = s.done.stderr_tail.length ? `; last stderr lines:\n${s.done.stderr_tail.join('\n')}` : '; stderr is empty';
  return { state: 'FAILED', ...finished, failure: { class: failureClass, detail: `trainer exited with code ${code} on ${o.platform}${tail}` } };
}

export function failedStatus(cls: FailureClass, detail: string, costUsd: number): DeploymentStatus {
  return { state: 'FAILED', costUsd, failure: { class: cls, detail }, finishedAt: new Date().toISOString() };
}

/** Log cursors of remote backends: how many lines were already read (their APIs replay logs from the start). */
export function encodeLineCursor(prefix: string, lines: number): string {
  return `${prefix}:${lines}`;
}

export function decodeLineCursor(prefix: string, cursor: string | undefined): number {
  if (!cursor) return 0;
  const m = new RegExp(`^${prefix}:(\\d+)$`).exec(cursor);
  if (!m) throw new BackendError('REJECTED', `invalid log cursor "${cursor}"`);
  return Number(m[1]);
}
