/**
 * A GRPO trainer host (docs/architecture.md §7): fixed slots (one job's policy per slot, e.g. per GPU), each held by one
 * long-lived `forge-trainer grpo-server` process that keeps the policy in memory.
 *
 *  - acquireTrainerHost, on the shared queue `forge-grpo`: a free slot starts a session for the job (its process
 *    loads the policy and resumes from the job's newest checkpoint) and returns the lease: this host's own queue
 *    `forge-grpo@<hostId>`, the session and the version it holds. The shared queue is polled only while a slot is
 *    free (a custom slot supplier), so a full host never takes a job it cannot run.
 *  - on `forge-grpo@<hostId>`: grpoUpdate (one GRPO step), watchTrainerHost (heartbeats for as long as the session
 *    lives: the workflow learns of a dead host within one heartbeat timeout), exportPolicy, releaseTrainerHost.
 *
 * A session nobody watches for `leaseSeconds` is released (its workflow moved to another host or went away). On
 * SIGTERM the host drains: running updates finish, every session checkpoints and stops, and each watch then fails
 * with RL_SESSION_LOST so that its workflow moves to another host at once and resumes from that checkpoint.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { ActivitySlotInfo, CustomSlotSupplier, SlotPermit } from '@temporalio/worker';
import { z } from 'zod';
import { spawnTrainer, trainerEnvironment } from '../../common/trainer-env';
import { sessionToken } from '../../common/rl-session';
import type { PolicyBus } from './policy-bus';
import { verifyGroups, type StoredRollout } from './rescore';
import { VerificationPicker, verifyRollouts } from './verify';
import { TaskRegistry } from './tasks';
import { RL_FAILURE } from '../../common/rl-names';
import {
  type AcquireInput,
  type ExportResult,
  type HostLease,
  type PolicyRef,
  type SessionInput,
  type StepLine,
  type UpdateInput,
  type UpdateResult,
  type WatchResult,
} from './types';
import { recordRejections, recordRlStep, recordVerification } from './metrics';

export interface GrpoHostSettings {
  hostId: string;
  /** The shared queue (forge-grpo). */
  taskQueue: string;
  /** This host's own queue, forge-grpo@<hostId> (common/names.ts grpoHostTaskQueue). */
  hostQueue: string;
  slots: number;
  /** Jobs' state folders (checkpoints, training logs, exports): shared by every trainer host. */
  stateDir: string;
  /** This host's scratch space (served weights). */
  workDir: string;
  /** argv of the policy process; `--config …` and the rest are appended. */
  trainerCommand: string[];
  /** Extra environment of the policy processes; CUDA_VISIBLE_DEVICES per slot comes from `devices`. */
  trainerEnv: Record<string, string>;
  /** Names of this worker's variables the policy process also gets (FORGE_GRPO_TRAINER_ENV_PASSTHROUGH). */
  trainerEnvPassthrough: string[];
  /** One entry per slot (e.g. "0", "1" or "0,1,2,3"); empty: the processes see every device. */
  devices: string[];
  bindHost: string;
  /** The name rollout workers reach this host by. */
  advertiseHost: string;
  leaseSeconds: number;
  startTimeoutMs: number;
  /** Benchmarks: pad every update to at least this long (simulated accelerator time). */
  minUpdateSeconds: number;
  /** Updates a policy process takes at once (1: no pipelining); the process reports what it does in its lease. */
  pipelineDepth: number;
  /** Announce each version here (Tashi / MQTT 5), if set. */
  bus?: PolicyBus;
  /** The RL session key (common/rl-session.ts): a session's rollout token is derived from it and the session id, so
   *  that the lease (in the workflow's history) carries no secret. */
  sessionKey: () => Buffer;
  /** Where the re-scoring of rollouts finds each task and its checker (default: the eval suite's task files). */
  tasks?: TaskRegistry;
}

const servingSchema = z.looseObject({
  event: z.literal('serving'),
  url: z.string(),
  version: z.int().min(0),
  sha256: z.string(),
  resumed_from: z.int().nullable(),
  // Absent from trainers that take one update at a time.
  pipeline_depth: z.int().min(1).default(1),
});

