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
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { ActivitySlotInfo, CustomSlotSupplier } from '@temporalio/worker';
import { RL_FAILURE } from '../../../common/rl-names';
import { verifyGroups } from '../rescore';
import { VerificationPicker, verifyRollouts } from '../verify';
import { TaskRegistry } from '../tasks';
import { recordRejections, recordRlStep, recordVerification } from '../metrics';
import type { AcquireInput, ExportResult, HostLease, PolicyRef, SessionInput, StepLine, UpdateInput, UpdateResult, WatchResult } from '../types';
import { spawnSession, stopProcess, type Session } from './session';
import type { GrpoHostSettings } from './settings';
import { SlotPool } from './slots';
import { callSession, exportSchema, HttpFailure, lost, stepSchema, storedSchema, tail } from './wire';
import type { UpdateRequestBody } from './wire-schemas';

export class TrainerHost {
  private readonly sessions = new Map<string, Session>();
  private readonly byRun = new Map<string, Promise<Session>>();
  private readonly slots: SlotPool;
  private janitor: NodeJS.Timeout | undefined;
  private drainingSince: number | null = null;
  private tasks: TaskRegistry | undefined;
  private readonly picker = new VerificationPicker();

  constructor(readonly settings: GrpoHostSettings) {
    this.slots = new SlotPool(settings.slots, () => this.draining);
  }

  get ownQueue(): string {
    return this.settings.hostQueue;
  }

  get held(): number {
    return this.sessions.size;
  }

  get draining(): boolean {
    return this.drainingSince !== null;
  }

  /** The shared queue's activity slots: one per free policy slot (host/slots.ts). */
  slotSupplier(): CustomSlotSupplier<ActivitySlotInfo> {
    return this.slots.supplier();
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
    const slot = this.slots.take();
    if (slot === undefined) throw new Error(`host ${this.settings.hostId} has no free slot`); // retried elsewhere
    let s: Session;
    try {
      s = await spawnSession(this.settings, input, slot, heartbeat);
    } catch (err) {
      this.slots.give(slot);
      throw err;
    }
    void s.exitCode.then(() => {
      s.exited = true;
      this.forget(s);
    });
    this.sessions.set(s.id, s);
    console.log(`[grpo] session ${s.id}: job ${input.jobId} on slot ${slot}, policy version ${s.policy.version}${s.resumedFrom !== null ? ` (resumed from checkpoint ${s.resumedFrom})` : ''}`);
    return s;
  }

  private forget(s: Session): void {
    this.byRun.delete(s.runId);
    if (this.sessions.get(s.id) === s) {
      this.sessions.delete(s.id);
      this.slots.give(s.slot);
    } else this.slots.wake();
  }

  /** SIGTERM: the process checkpoints its current version and exits; SIGKILL after the timeout. */
  private async stop(s: Session, timeoutMs = 120_000): Promise<number | null> {
    const code = await stopProcess(s, timeoutMs);
    this.forget(s);
    return code;
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
      async (ids) => storedSchema.parse(await callSession(s, 'POST', '/v1/rollout-texts', { rollout_ids: ids }, true, signal)).rollouts,
      (ref) => tasks.source(ref.taskType).task(ref.seed),
    );
    // TOPLOC and logprobs of a share of the rest (verify.ts); the call also tells the session whom to refuse uploads.
    const checked = await verifyRollouts(rescored, input.verify, input.refusedWorkers ?? [], this.picker, (body) =>
      callSession(s, 'POST', '/v1/verify-rollouts', body, true, signal),
    );
    rejected.push(...checked.rejected);
    const dropped = new Set(checked.rejected.map((r) => r.rolloutId));
    const kept = rescored.filter((g) => !dropped.has(g.rolloutId));
    if (checked.checked) recordVerification(checked.checked, checked.seconds);
    recordRejections(rejected);
    for (const r of rejected) console.warn(`[grpo] step ${input.step}: rejected rollout ${r.rolloutId} of worker ${r.worker} (${r.reason}): ${r.detail}`);
    const groups = kept.length ? kept : input.groups.map((g) => ({ ...g, advantages: g.advantages.map(() => 0) }));
    const body: UpdateRequestBody = {
      step: input.step,
      groups: groups.map((g) => ({ rollout_id: g.rolloutId, advantages: g.advantages })),
      rollout_tokens_per_s: input.rolloutTokensPerS,
    };
    const run = callSession(s, 'POST', '/v1/update', body, true, signal);
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
      return exportSchema.parse(await callSession(s, 'POST', '/v1/export', {}, true));
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
    this.slots.wake();
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
