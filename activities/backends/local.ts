/**
 * The `local` backend (DESIGN.md §5): runs the trainer as a real child process on this host, in a workspace under
 * FORGE_HOME/jobs/<job_id>/attempt-<n>/. The trainer runs detached, in its own process group, under a small
 * wrapper that records its exit status, so it survives the worker and a later worker still learns how it ended.
 * Which command runs is the operator config's `trainers[image]`, never the spec's.
 */
import { constants as fsConstants, promises as fs, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { LocalBackendConfig, TrainerCommand } from '../../common/config';
import { jobAttemptDir } from '../../common/paths';
import { DEFAULT_TRAINER_IMAGE } from '../../spec/constants';
import { classifyExitCode, type FailureInfo } from '../../spec/failure';
import type { TrainingJobSpec } from '../../spec/schema';
import { copyTree, fileSize, isErrno, linkTree, readLinesFrom, readRange, readTextIfExists, statIfExists, tailLines, writeFileAtomic } from './local-files';
import { bootId, leaderAlive, ownsGroup, readProcStat, resolveProgram, spawnDetached, terminateGroup } from './local-process';
import { trainerContractEnv } from './trainer-contract';
import { FILES, Workspace, type LaunchRecord } from './local-workspace';
import {
  BackendError,
  MAX_LOG_LINES,
  type Backend,
  type DeploymentRef,
  type DeploymentStatus,
  type HealthReport,
  type LogChunk,
  type Quote,
  type TrainingProgress,
} from './types';

export interface LocalBackendOptions {
  /** close(): how long the trainer may take to stop after SIGTERM before SIGKILL. */
  closeGraceMs?: number;
  /** A claim with no launch after this long is taken over (its claimer hangs). */
  staleClaimMs?: number;
  /** submit(): how long to wait for another claimer's launch before failing (retryably). */
  claimWaitMs?: number;
  /** Before taking over a dead claimer's claim: time for a wrapper it may just have spawned to show up. */
  claimSettleMs?: number;
  /** More env for one attempt's trainer, over the operator's (p2pfl: its web-logger key); made at launch, never stored. */
  attemptEnv?: (spec: TrainingJobSpec, attempt: number) => Record<string, string>;
}

const DEFAULTS: Required<LocalBackendOptions> = {
  closeGraceMs: 10_000,
  staleClaimMs: 30_000,
  claimWaitMs: 10_000,
  claimSettleMs: 1_000,
  attemptEnv: () => ({}),
};

const PROGRESS_TAIL_BYTES = 64 * 1024;
const STDERR_TAIL_LINES = 20;
const MS_PER_HOUR = 3_600_000;
/** A running-index marker younger than this may belong to a launch still under way. */
const MARKER_GRACE_MS = 60_000;
/** Job ids become path components: the schema allows UUIDs only, this refuses anything that could escape. */
const SAFE_PATH_COMPONENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Where trainers keep checkpoints inside FORGE_OUTPUT_DIR; carried from attempt to attempt. */
const CHECKPOINTS_DIR = 'checkpoints';
/** Orchestrator credentials the trainer has no business seeing. */
const PRIVATE_ENV = /^TEMPORAL_(API_KEY|TLS_)/;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface ProgressTail {
  offset: number;
  progress?: TrainingProgress;
}

interface LaunchRequest {
  spec: TrainingJobSpec;
  rawSpec: unknown;
  attempt: number;
  argv: string[];
  env: NodeJS.ProcessEnv;
}

export class LocalBackend implements Backend {
  readonly kind = 'local';
  private readonly options: Required<LocalBackendOptions>;
  /** Per workspace: how far stdout.log was scanned for progress, so a huge log is never re-read. */
  private readonly progressTails = new Map<string, ProgressTail>();

  constructor(
    readonly name: string,
    private readonly config: LocalBackendConfig,
    private readonly home: string,
    options: LocalBackendOptions = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  async health(): Promise<HealthReport> {
    const problems: string[] = [];
    try {
      await fs.mkdir(this.home, { recursive: true });
      await fs.access(this.home, fsConstants.W_OK);
    } catch (err) {
      problems.push(`FORGE_HOME ${this.home} is not writable (${(err as Error).message})`);
    }
    const trainers = Object.keys(this.config.trainers);
    if (trainers.length === 0) problems.push(`no trainer configured: add backends.${this.name}.trainers to FORGE_CONFIG`);
    if (problems.length) return { ok: false, detail: problems.join('; ') };
    const disabled = this.config.enabled ? '' : ' (disabled: admits no new jobs)';
    return { ok: true, detail: `FORGE_HOME ${this.home} writable; trainers: ${trainers.join(', ')}${disabled}` };
  }

  async quote(spec: TrainingJobSpec): Promise<Quote> {
    const hourlyUsd = this.config.hourly_usd;
    if (!this.config.enabled) {
      return { available: false, hourlyUsd, detail: `backend "${this.name}" is disabled in the operator config` };
    }
    const max = this.config.max_concurrent;
    if (max !== undefined) {
      // The job's own attempt does not count: a re-run admission (a worker died after submitting) must find the
      // capacity its first run used, and reach the idempotent submit again instead of another backend.
      const live = await this.countLiveAttempts(spec.job_id);
      if (live >= max) return { available: false, hourlyUsd, detail: `${live} of max_concurrent ${max} attempts running` };
    }
    return { available: true, hourlyUsd };
  }

  async submit(spec: TrainingJobSpec, rawSpec: unknown, attempt: number): Promise<DeploymentRef> {
    if (!SAFE_PATH_COMPONENT.test(spec.job_id)) throw new BackendError('REJECTED', `job id "${spec.job_id}" is not a safe path name`);
    if (!Number.isInteger(attempt) || attempt < 1) throw new BackendError('REJECTED', `attempt must be an integer >= 1, got ${attempt}`);
    const ws = new Workspace(jobAttemptDir(this.home, spec.job_id, attempt));
    await fs.mkdir(ws.dir, { recursive: true });
    // A retried submit returns what the first one launched, whatever the config says now.
    const existing = await ws.readLaunch();
    if (existing) return this.refFor(ws, existing);
    const request = await this.launchRequest(spec, rawSpec, attempt, ws);
    return this.refFor(ws, await this.acquire(ws, request));
  }

  async status(deployment: DeploymentRef): Promise<DeploymentStatus> {
    const ws = this.workspaceOf(deployment);
    const launch = await this.launchOf(ws, deployment);
    if (!launch) return { state: 'FAILED', costUsd: 0, failure: { class: 'LOST', detail: `attempt was never launched (${ws.dir})` } };
    const startedAt = new Date(launch.startedAt);
    const progress = await this.readProgress(ws);
    const base = { startedAt: launch.startedAt, ...(progress && { progress }) };
    // The wrapper may write exit.json and end between our two looks (exit.json, then the process): look for exit.json
    // again once the process is gone, before calling the attempt lost (found by the chaos suite, test/chaos). One
    // look at the process only: a second one could find it gone after the first found it alive, with its exit.json
    // written in between and never read (bench/lifecycle: about 1 no-op job in 100 was called LOST).
    let exit = await ws.readExit();
    const alive = !exit && leaderAlive(identity(launch));
    if (!exit && !alive) exit = await ws.readExit();
    if (exit) {
      const finished = { ...base, exitCode: exit.code, finishedAt: exit.finishedAt.toISOString(), costUsd: this.cost(startedAt, exit.finishedAt) };
      const failureClass = classifyExitCode(exit.code);
      if (!failureClass) return { state: 'SUCCEEDED', ...finished };
      return { state: 'FAILED', ...finished, failure: { class: failureClass, detail: await this.exitDetail(ws, exit.code) } };
    }
    if (alive) return { state: 'RUNNING', ...base, costUsd: this.cost(startedAt, new Date()) };
    const closedAt = await ws.readTime('closed');
    const endedAt = closedAt ?? (await ws.markTime('lost', new Date()));
    const failure = lostFailure(launch, closedAt);
    return { state: 'FAILED', ...base, finishedAt: endedAt.toISOString(), costUsd: this.cost(startedAt, endedAt), failure };
  }

  async logs(deployment: DeploymentRef, cursor?: string): Promise<LogChunk> {
    const ws = this.workspaceOf(deployment);
    const [outFrom, errFrom] = decodeCursor(cursor);
    const finished = await this.hasEnded(ws, deployment);
    const out = await readLinesFrom(ws.file('stdout'), outFrom, MAX_LOG_LINES, finished);
    const err = await readLinesFrom(ws.file('stderr'), errFrom, MAX_LOG_LINES, finished);
    // Share the page fairly, so a chatty stdout cannot hide stderr.
    const outTake = Math.min(out.lines.length, Math.max(MAX_LOG_LINES / 2, MAX_LOG_LINES - err.lines.length));
    const errTake = Math.min(err.lines.length, MAX_LOG_LINES - outTake);
    return {
      lines: [
        ...out.lines.slice(0, outTake).map((line) => ({ stream: 'stdout' as const, line })),
        ...err.lines.slice(0, errTake).map((line) => ({ stream: 'stderr' as const, line })),
      ],
      cursor: encodeCursor(outTake ? out.ends[outTake - 1] : outFrom, errTake ? err.ends[errTake - 1] : errFrom),
    };
  }

  async collectArtifacts(deployment: DeploymentRef, dir: string): Promise<string[]> {
    return copyTree(this.workspaceOf(deployment).file('output'), dir);
  }

  async close(deployment: DeploymentRef): Promise<void> {
    const ws = this.workspaceOf(deployment);
    if (!(await statIfExists(ws.dir))) return; // nothing was ever set up for it
    await ws.markTime('closed', new Date());
    this.progressTails.delete(ws.dir);
    const launch = await this.launchOf(ws, deployment);
    // Also stops what a finished trainer left behind in its group; a no-op when nothing of it lives.
    if (launch && ownsGroup(identity(launch))) await terminateGroup(launch.pid, this.options.closeGraceMs);
  }

  /** The wrapper writes exit.json into the attempt dir when the trainer ends: watching the dir sees it at once. */
  waitForChange(deployment: DeploymentRef, timeoutMs: number): Promise<void> {
    const dir = this.workspaceOf(deployment).dir;
    return new Promise((resolve) => {
      let watcher: FSWatcher | undefined;
      const done = (): void => {
        clearTimeout(timer);
        watcher?.close();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      try {
        watcher = watch(dir, { persistent: false }, (_event, name) => {
          if (name === FILES.exit) done();
        });
        watcher.on('error', done);
      } catch {
        // no such dir (yet) or no inotify: the timeout still bounds the wait
      }
      // It may have ended between the caller's last status() and the watch starting.
      statIfExists(path.join(dir, FILES.exit)).then((st) => st && done(), done);
    });
  }

  // ---- submit ---------------------------------------------------------------------------------------------------

  /** Everything a launch needs, checked before claiming: a refusal must leave no claim behind. */
  private async launchRequest(spec: TrainingJobSpec, rawSpec: unknown, attempt: number, ws: Workspace): Promise<LaunchRequest> {
    if (!this.config.enabled) throw new BackendError('NO_CAPACITY', `backend "${this.name}" is disabled in the operator config`);
    const image = spec.trainer?.image ?? DEFAULT_TRAINER_IMAGE;
    const trainer = this.trainerFor(image);
    const env = trainerEnv(process.env, trainer, { ...this.options.attemptEnv(spec, attempt), ...contractEnv(spec, attempt, ws) });
    const [program = '', ...args] = trainer.command;
    const resolved = await resolveProgram(program, env);
    if (!resolved) {
      throw new BackendError(
        'REJECTED',
        `trainer command "${program}" for image "${image}" on backend "${this.name}" not found or not executable; ` +
          'run the bootstrap (npm run bootstrap) or install the trainer, or fix the command in FORGE_CONFIG',
      );
    }
    return { spec, rawSpec, attempt, argv: [resolved, ...args], env };
  }

  private trainerFor(image: string): TrainerCommand {
    const trainer = this.config.trainers[image];
    if (trainer) return trainer;
    throw new BackendError(
      'REJECTED',
      `no trainer configured for image "${image}" on backend "${this.name}": ` +
        `add backends.${this.name}.trainers["${image}"] = {"command": [...]} to FORGE_CONFIG`,
    );
  }

  /**
   * Exactly one launch per workspace. Claims are exclusive creates of claim-<g>.json; the creator of the highest
   * generation launches. Everyone else waits for its launch.json, or takes over with generation g+1 when the claim
   * went stale without a launch.
   */
  private async acquire(ws: Workspace, request: LaunchRequest): Promise<LaunchRecord> {
    const deadline = Date.now() + this.options.claimWaitMs;
    for (;;) {
      const launched = await ws.readLaunch();
      if (launched) return launched;
      const generation = await ws.currentGeneration();
      const verdict = generation === 0 ? 'claim' : await this.judgeClaim(ws, generation, request);
      if (typeof verdict === 'object') return verdict;
      if (verdict === 'claim') {
        if (await ws.tryClaim(generation + 1)) return this.launch(ws, generation + 1, request);
        continue; // someone else claimed that generation first: wait for its launch
      }
      if (Date.now() >= deadline) {
        throw new Error(`attempt ${request.attempt} of job ${request.spec.job_id} is being launched by another worker; try again`);
      }
      await sleep(25);
    }
  }

  /**
   * What to do about someone else's claim without a launch.json: wait for it, or, when it is stale, (after a settle
   * delay for a wrapper its dead claimer may just have spawned) adopt that wrapper's launch or claim anew.
   */
  private async judgeClaim(ws: Workspace, generation: number, request: LaunchRequest): Promise<LaunchRecord | 'claim' | 'wait'> {
    if (!(await ws.claimIsStale(generation, this.options.staleClaimMs))) return 'wait';
    await sleep(this.options.claimSettleMs);
    const launched = (await ws.readLaunch()) ?? (await ws.recoverLaunch(this.name, request.spec.job_id, request.attempt));
    if (launched) return launched;
    return (await ws.currentGeneration()) === generation ? 'claim' : 'wait';
  }

  private async launch(ws: Workspace, generation: number, request: LaunchRequest): Promise<LaunchRecord> {
    await writeFileAtomic(ws.file('spec'), specText(request));
    await fs.mkdir(ws.file('output'), { recursive: true });
    await this.carryCheckpoints(request.spec.job_id, request.attempt, ws);
    // Whoever stalled past the stale timeout must not launch after a takeover did.
    if ((await ws.currentGeneration()) !== generation) throw new Error(`launch claim of ${ws.dir} was taken over; try again`);
    const startedAt = new Date().toISOString();
    await this.markRunning(request.spec.job_id, request.attempt, ws);
    const pid = await spawnDetached({
      dir: ws.dir,
      argv: request.argv,
      env: request.env,
      stdoutFile: ws.file('stdout'),
      stderrFile: ws.file('stderr'),
    });
    const record: LaunchRecord = {
      backend: this.name,
      jobId: request.spec.job_id,
      attempt: request.attempt,
      pid,
      startedAt,
      procStartTime: readProcStat(pid)?.startTime ?? null,
      bootId: bootId(),
      recovered: false,
    };
    await ws.writeLaunch(record);
    return record;
  }

  /**
   * Resume across attempts. Each attempt has its own FORGE_OUTPUT_DIR, and the trainer resumes from the newest
   * checkpoint it finds in FORGE_OUTPUT_DIR/checkpoints/ (trainer/README.md). So before attempt n starts, the
   * checkpoints/ of the latest earlier attempt that has any (it holds those it was given plus those it saved) are
   * hard-linked into attempt n's output folder, copied where links cannot be made. The earlier attempt's files stay
   * as they were: trainers write new checkpoint files and never rewrite carried ones. Runs again harmlessly when a
   * takeover relaunches.
   */
  private async carryCheckpoints(jobId: string, attempt: number, ws: Workspace): Promise<void> {
    for (let earlier = attempt - 1; earlier >= 1; earlier--) {
      const from = path.join(jobAttemptDir(this.home, jobId, earlier), FILES.output, CHECKPOINTS_DIR);
      if ((await listDir(from)).length === 0) continue;
      await linkTree(from, path.join(ws.file('output'), CHECKPOINTS_DIR));
      return;
    }
  }

  private refFor(ws: Workspace, launch: LaunchRecord): DeploymentRef {
    return {
      backend: this.name,
      kind: this.kind,
      id: `${launch.jobId}/attempt-${launch.attempt}`,
      jobId: launch.jobId,
      attempt: launch.attempt,
      submittedAt: launch.startedAt,
      data: { dir: ws.dir, pid: launch.pid },
    };
  }

  // ---- following ------------------------------------------------------------------------------------------------

  private workspaceOf(deployment: DeploymentRef): Workspace {
    const dir = deployment.data.dir;
    return new Workspace(typeof dir === 'string' ? dir : jobAttemptDir(this.home, deployment.jobId, deployment.attempt));
  }

  private async launchOf(ws: Workspace, deployment: DeploymentRef): Promise<LaunchRecord | undefined> {
    return (await ws.readLaunch()) ?? (await ws.recoverLaunch(this.name, deployment.jobId, deployment.attempt));
  }

  private async hasEnded(ws: Workspace, deployment: DeploymentRef): Promise<boolean> {
    if (await ws.readExit()) return true;
    const launch = await this.launchOf(ws, deployment);
    return !launch || !leaderAlive(identity(launch));
  }

  private cost(from: Date, to: Date): number {
    return (this.config.hourly_usd * Math.max(0, to.getTime() - from.getTime())) / MS_PER_HOUR;
  }

  private async exitDetail(ws: Workspace, code: number): Promise<string> {
    const signal = code > 128 ? ` (killed by signal ${code - 128}?)` : '';
    const tail = await tailLines(ws.file('stderr'), STDERR_TAIL_LINES);
    const stderr = tail.length ? `; last stderr lines:\n${tail.join('\n')}` : '; stderr is empty';
    return `trainer exited with code ${code}${signal}${stderr}`;
  }

  /** The newest progress event, scanning only what stdout.log gained since last time (at most its last 64 KiB). */
  private async readProgress(ws: Workspace): Promise<TrainingProgress | undefined> {
    const file = ws.file('stdout');
    const size = await fileSize(file);
    let tail = this.progressTails.get(ws.dir) ?? { offset: 0 };
    if (size < tail.offset) tail = { offset: 0 }; // truncated or replaced
    const start = Math.max(tail.offset, size - PROGRESS_TAIL_BYTES);
    const buf = await readRange(file, start, size - start);
    const lastNewline = buf.lastIndexOf(0x0a);
    if (lastNewline >= 0) {
      const lines = buf.subarray(0, lastNewline).toString('utf8').split('\n');
      if (start > tail.offset) lines.shift(); // we jumped into the middle of a line
      const found = lines.reverse().map(parseProgress).find((p) => p !== undefined);
      tail = { offset: start + lastNewline + 1, progress: found ?? tail.progress };
    }
    this.progressTails.set(ws.dir, tail);
    return tail.progress;
  }

  // ---- capacity -------------------------------------------------------------------------------------------------

  /** Attempts of this backend whose wrapper still runs, from the launch records under FORGE_HOME/jobs. */
  // ---- the running index (for max_concurrent) ---------------------------------------------------------------------
  // One marker file per launched attempt under running/<backend>/, so counting is O(running), not O(jobs ever run).

  private runningDir(): string {
    return path.join(this.home, 'running', this.name);
  }

  private async markRunning(jobId: string, attempt: number, ws: Workspace): Promise<void> {
    await fs.mkdir(this.runningDir(), { recursive: true });
    await writeFileAtomic(path.join(this.runningDir(), `${jobId}.attempt-${attempt}`), ws.dir);
  }

  /** Live attempts of this backend, other jobs' only; markers of ended attempts are pruned on the way. */
  private async countLiveAttempts(exceptJob: string): Promise<number> {
    let live = 0;
    for (const marker of await listDir(this.runningDir())) {
      const dir = await readTextIfExists(marker);
      if (dir === undefined) continue;
      if (await this.isLiveAttempt(new Workspace(dir))) {
        if (!path.basename(marker).startsWith(`${exceptJob}.`)) live++;
      } else if (Date.now() - ((await statIfExists(marker))?.mtimeMs ?? 0) > MARKER_GRACE_MS) {
        // Not live, and not a launch still under way: that attempt has ended.
        await fs.rm(marker, { force: true });
      }
    }
    return live;
  }

  private async isLiveAttempt(ws: Workspace): Promise<boolean> {
    try {
      const launch = await ws.readLaunch();
      return launch !== undefined && launch.backend === this.name && !(await ws.readExit()) && leaderAlive(identity(launch));
    } catch {
      return false; // a damaged workspace is not a running trainer
    }
  }
}

// ---- pure helpers -------------------------------------------------------------------------------------------------

function identity(launch: LaunchRecord): { pid: number; procStartTime: string | null; bootId: string | null } {
  return { pid: launch.pid, procStartTime: launch.procStartTime, bootId: launch.bootId };
}

/** The trainer contract of DESIGN.md §6, with this attempt's workspace paths. */
function contractEnv(spec: TrainingJobSpec, attempt: number, ws: Workspace): Record<string, string> {
  return { ...trainerContractEnv(spec, attempt), FORGE_SPEC: ws.file('spec'), FORGE_OUTPUT_DIR: ws.file('output') };
}

/** The worker's env (PATH etc.) minus its credentials, then the operator's trainer env, then the contract. */
function trainerEnv(base: NodeJS.ProcessEnv, trainer: TrainerCommand, contract: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(base).filter(([key]) => !PRIVATE_ENV.test(key)));
  return { ...inherited, ...trainer.env, ...contract };
}

/** The spec as submitted; a string is kept byte for byte. */
function specText(request: LaunchRequest): string {
  if (typeof request.rawSpec === 'string') return request.rawSpec;
  return `${JSON.stringify(request.rawSpec ?? request.spec, null, 2)}\n`;
}

function lostFailure(launch: LaunchRecord, closedAt: Date | undefined): FailureInfo {
  const why = closedAt
    ? `closed by the orchestrator at ${closedAt.toISOString()}`
    : 'killed outside the orchestrator, or the host rebooted';
  return { class: 'LOST', detail: `trainer wrapper (process group ${launch.pid}) ended without an exit status: ${why}` };
}

function parseProgress(line: string): TrainingProgress | undefined {
  if (!line.startsWith('{')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const event = value as Record<string, unknown>;
  if (event.event !== 'progress' || typeof event.step !== 'number') return undefined;
  return {
    step: event.step,
    ...(typeof event.max_steps === 'number' && { maxSteps: event.max_steps }),
    ...(typeof event.loss === 'number' && { loss: event.loss }),
  };
}

function encodeCursor(stdoutOffset: number, stderrOffset: number): string {
  return `v1:${stdoutOffset}:${stderrOffset}`;
}

function decodeCursor(cursor: string | undefined): [number, number] {
  if (cursor === undefined || cursor === '') return [0, 0];
  const m = /^v1:(\d+):(\d+)$/.exec(cursor);
  if (!m) throw new BackendError('REJECTED', `invalid log cursor "${cursor}"`);
  return [Number(m[1]), Number(m[2])];
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).map((name) => path.join(dir, name));
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  }
}