const stepSchema = z.looseObject({
  step: z.int().min(1),
  policy_version: z.int(),
  reward_mean: z.number(),
  reward_std: z.number(),
  loss: z.number(),
  kl: z.number(),
  staleness_mean: z.number(),
  staleness_max: z.number(),
  trainer_idle_fraction: z.number(),
  rollout_tokens_per_s: z.number().nullable(),
  step_seconds: z.number(),
  update_seconds: z.number().optional(),
  clip_fraction: z.number().optional(),
  grad_norm: z.number().optional(),
  lr: z.number().optional(),
  version: z.int(),
  sha256: z.string(),
  url: z.string(),
  checkpoint: z.string().nullable(),
});

const exportSchema = z.looseObject({
  version: z.int(),
  url: z.string(),
  files: z.array(z.strictObject({ path: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.int().min(0) })),
});

const errorSchema = z.looseObject({ error: z.looseObject({ message: z.string() }) });

const storedSchema = z.looseObject({
  rollouts: z.record(z.string(), z.looseObject({ prompt: z.string().nullable(), texts: z.array(z.string()), rewards: z.array(z.number()) })),
}) satisfies z.ZodType<{ rollouts: Record<string, StoredRollout> }>;

interface Session {
  id: string;
  jobId: string;
  runId: string;
  slot: number;
  proc: ChildProcess;
  url: string;
  token: string;
  adminToken: string;
  policy: PolicyRef;
  resumedFrom: number | null;
  pipelineDepth: number;
  exitCode: Promise<number | null>;
  exited: boolean;
  out: { stderr: string };
  watchers: number;
  unwatchedSince: number;
  /** Updates in progress: the running step and, pipelined, the next one waiting for its turn in the process. */
  updating: Set<Promise<unknown>>;
}

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function lost(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: RL_FAILURE.SESSION_LOST, nonRetryable: true });
}

export class TrainerHost {
  private readonly sessions = new Map<string, Session>();
  private readonly byRun = new Map<string, Promise<Session>>();
  /** Slots of sessions that run or are starting. */
  private readonly busy = new Set<number>();
  private permits = 0;
  private slotWaiters: (() => void)[] = [];
  private janitor: NodeJS.Timeout | undefined;
  private drainingSince: number | null = null;
  private tasks: TaskRegistry | undefined;
  private readonly picker = new VerificationPicker();

  constructor(readonly settings: GrpoHostSettings) {}

  get ownQueue(): string {
    return this.settings.hostQueue;
  }

  get held(): number {
    return this.sessions.size;
  }

  get draining(): boolean {
    return this.drainingSince !== null;
  }

  private freeSlots(): number {
    return this.settings.slots - this.busy.size - this.permits;
  }

  private wakeSlots(): void {
    const w = this.slotWaiters;
    this.slotWaiters = [];
    for (const f of w) f();
  }

  /** The shared queue's activity slots: one per free policy slot, so that a full host does not poll for jobs. */
  slotSupplier(): CustomSlotSupplier<ActivitySlotInfo> {
    return {
      type: 'custom',
      reserveSlot: (_ctx, abort): Promise<SlotPermit> =>
        new Promise<SlotPermit>((resolve, reject) => {
          // Rejected with the signal's own reason: what the SDK expects of an aborted reservation.
          const attempt = (): void => {
            if (abort.aborted) return reject(abort.reason);
            if (!this.draining && this.freeSlots() > 0) {
              this.permits++;
              return resolve({});
            }
            this.slotWaiters.push(attempt);
          };
          abort.addEventListener('abort', () => {
            this.slotWaiters = this.slotWaiters.filter((f) => f !== attempt);
            reject(abort.reason);
          }, { once: true });
          attempt();
        }),
      tryReserveSlot: (): SlotPermit | null => {
        if (this.draining || this.freeSlots() <= 0) return null;
        this.permits++;
        return {};
      },
      markSlotUsed: () => undefined,
      releaseSlot: () => {
        this.permits = Math.max(0, this.permits - 1);
        this.wakeSlots();
      },
    };
  }

  start(): void {
    this.janitor = setInterval(() => void this.reapUnwatched(), 5_000);
    this.janitor.unref();
  }

