/**
 * The forge agent: how a trainer container on a remote backend (Akash, Prime Intellect) tells the orchestrator how
 * it ended and hands over its outputs, with nothing but the image's own `sh` and `python3`.
 *
 * The container's command is `sh -c AGENT_SCRIPT forge-agent <trainer command...>`. The script writes the spec from
 * FORGE_SPEC_B64 to FORGE_SPEC, serves its folder over HTTP on FORGE_AGENT_PORT, runs the trainer (stdout and stderr
 * still go to the container log), then writes done.json (exit code, the output files with size and sha256, the last
 * stderr lines) and keeps serving until the deployment is closed. Everything is under a path named by a token
 * (HMAC of the backend's credential, job and attempt), so only the orchestrator can read it; the token lives in the
 * container's env and nowhere in the job's history.
 *
 * The orchestrator side (AgentClient) reads started / progress.json / done.json and, when the trainer succeeded,
 * copies the outputs (checked against their sha256) into FORGE_HOME/jobs/<job>/attempt-<n>/output, so artifacts
 * survive the deployment's close.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { jobAttemptDir } from '../../common/paths';
import { copyTree } from './local-files';
import { httpDownload, httpRequest, NetworkError, type HttpResponse } from './remote-http';
import { classifyExitCode, type FailureClass } from '../../spec/failure';
import { BackendError, type DeploymentRef, type DeploymentStatus, type TrainingProgress } from './types';

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
export function agentBaseUrl(uri: string): string {
  return /^https?:\/\//.test(uri) ? uri.replace(/\/+$/, '') : `http://${uri.replace(/\/+$/, '')}`;
}

/** A relative output path, refusing anything that could leave the output folder. */
function safeRelative(p: string): string | undefined {
  const norm = path.posix.normalize(p);
  if (norm.startsWith('../') || norm === '..' || path.posix.isAbsolute(norm) || norm.includes('\0')) return undefined;
  return norm;
}

export class AgentClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
    private readonly timeoutMs: number,
  ) {}

  private url(file: string): string {
    return `${this.baseUrl}/${this.token}/${file.split('/').map(encodeURIComponent).join('/')}`;
  }

  private async get(file: string): Promise<HttpResponse> {
    return httpRequest({ method: 'GET', url: this.url(file), timeoutMs: this.timeoutMs });
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
    return { step: p.data.step, ...(p.data.max_steps !== undefined && { maxSteps: p.data.max_steps }), ...(p.data.loss !== undefined && { loss: p.data.loss }) };
  }

  /**
   * Copies the trainer's outputs into `dir` (a fresh sibling first, renamed into place, so a half copy is never
   * taken for a whole one), each checked against the size and sha256 in done.json. Returns the relative paths.
   */
  async stage(done: AgentDone, dir: string): Promise<string[]> {
    if (await exists(path.join(dir, '.staged'))) return (await fs.readFile(path.join(dir, '.staged'), 'utf8')).split('\n').filter(Boolean);
    const tmp = `${dir}.staging-${process.pid}-${Date.now()}`;
    await fs.rm(tmp, { recursive: true, force: true });
    await fs.mkdir(tmp, { recursive: true });
    const copied: string[] = [];
    try {
      for (const f of done.files) {
        const rel = safeRelative(f.path);
        if (!rel) throw new Error(`forge agent listed an unsafe output path ${JSON.stringify(f.path)}`);
        if (NOT_STAGED.test(rel)) continue;
        const target = path.join(tmp, rel);
        await fs.mkdir(path.dirname(target), { recursive: true });
        const got = await httpDownload(this.url(`output/${rel}`), target, this.timeoutMs);
        if (got.status !== 200) throw new Error(`forge agent: output/${rel} answered HTTP ${got.status}`);
        if (got.size !== f.size || got.sha256 !== f.sha256) throw new Error(`forge agent: output/${rel} does not match its size and sha256`);
        copied.push(rel);
      }
      await fs.writeFile(path.join(tmp, '.staged'), `${copied.join('\n')}\n`);
      await fs.rm(dir, { recursive: true, force: true });
      await fs.mkdir(path.dirname(dir), { recursive: true });
      await fs.rename(tmp, dir);
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw err;
    }
    return copied;
  }
}

/** Where a remote attempt's staged outputs live (the same place the local backend uses). */
export function stagedOutputDir(home: string, jobId: string, attempt: number): string {
  return path.join(jobAttemptDir(home, jobId, attempt), 'output');
}

/** collectArtifacts of a remote backend: the staged copy, which outlives the deployment. */
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
 * A remote attempt's status from what its agent says: RUNNING while the trainer runs; when it ended 0, its outputs are
 * staged first (so SUCCEEDED always has them); another exit code is classified like the local backend's.
 */
export async function statusFromAgent(
  s: AgentState,
  agent: AgentClient,
  o: { home: string; ref: DeploymentRef; ready: boolean; base: { costUsd: number; startedAt?: string }; platform: string },
): Promise<DeploymentStatus> {
  if (s.phase === 'unreachable') return { state: o.ready ? 'RUNNING' : 'PENDING', ...o.base };
  const progress = s.progress ? { progress: s.progress } : {};
  if (s.phase === 'running') return { state: 'RUNNING', ...o.base, ...progress };
  const code = s.done.exit_code;
  const finished = { ...o.base, ...progress, exitCode: code, finishedAt: s.done.finished_at };
  const failureClass = classifyExitCode(code);
  if (!failureClass) {
    await agent.stage(s.done, stagedOutputDir(o.home, o.ref.jobId, o.ref.attempt));
    return { state: 'SUCCEEDED', ...finished };
  }
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
