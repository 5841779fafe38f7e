/**
 * The `local` backend (docs/architecture.md §5): runs the trainer as a real child process on this host, in a workspace under
 * FORGE_HOME/jobs/<job_id>/attempt-<n>/. The trainer runs detached, in its own process group, under a small
 * wrapper that records its exit status, so it survives the worker and a later worker still learns how it ended.
 * Which command runs is the operator config's `trainers[image]`, never the spec's.
 */
import { constants as fsConstants, promises as fs, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { LocalBackendConfig, TrainerCommand } from '../../../common/config';
import { jobAttemptDir } from '../../../common/paths';
import { DEFAULT_TRAINER_IMAGE } from '../../../jobspec/constants';
import { classifyExitCode } from '../../../jobspec/failure';
import type { TrainingJobSpec } from '../../../jobspec/schema';
import { shippedSpecText, type SignedSpec } from '../../../jobspec/signed-spec';
import {
  copyTree,
  linkTree,
  listDir,
  PRIVATE_DIR_MODE,
  readLinesFrom,
  statIfExists,
  tailLines,
  writeFileAtomic,
} from '../../../common/files';
import { bootId, leaderAlive, ownsGroup, readProcStat, resolveProgram, spawnDetached, terminateGroup } from './local-process';
import { trainerEnvironment, type TrainerEnv } from '../../../common/trainer-env';
import { traceparentEnv } from '../../../common/tracing';
import { trainerContractEnv } from '../trainer-contract';
import { FILES, lostFailure, Workspace, workspaceNotHere, type LaunchRecord } from './local-workspace';
import { countLiveAttempts, launchIdentity, listOpenLocal, localRef, markRunning } from './local-listing';
import { decodeCursor, encodeCursor, ProgressReader } from './local-output';
import {
  BackendError,
  MAX_LOG_LINES,
  type Backend,
  type DeploymentRef,
  type DeploymentStatus,
  type EvalRunInputs,
  type HealthReport,
  type LogChunk,
  type OpenDeployment,
  type Quote,
  type SubmitOptions,
} from '../types';

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
  /** Names of the worker's environment the trainer also gets (the operator's `trainer_env_passthrough`). */
  envPassthrough?: readonly string[];
}

const DEFAULTS: Required<LocalBackendOptions> = {
  closeGraceMs: 10_000,
  staleClaimMs: 30_000,
  claimWaitMs: 10_000,
  claimSettleMs: 1_000,
  attemptEnv: () => ({}),
  envPassthrough: [],
};

const STDERR_TAIL_LINES = 20;
const MS_PER_HOUR = 3_600_000;
/** Job ids become path components: the schema allows UUIDs only, this refuses anything that could escape. */
const SAFE_PATH_COMPONENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Where trainers keep checkpoints inside FORGE_OUTPUT_DIR; carried from attempt to attempt. */
const CHECKPOINTS_DIR = 'checkpoints';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface LaunchRequest {
  signed: SignedSpec;
  attempt: number;
  argv: string[];
  env: TrainerEnv;
  /** An eval attempt: it starts from no checkpoints. */
  evaluates: boolean;
}