  private async reapUnwatched(): Promise<void> {
    const limit = this.settings.leaseSeconds * 1000;
    for (const s of this.sessions.values()) {
      if (s.watchers === 0 && Date.now() - s.unwatchedSince > limit) {
        console.warn(`[grpo] session ${s.id} of job ${s.jobId}: nobody watched it for ${this.settings.leaseSeconds} s, releasing it`);
        await this.stop(s).catch(() => undefined);
      }
    }
  }

  // ---- sessions ---------------------------------------------------------------------------------------------------

  private session(id: string): Session {
    const s = this.sessions.get(id);
    if (!s || s.exited) throw lost(`trainer session ${id} is not on host ${this.settings.hostId}${s ? ` (its process exited: ${tail(s.out.stderr)})` : ''}`);
    return s;
  }

  private lease(s: Session): HostLease {
    return {
      hostId: this.settings.hostId,
      taskQueue: this.ownQueue,
      sessionId: s.id,
      trainer: { baseUrl: s.url, sessionId: s.id },
      policy: s.policy,
      resumedFrom: s.resumedFrom,
      pipelineDepth: s.pipelineDepth,
    };
  }

  /** A session for the run: started here, or the one this host already holds for it (a retried acquire). */
  async acquire(input: AcquireInput, heartbeat: () => void): Promise<HostLease> {
    if (this.draining) throw new Error(`host ${this.settings.hostId} is draining`);
    let pending = this.byRun.get(input.runId);
    if (!pending) {
      pending = this.startSession(input, heartbeat);
      this.byRun.set(input.runId, pending);
      pending.catch(() => this.byRun.delete(input.runId));
    }
    const s = await pending;
    if (s.exited) {
      this.byRun.delete(input.runId);
      throw lost(`trainer session ${s.id} exited: ${tail(s.out.stderr)}`);
    }
    await this.announce(s, s.policy);
    return this.lease(s);
  }

  private async startSession(input: AcquireInput, heartbeat: () => void): Promise<Session> {
    const set = this.settings;
    const slot = [...Array(set.slots).keys()].find((i) => !this.busy.has(i));
    if (slot === undefined) throw new Error(`host ${set.hostId} has no free slot`); // retried elsewhere
    this.busy.add(slot);
    try {
      return await this.spawnSession(input, slot, heartbeat);
    } catch (err) {
      this.busy.delete(slot);
      this.wakeSlots();
      throw err;
    }
  }

