/**
 * Per-owner fairness of admission (issue 8): when jobs wait for a backend's capacity (QUEUED), free slots go to the
 * owners in round robin — the waiting owner served least recently first (one never served before goes first), and
 * within an owner its oldest waiting job — so one owner's flood of jobs cannot starve the others.
 *
 * `OwnerRoundRobin` is the pure rule (no clock, no I/O: time is passed in). `FairAdmission` keeps one per backend in
 * the worker process and lets waiting jobs be woken as soon as they are due (a slot was granted or freed), instead of
 * at their next admission poll. The control activities consult it under each backend's admission lock
 * (activities/control/activities.ts): a job takes a free slot only when its owner is due.
 *
 * Scope: the waiting set is what this worker process sees. With one orchestrator worker it is exact; with several,
 * each one rotates the owners of the jobs it sees, which still starves no one. Entries of jobs that stop asking
 * (cancelled, or their activity moved to another worker) expire after `ttlMs`.
 */

export interface Waiter {
  jobId: string;
  owner: string;
  /** When the job first asked (ms); its place within its owner's jobs. */
  since: number;
  /** When it last asked (ms); entries older than the TTL are dropped. */
  seen: number;
}

export class OwnerRoundRobin {
  private readonly waiters = new Map<string, Waiter>();
  /** Owner → sequence number of its last grant; owners never granted are absent (they come first). */
  private readonly lastGrant = new Map<string, number>();
  /** Owner → when it first waited (tie-break among owners never granted: first come first). */
  private readonly firstSeen = new Map<string, number>();
  private seq = 0;

  constructor(private readonly ttlMs: number) {}

  /** The job waits (or still waits) for a slot. */
  wait(jobId: string, owner: string, now: number): void {
    const w = this.waiters.get(jobId);
    if (w) w.seen = now;
    else this.waiters.set(jobId, { jobId, owner, since: now, seen: now });
    if (!this.firstSeen.has(owner)) this.firstSeen.set(owner, now);
  }

  /** The job no longer waits here (admitted elsewhere, or gone). */
  leave(jobId: string): void {
    this.waiters.delete(jobId);
  }

  /** Drops waiters not seen within the TTL. */
  expire(now: number): void {
    for (const [id, w] of this.waiters) if (now - w.seen > this.ttlMs) this.waiters.delete(id);
  }

  /** Waiting owners in the order they are due: least recently granted first, never-granted ones by first wait. */
  dueOrder(now: number): string[] {
    this.expire(now);
    const owners = [...new Set([...this.waiters.values()].map((w) => w.owner))];
    const key = (o: string): [number, number] => [this.lastGrant.get(o) ?? -1, this.firstSeen.get(o) ?? 0];
    return owners.sort((a, b) => {
      const [ga, fa] = key(a);
      const [gb, fb] = key(b);
      return ga - gb || fa - fb || (a < b ? -1 : a > b ? 1 : 0);
    });
  }

  /** The job that should take the next free slot, if anyone waits. */
  next(now: number): Waiter | undefined {
    const owner = this.dueOrder(now)[0];
    if (owner === undefined) return undefined;
    let best: Waiter | undefined;
    for (const w of this.waiters.values()) {
      if (w.owner === owner && (!best || w.since < best.since || (w.since === best.since && w.jobId < best.jobId))) best = w;
    }
    return best;
  }

  /**
   * May a job of this owner take a free slot now? Yes when no one waits, or when its owner is the one due (any of
   * that owner's jobs may take it; the oldest one is woken first).
   */
  mayAdmit(owner: string, now: number): boolean {
    const due = this.dueOrder(now);
    return due.length === 0 || due[0] === owner;
  }

  /** The owner of a waiting job. */
  ownerOf(jobId: string): string | undefined {
    return this.waiters.get(jobId)?.owner;
  }

  /** The job took a slot: its owner goes to the back of the round. */
  granted(jobId: string, owner: string): void {
    this.waiters.delete(jobId);
    this.lastGrant.set(owner, ++this.seq);
  }

  /** How many jobs wait (after expiry), per owner. */
  waiting(now: number): Map<string, number> {
    this.expire(now);
    const counts = new Map<string, number>();
    for (const w of this.waiters.values()) counts.set(w.owner, (counts.get(w.owner) ?? 0) + 1);
    return counts;
  }
}

/** One round robin per backend, plus wake-ups for waiting jobs whose owner became due. */
export class FairAdmission {
  private readonly queues = new Map<string, OwnerRoundRobin>();
  private readonly wakers = new Map<string, Set<() => void>>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  private queue(backend: string): OwnerRoundRobin {
    let q = this.queues.get(backend);
    if (!q) {
      q = new OwnerRoundRobin(this.ttlMs);
      this.queues.set(backend, q);
    }
    return q;
  }

  wait(backends: readonly string[], jobId: string, owner: string): void {
    for (const b of backends) this.queue(b).wait(jobId, owner, this.now());
  }

  mayAdmit(backend: string, owner: string): boolean {
    return this.queue(backend).mayAdmit(owner, this.now());
  }

  /** The job was admitted on `backend`: it leaves every queue, its owner moves to the back, the next owner is woken. */
  granted(backend: string, jobId: string, owner: string): void {
    this.queue(backend).granted(jobId, owner);
    for (const q of this.queues.values()) q.leave(jobId);
    this.wakeDue(backend);
  }

  leave(jobId: string): void {
    for (const q of this.queues.values()) q.leave(jobId);
    this.wakers.delete(jobId);
  }

  /**
   * A slot on `backend` may have freed: wake the job due next there (the oldest waiting job of the owner due), and
   * only that one — ten thousand queued jobs must not all look at once. Its admission wakes the next in turn.
   */
  wakeDue(backend: string): void {
    const next = this.queues.get(backend)?.next(this.now());
    if (!next) return;
    for (const fn of this.wakers.get(next.jobId) ?? []) fn();
  }

  /** Resolves when the job should look again (its owner became due somewhere), or never; `cancel` to stop waiting. */
  wakeup(jobId: string): { promise: Promise<void>; cancel: () => void } {
    let fn: () => void = () => undefined;
    const promise = new Promise<void>((resolve) => (fn = resolve));
    let set = this.wakers.get(jobId);
    if (!set) {
      set = new Set();
      this.wakers.set(jobId, set);
    }
    set.add(fn);
    const cancel = (): void => {
      const s = this.wakers.get(jobId);
      s?.delete(fn);
      if (s && s.size === 0) this.wakers.delete(jobId);
    };
    return { promise, cancel };
  }

  /** Jobs waiting per backend and owner (for logs and tests). */
  snapshot(): Record<string, Record<string, number>> {
    return Object.fromEntries([...this.queues].map(([b, q]) => [b, Object.fromEntries(q.waiting(this.now()))]));
  }
}
