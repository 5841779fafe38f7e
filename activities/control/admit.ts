/**
 * The admission engine behind awaitAdmission and admitAndSubmit: quotes, ranking, per-owner fair share, the capped
 * backends' slots (their admission entities, shared by every replica) and per-backend submit locks of this process.
 */
import { Context, ApplicationFailure } from '@temporalio/activity';
import type { TrainingJobSpec } from '../../jobspec/schema';
import { jobWorkflowId } from '../../common/names';
import { BackendError, type Backend, type DeploymentRef } from '../backends/types';
import { rankCandidates, type CandidateLook, type Look } from './admission';
import { FairAdmission } from './fair-admission';
import { CapacityGate } from './capacity';
import { asFailure } from './failures';
import { pause } from './pause';
import type { AdmissionInput, AdmissionResult, ControlDeps } from './types';

/** How often a job near the head of a capped backend's queue asks its admission entity again. */
const NEAR_POLL_MS = 1000;

export type SlotLook = { kind: 'granted' } | (Look & { near: boolean });

export function createAdmission(deps: ControlDeps, backend: (name: string) => Backend) {
  // Free slots go to waiting owners in round robin (issue 8). Waiters that stop asking (their activity moved to another
  // worker) expire after three polls, and never sooner than 30 s: a loaded worker may be slow to start the next poll.
  const fair = deps.fairness === 'off' ? undefined : new FairAdmission(Math.max(30_000, deps.config.admission_poll_seconds * 3000 + 10_000));

  // ---- global max_concurrent: the backend's admission entity (workflows/backend-capacity.ts) ----
  const gate = deps.capacity ?? new CapacityGate(deps.config.admission.reclaim_seconds);
  const capOf = (name: string): number | undefined => deps.config.backends[name]?.max_concurrent;
  // A grant waits this long for its job to come back (a few admission polls), then goes to the next waiter.
  const claimMs = Math.max(30_000, deps.config.admission_poll_seconds * 3000 + 10_000);

  /** A capped backend's slot for the job: undefined when the backend has no max_concurrent (nothing to ask). */
  async function takeSlot(name: string, spec: TrainingJobSpec, attempt: number | undefined): Promise<SlotLook | undefined> {
    const cap = capOf(name);
    if (cap === undefined) return undefined;
    const r = await gate.acquire(name, {
      workflowId: jobWorkflowId(spec.job_id),
      owner: spec.owner_did,
      cap,
      claimMs,
      ...(attempt !== undefined && { attempt }),
    });
    if (r.granted) return { kind: 'granted' };
    // near: among the next 2 × cap to be granted, so it asks again soon (its grant may come from another replica).
    return { kind: 'busy', near: r.position <= 2 * Math.max(1, r.cap), detail: `max_concurrent ${r.cap} reached across all orchestrators (${r.held} held); place ${r.position} of ${r.waiting} in the owners' round robin` };
  }

  /** Gives a capped backend's slot back (and leaves its queue). */
  async function giveBack(name: string, jobId: string, attempt?: number): Promise<void> {
    if (capOf(name) !== undefined) await gate.release(name, { workflowId: jobWorkflowId(jobId), ...(attempt !== undefined && { attempt }) });
  }

  /** Admitted on `taken`: the job leaves the queues of the other capped candidates it may wait in. */
  async function leaveOthers(input: AdmissionInput, taken: string, attempt: number): Promise<void> {
    for (const name of new Set(input.candidates)) if (name !== taken) await giveBack(name, input.spec.job_id, attempt);
  }

  /**
   * Attempt n begins: slots the job still holds for earlier attempts go back. An attempt whose submit failed untyped
   * (the API down, its answer lost) keeps its slot so that the retried submit reuses it; when that attempt then fails
   * LOST and the next one goes to another backend, nothing else would free it until the job ends. Once per job and
   * attempt on this replica (a repeated release is answered by the entity's validator anyway).
   */
  const leftEarlier = new Set<string>();
  async function leaveEarlierAttempts(input: AdmissionInput, attempt: number): Promise<void> {
    const key = `${input.spec.job_id}#${attempt}`;
    if (attempt <= 1 || leftEarlier.has(key)) return;
    for (const name of new Set(input.candidates)) await giveBack(name, input.spec.job_id, attempt - 1);
    if (leftEarlier.size >= 10_000) leftEarlier.clear();
    leftEarlier.add(key);
  }

  /** Closes a deployment (nothing of it left running or billing) and lets the owner due on its backend look. */
  async function release(b: Backend, deployment: DeploymentRef): Promise<void> {
    try {
      await b.close(deployment);
    } catch (err) {
      throw asFailure(err);
    }
    await giveBack(deployment.backend, deployment.jobId, deployment.attempt);
    fair?.wakeDue(deployment.backend); // a slot freed: the owner due there looks now
  }

  // Per-backend admission locks of this worker process (a chain of promises per backend name).
  const locks = new Map<string, Promise<unknown>>();
  function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const run = (locks.get(name) ?? Promise.resolve()).then(fn, fn);
    locks.set(name, run.catch(() => undefined));
    return run;
  }

  /**
   * Whether a backend would take the job now: room (at a price), no room (and why), or a refusal of this job. A quote
   * that fails or takes longer than admission.quote_timeout_ms counts as no room this round: one unreachable backend
   * API must not hold up the others.
   */
  async function look(name: string, spec: TrainingJobSpec): Promise<Look> {
    const ms = deps.config.admission.quote_timeout_ms;
    let timer: NodeJS.Timeout | undefined;
    try {
      const quote = await Promise.race([
        backend(name).quote(spec),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no quote within ${ms} ms`)), ms);
        }),
      ]);
      return quote.available ? { kind: 'room', hourlyUsd: quote.hourlyUsd, ...(quote.detail && { detail: quote.detail }) } : { kind: 'busy', detail: quote.detail ?? 'no capacity' };
    } catch (err) {
      if (err instanceof BackendError && err.failureClass === 'REJECTED') return { kind: 'refused', detail: err.message };
      if (err instanceof ApplicationFailure) throw err; // a backend this worker does not have
      return { kind: 'busy', detail: `quote failed: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
    }
  }

  /** The candidates in the order to try them: from `preferred` on, wrapping around. */
  function rotation(input: AdmissionInput): { index: number; name: string }[] {
    const n = input.candidates.length;
    return input.candidates.map((_, k) => {
      const index = (input.preferred + k) % n;
      return { index, name: input.candidates[index]! };
    });
  }

  function allRefused(refusals: string[], input: AdmissionInput): void {
    if (refusals.length === input.candidates.length) {
      throw ApplicationFailure.create({ message: refusals.join('; '), type: 'REJECTED', nonRetryable: true });
    }
  }

  /** Quotes every candidate (at once) and ranks them (activities/control/admission.ts). */
  async function ranking(input: AdmissionInput, attempt: number) {
    const looks: CandidateLook[] = await Promise.all(
      rotation(input).map(async ({ index, name }) => ({ index, name, look: await look(name, input.spec) })),
    );
    const a = deps.config.admission;
    return rankCandidates({
      looks,
      order: a.order,
      budget: a.budget,
      region: input.spec.backend.region,
      budgetUsd: input.budgetUsd ?? Infinity,
      maxHours: input.spec.resources.max_hours,
      pinPreferred: attempt > 1,
    });
  }

  /** One pass over the candidates: the first admissible one, or why none is. */
  async function firstAvailable(input: AdmissionInput): Promise<AdmissionResult | { waits: string[] }> {
    const r = await ranking(input, 1);
    allRefused(r.refusals, input);
    const first = r.order[0] ?? r.overBudget[0];
    if (first) return { index: first.index, hourlyUsd: 'hourlyUsd' in first ? first.hourlyUsd : 0 };
    return { waits: r.waits };
  }

  /**
   * awaitAdmission when a candidate has max_concurrent: polls the candidates' admission entities (and the others'
   * quotes) until one grants a slot; the entity picks whose turn it is, so no local round robin applies. Woken early
   * when a call on this replica frees a slot that went to this job.
   */
  async function awaitSlot(input: AdmissionInput & { pollSeconds: number; attempt?: number }): Promise<AdmissionResult> {
    const ctx = Context.current();
    let r: Awaited<ReturnType<typeof ranking>> | undefined;
    let rankedAt = 0;
    for (;;) {
      // The backends are quoted every admission_poll_seconds; the quicker polls near the head only ask the entity.
      if (!r || Date.now() - rankedAt >= input.pollSeconds * 1000) {
        r = await ranking(input, 1);
        rankedAt = Date.now();
        allRefused(r.refusals, input);
      }
      const waits = [...r.waits];
      let near = false;
      for (const c of r.order) {
        const slot = await takeSlot(c.name, input.spec, input.attempt);
        if (slot && 'near' in slot) near ||= slot.near;
        if (slot?.kind === 'granted' || (!slot && (!fair || fair.mayAdmit(c.name, input.spec.owner_did)))) return { index: c.index, hourlyUsd: c.hourlyUsd };
        waits.push(`${c.name}: ${slot?.kind === 'busy' ? slot.detail : slot ? 'refused' : 'fair share: other owners are due first'}`);
      }
      const over = r.overBudget[0];
      if (over && r.order.length === 0) return { index: over.index, hourlyUsd: 0 };
      ctx.heartbeat({ waiting: waits });
      // Woken at once by a release on this replica that granted it the slot; a grant made on another replica is seen
      // at the next poll: within a second for the jobs near the head of the queue, else admission_poll_seconds.
      const wake = gate.wakeup(jobWorkflowId(input.spec.job_id));
      try {
        await pause(ctx, Math.min(input.pollSeconds * 1000, near ? NEAR_POLL_MS : Infinity), wake.promise); // rejects when cancelled
      } finally {
        wake.cancel();
      }
    }
  }

  return {
    fair, capOf, takeSlot, giveBack, leaveOthers, leaveEarlierAttempts, release, withLock, look, ranking, allRefused, firstAvailable, awaitSlot,
  };
}

export type Admission = ReturnType<typeof createAdmission>;