export class LocalBackend implements Backend {
  readonly kind = 'local';
  private readonly options: Required<LocalBackendOptions>;
  /** Per workspace: how far stdout.log was scanned for progress, so a huge log is never re-read. */
  private readonly progress = new ProgressReader();

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
      const live = await countLiveAttempts(this.home, this.name, spec.job_id);
      if (live >= max) return { available: false, hourlyUsd, detail: `${live} of max_concurrent ${max} attempts running` };
    }
    return { available: true, hourlyUsd };
  }

  async submit(signed: SignedSpec, attempt: number, options: SubmitOptions = {}): Promise<DeploymentRef> {
    const { spec } = signed;
    if (!SAFE_PATH_COMPONENT.test(spec.job_id)) throw new BackendError('REJECTED', `job id "${spec.job_id}" is not a safe path name`);
    if (!Number.isInteger(attempt) || attempt < 1) throw new BackendError('REJECTED', `attempt must be an integer >= 1, got ${attempt}`);
    const ws = new Workspace(jobAttemptDir(this.home, spec.job_id, attempt));
    await fs.mkdir(ws.dir, { recursive: true, mode: PRIVATE_DIR_MODE }); // jobs/<id>/attempt-<n>: the job's only
    // A retried submit returns what the first one launched, whatever the config says now.
    const existing = await ws.readLaunch();
    if (existing) return this.refFor(ws, existing);
    const request = await this.launchRequest(signed, attempt, ws, options.evalRun);
    return this.refFor(ws, await this.acquire(ws, request));
  }

  async status(deployment: DeploymentRef): Promise<DeploymentStatus> {
    const ws = this.workspaceOf(deployment);
    const launch = await this.launchOf(ws, deployment);
    if (!launch) return { state: 'FAILED', costUsd: 0, failure: { class: 'LOST', detail: `attempt was never launched (${ws.dir})` } };
    const startedAt = new Date(launch.startedAt);
    const progress = await this.progress.read(ws);
    const base = { startedAt: launch.startedAt, ...(progress && { progress }) };
    // The wrapper may write exit.json and end between our two looks (exit.json, then the process): look for exit.json
    // again once the process is gone, before calling the attempt lost (found by the chaos suite, test/chaos). One
    // look at the process only: a second one could find it gone after the first found it alive, with its exit.json
    // written in between and never read (bench/lifecycle: about 1 no-op job in 100 was called LOST).
    let exit = await ws.readExit();
    const alive = !exit && leaderAlive(launchIdentity(launch));
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
    // submit() made the workspace before it returned the ref: without it, this process is not where the trainer ran.
    if (!(await statIfExists(ws.dir))) throw new BackendError('LOST', workspaceNotHere(this.name, deployment, ws.dir));
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
    this.progress.forget(ws);
    const launch = await this.launchOf(ws, deployment);
    // Also stops what a finished trainer left behind in its group; a no-op when nothing of it lives.
    if (launch && ownsGroup(launchIdentity(launch))) await terminateGroup(launch.pid, this.options.closeGraceMs);
  }

  /** The reaper: attempts of this backend whose process group still lives (local-listing.ts). */
  listOpen(): Promise<OpenDeployment[]> {
    return listOpenLocal(this.home, this.name, this.kind);
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
      // Unref'd: a follower cancelled mid-wait must not keep a stopping worker alive until it fires.
      const timer = setTimeout(done, timeoutMs).unref();
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
  private async launchRequest(signed: SignedSpec, attempt: number, ws: Workspace, evalRun?: EvalRunInputs): Promise<LaunchRequest> {
    const { spec } = signed;
    if (!this.config.enabled) throw new BackendError('NO_CAPACITY', `backend "${this.name}" is disabled in the operator config`);
    const image = spec.trainer?.image ?? DEFAULT_TRAINER_IMAGE;
    const trainer = this.trainerFor(image);
    const env = trainerEnvironment({
      base: process.env,
      passthrough: this.options.envPassthrough,
      operator: trainer.env,
      // TRACEPARENT: the submitting activity's span, so the trainer can join the job's trace (common/tracing.ts).
      contract: { ...this.options.attemptEnv(spec, attempt), ...contractEnv(spec, attempt, ws, evalRun), ...traceparentEnv() },
    });
    const [program = '', ...args] = trainer.command;
    const resolved = await resolveProgram(program, env);
    if (!resolved) {
      throw new BackendError(
        'REJECTED',
        `trainer command "${program}" for image "${image}" on backend "${this.name}" not found or not executable; ` +
          'run the bootstrap (npm run bootstrap) or install the trainer, or fix the command in FORGE_CONFIG',
      );
    }
    return { signed, attempt, argv: [resolved, ...args], env, evaluates: evalRun !== undefined };
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
        throw new Error(`attempt ${request.attempt} of job ${request.signed.spec.job_id} is being launched by another worker; try again`);
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
    const launched = (await ws.readLaunch()) ?? (await ws.recoverLaunch(this.name, request.signed.spec.job_id, request.attempt));
    if (launched) return launched;
    return (await ws.currentGeneration()) === generation ? 'claim' : 'wait';
  }

  private async launch(ws: Workspace, generation: number, request: LaunchRequest): Promise<LaunchRecord> {
    await writeFileAtomic(ws.file('spec'), shippedSpecText(request.signed));
    await fs.mkdir(ws.file('output'), { recursive: true, mode: PRIVATE_DIR_MODE });
    if (!request.evaluates) await this.carryCheckpoints(request.signed.spec.job_id, request.attempt, ws);
    // Whoever stalled past the stale timeout must not launch after a takeover did.
    if ((await ws.currentGeneration()) !== generation) throw new Error(`launch claim of ${ws.dir} was taken over; try again`);
    const startedAt = new Date().toISOString();
    await markRunning(this.home, this.name, request.signed.spec.job_id, request.attempt, ws.dir);
    const pid = await spawnDetached({
      dir: ws.dir,
      argv: request.argv,
      env: request.env,
      stdoutFile: ws.file('stdout'),
      stderrFile: ws.file('stderr'),
    });
    const record: LaunchRecord = {
      backend: this.name,
      jobId: request.signed.spec.job_id,
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
    return localRef(this.name, this.kind, ws.dir, launch);
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
    return !launch || !leaderAlive(launchIdentity(launch));
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

}

// ---- pure helpers -------------------------------------------------------------------------------------------------

/** The trainer contract of docs/architecture.md §6, with this attempt's workspace paths. */
function contractEnv(spec: TrainingJobSpec, attempt: number, ws: Workspace, evalRun?: EvalRunInputs): Record<string, string> {
  return { ...trainerContractEnv(spec, attempt, evalRun), FORGE_SPEC: ws.file('spec'), FORGE_OUTPUT_DIR: ws.file('output') };
}