  private async spawnSession(input: AcquireInput, slot: number, heartbeat: () => void): Promise<Session> {
    const set = this.settings;
    const id = `${input.runId}.${set.hostId}.${randomBytes(4).toString('hex')}`;
    const stateDir = path.join(set.stateDir, input.jobId);
    const workDir = path.join(set.workDir, id.replace(/[^A-Za-z0-9._-]/g, '_'));
    await fs.mkdir(workDir, { recursive: true });
    const configFile = path.join(workDir, '..', `${path.basename(workDir)}.json`);
    await fs.writeFile(
      configFile,
      JSON.stringify({
        ...input.config,
        job_id: input.jobId,
        session_id: id,
        min_update_seconds: set.minUpdateSeconds,
        pipeline_depth: set.pipelineDepth,
      }),
      { mode: 0o600 },
    );
    // The rollout token is derived (rollout workers derive it too); the admin token never leaves this process.
    const token = sessionToken(set.sessionKey(), id);
    const adminToken = randomBytes(24).toString('base64url');
    const [program] = set.trainerCommand;
    const device = set.devices[slot];
    const proc = spawnTrainer(
      [
        ...set.trainerCommand,
        '--config',
        configFile,
        '--state-dir',
        stateDir,
        '--work-dir',
        workDir,
        '--host',
        set.bindHost,
        '--port',
        '0',
        '--advertise-host',
        set.advertiseHost,
      ],
      trainerEnvironment({
        base: process.env,
        passthrough: set.trainerEnvPassthrough,
        operator: { OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1', ...set.trainerEnv },
        contract: {
          ...(device !== undefined ? { CUDA_VISIBLE_DEVICES: device } : {}),
          FORGE_GRPO_TOKEN: token,
          FORGE_GRPO_ADMIN_TOKEN: adminToken,
        },
      }),
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const out = { stderr: '' };
    proc.stderr!.on('data', (d: Buffer) => (out.stderr = (out.stderr + d.toString('utf8')).slice(-4000)));
    const exitCode = new Promise<number | null>((resolve) => {
      proc.once('exit', (code) => resolve(code));
      proc.once('error', () => resolve(null));
    });
    const started = await new Promise<z.infer<typeof servingSchema>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the trainer process did not serve within ${set.startTimeoutMs} ms`)), set.startTimeoutMs);
      const beat = setInterval(heartbeat, 1_000);
      const done = (): void => {
        clearTimeout(timer);
        clearInterval(beat);
      };
      proc.once('error', (err) => {
        done();
        reject(ApplicationFailure.create({ message: `cannot start the trainer (${program}): ${err.message}`, type: 'REJECTED', nonRetryable: true }));
      });
      void exitCode.then((code) => {
        done();
        const why = `the trainer process exited with ${code} while loading the policy: ${tail(out.stderr)}`;
        // The trainer contract: 75 transient, anything else permanent (a model that cannot be loaded, a bad config).
        reject(code === 75 ? ApplicationFailure.create({ message: why, type: 'TRANSIENT' }) : ApplicationFailure.create({ message: why, type: 'EXIT_CODE', nonRetryable: true }));
      });
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        if (!line.startsWith('{')) return;
        try {
          const ev = servingSchema.safeParse(JSON.parse(line));
          if (ev.success) {
            done();
            resolve(ev.data);
          }
        } catch {
          // another event
        }
      });
    }).catch(async (err: unknown) => {
      proc.kill('SIGKILL');
      await exitCode;
      await fs.rm(workDir, { recursive: true, force: true });
      throw err;
    });
    await fs.rm(configFile, { force: true });
    const s: Session = {
      id,
      jobId: input.jobId,
      runId: input.runId,
      slot,
      proc,
      url: started.url,
      token,
      adminToken,
      policy: { version: started.version, sha256: started.sha256, url: `${started.url}/v1/policy/${started.version}/model.safetensors` },
      resumedFrom: started.resumed_from,
      pipelineDepth: started.pipeline_depth,
      exitCode,
      exited: false,
      out,
      watchers: 0,
      unwatchedSince: Date.now(),
      updating: new Set(),
    };
    void exitCode.then(() => {
      s.exited = true;
      this.forget(s);
    });
    this.sessions.set(id, s);
    console.log(`[grpo] session ${id}: job ${input.jobId} on slot ${slot}, policy version ${s.policy.version}${s.resumedFrom !== null ? ` (resumed from checkpoint ${s.resumedFrom})` : ''}`);
    return s;
  }

  private forget(s: Session): void {
    if (this.sessions.get(s.id) === s) {
      this.sessions.delete(s.id);
      this.busy.delete(s.slot);
    }
    this.byRun.delete(s.runId);
    this.wakeSlots();
  }

  /** SIGTERM: the process checkpoints its current version and exits; SIGKILL after the timeout. */
  private async stop(s: Session, timeoutMs = 120_000): Promise<number | null> {
    if (!s.exited) {
      s.proc.kill('SIGTERM');
      const timer = setTimeout(() => s.proc.kill('SIGKILL'), timeoutMs);
      await s.exitCode;
      clearTimeout(timer);
    }
    this.forget(s);
    return s.exitCode;
  }

  private async call(s: Session, method: string, route: string, body: unknown, admin: boolean, signal?: AbortSignal): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${s.url}${route}`, {
        method,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${admin ? s.adminToken : s.token}` },
        body: body === undefined ? null : JSON.stringify(body),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (s.exited) throw lost(`trainer session ${s.id} exited: ${tail(s.out.stderr)}`);
      throw err;
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text.slice(0, 500);
      try {
        const e = errorSchema.safeParse(JSON.parse(text));
        if (e.success) message = e.data.error.message;
      } catch {
        // not JSON
      }
      throw new HttpFailure(res.status, message);
    }
    return JSON.parse(text) as unknown;
  }

  private async announce(s: Session, policy: PolicyRef): Promise<void> {
    const bus = this.settings.bus;
    if (!bus?.connected) return;
    await bus
      .publish({ job_id: s.jobId, session_id: s.id, version: policy.version, url: policy.url, sha256: policy.sha256, at: new Date().toISOString() })
      .catch((err: Error) => console.warn(`[grpo] MQTT announcement of ${s.jobId} version ${policy.version} failed: ${err.message}`));
  }

  async update(input: UpdateInput, signal: AbortSignal): Promise<UpdateResult> {
    if (this.draining) throw lost(`host ${this.settings.hostId} is draining: move the run to another host`);
    const s = this.session(input.sessionId);
    // Rewards are recomputed, not reported: a group whose rewards are not its task checker's leaves the update. When
    // none is left, the step still runs (the version advances), on zero advantages: nothing is learned from it.
    this.tasks ??= this.settings.tasks ?? new TaskRegistry();
    const tasks = this.tasks;
    const { kept: rescored, rejected } = await verifyGroups(
      input.groups,
      input.refusedWorkers ?? [],
      async (ids) => storedSchema.parse(await this.call(s, 'POST', '/v1/rollout-texts', { rollout_ids: ids }, true, signal)).rollouts,
      (ref) => tasks.source(ref.taskType).task(ref.seed),
    );
    // TOPLOC and logprobs of a share of the rest (verify.ts); the call also tells the session whom to refuse uploads.
    const checked = await verifyRollouts(rescored, input.verify, input.refusedWorkers ?? [], this.picker, (body) =>
      this.call(s, 'POST', '/v1/verify-rollouts', body, true, signal),
    );
    rejected.push(...checked.rejected);
    const dropped = new Set(checked.rejected.map((r) => r.rolloutId));
    const kept = rescored.filter((g) => !dropped.has(g.rolloutId));
    if (checked.checked) recordVerification(checked.checked, checked.seconds);
    recordRejections(rejected);
    for (const r of rejected) console.warn(`[grpo] step ${input.step}: rejected rollout ${r.rolloutId} of worker ${r.worker} (${r.reason}): ${r.detail}`);
    const groups = kept.length ? kept : input.groups.map((g) => ({ ...g, advantages: g.advantages.map(() => 0) }));
    const body = {
      step: input.step,
      groups: groups.map((g) => ({ rollout_id: g.rolloutId, advantages: g.advantages })),
      rollout_tokens_per_s: input.rolloutTokensPerS,
    };
    const run = this.call(s, 'POST', '/v1/update', body, true, signal);
    const settled = run.catch(() => undefined);
    s.updating.add(settled);
    let answer: unknown;
    try {
      answer = await run;
    } catch (err) {
      if (err instanceof HttpFailure) {
        if (err.status === 410) throw lost(`trainer session ${s.id}: ${err.message}`);
        if (err.status === 409 || err.status === 400) {
          throw ApplicationFailure.create({ message: `update of step ${input.step} refused: ${err.message}`, type: RL_FAILURE.UPDATE_REFUSED, nonRetryable: true });
        }
      }
      throw err;
    } finally {
      s.updating.delete(settled);
    }
    const r = stepSchema.parse(answer);
    s.policy = { version: r.version, sha256: r.sha256, url: r.url };
    await this.announce(s, s.policy);
    const line: StepLine = {
      step: r.step,
      policy_version: r.policy_version,
      reward_mean: r.reward_mean,
      reward_std: r.reward_std,
      loss: r.loss,
      kl: r.kl,
      staleness_mean: r.staleness_mean,
      staleness_max: r.staleness_max,
      trainer_idle_fraction: r.trainer_idle_fraction,
      rollout_tokens_per_s: r.rollout_tokens_per_s,
      step_seconds: r.step_seconds,
      ...(r.update_seconds !== undefined ? { update_seconds: r.update_seconds } : {}),
      ...(r.clip_fraction !== undefined ? { clip_fraction: r.clip_fraction } : {}),
      ...(r.grad_norm !== undefined ? { grad_norm: r.grad_norm } : {}),
      ...(r.lr !== undefined ? { lr: r.lr } : {}),
    };
    recordRlStep(line);
    return { line, policy: s.policy, checkpoint: r.checkpoint, ...(rejected.length ? { rejected } : {}) };
  }

  /** Returns only when the watch is cancelled; fails RL_SESSION_LOST when the session ends or the host drains. */
  async watch(input: SessionInput, heartbeat: () => void, cancelled: Promise<never>): Promise<WatchResult> {
    const s = this.session(input.sessionId);
    s.watchers++;
    try {
      for (;;) {
        heartbeat();
        if (this.draining) {
          await Promise.all(s.updating);
          const code = await this.stop(s);
          throw lost(`host ${this.settings.hostId} drained: the session checkpointed version ${s.policy.version} and stopped (exit ${code})`);
        }
        const ended = await Promise.race([
          s.exitCode.then((code) => ({ code })),
          new Promise<null>((resolve) => setTimeout(() => resolve(null), 1_000)),
          cancelled,
        ]);
        if (ended) throw lost(`the trainer process of session ${s.id} exited with ${ended.code}: ${tail(s.out.stderr)}`);
      }
    } catch (err) {
      if (Context.current().cancellationSignal.aborted && !this.draining) return { reason: 'cancelled' };
      throw err;
    } finally {
      s.watchers--;
      s.unwatchedSince = Date.now();
    }
  }

  async export(input: SessionInput): Promise<ExportResult> {
    const s = this.session(input.sessionId);
    try {
      return exportSchema.parse(await this.call(s, 'POST', '/v1/export', {}, true));
    } catch (err) {
      if (err instanceof HttpFailure && err.status === 410) throw lost(`trainer session ${s.id}: ${err.message}`);
      throw err;
    }
  }

  /** Checkpoints and stops the session; `final`: the run is over, its retained announcement is cleared too. */
  async release(input: SessionInput & { final?: boolean }): Promise<{ released: boolean }> {
    const s = this.sessions.get(input.sessionId);
    if (!s) return { released: false };
    await this.stop(s);
    if (input.final && this.settings.bus?.connected) await this.settings.bus.clear(s.jobId).catch(() => undefined);
    return { released: true };
  }

  /** SIGTERM: take no new run; running updates finish; every session checkpoints and stops (watches report it). */
  beginDrain(): void {
    if (this.drainingSince === null) this.drainingSince = Date.now();
    this.wakeSlots();
  }

  async drain(timeoutMs: number): Promise<void> {
    this.beginDrain();
    await Promise.all([...this.sessions.values()].map(async (s) => {
      await Promise.all(s.updating);
      await this.stop(s, timeoutMs);
    }));
    clearInterval(this.janitor);
  }
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ') || '(no output)';
}

// ---- activities ---------------------------------------------------------------------------------------------------

function heartbeater(): () => void {
  const ctx = Context.current();
  return () => ctx.heartbeat();
}

/** The shared queue's one activity. */
export function createAcquireActivities(host: TrainerHost) {
  return {
    async acquireTrainerHost(input: AcquireInput): Promise<HostLease> {
      return host.acquire(input, heartbeater());
    },
  };
}

/** This host's own queue. */
export function createHostActivities(host: TrainerHost) {
  return {
    async grpoUpdate(input: UpdateInput): Promise<UpdateResult> {
      const ctx = Context.current();
      const timer = setInterval(() => ctx.heartbeat({ step: input.step }), 1_000);
      try {
        return await host.update(input, ctx.cancellationSignal);
      } finally {
        clearInterval(timer);
      }
    },
    async watchTrainerHost(input: SessionInput): Promise<WatchResult> {
      const ctx = Context.current();
      return host.watch(input, () => ctx.heartbeat(), ctx.cancelled);
    },
    async exportPolicy(input: SessionInput): Promise<ExportResult> {
      const ctx = Context.current();
      const timer = setInterval(() => ctx.heartbeat(), 1_000);
      try {
        return await host.export(input);
      } finally {
        clearInterval(timer);
      }
    },
    async releaseTrainerHost(input: SessionInput & { final?: boolean }): Promise<{ released: boolean }> {
      const ctx = Context.current();
      const timer = setInterval(() => ctx.heartbeat(), 1_000);
      try {
        return await host.release(input);
      } finally {
        clearInterval(timer);
      }
    },
  };
}

export type AcquireActivities = ReturnType<typeof createAcquireActivities>;
export type HostActivities = ReturnType<typeof createHostActivities>;
