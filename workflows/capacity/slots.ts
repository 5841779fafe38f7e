/**
 * The slots of one backend's `max_concurrent`, as the admission entity (workflows/backend-capacity.ts) keeps them for
 * every orchestrator replica at once. Pure: no clock (time is passed in), no I/O, plain JSON state (it travels through
 * continue-as-new), so the grant decision, the owners' order and the reclaim are unit-tested on their own.
 *
 * The rule:
 *   - A job (its workflow id) asks for a slot. While fewer than `cap` slots are held, the next waiter in fair order
 *     gets one at once; the others wait.
 *   - Fair order: owners in round robin — the waiting owner granted least recently first (an owner never granted, or
 *     holding and waiting nothing since, counts as never granted; among those the one waiting longest) — and within
 *     an owner first come, first served. One owner's flood therefore cannot starve another owner, whatever replica
 *     each job's activity runs on.
 *   - Grants are made eagerly, when a slot frees: the job learns of it at its next ask. A grant nobody picks up by
 *     `claimBy` (the job was admitted elsewhere, cancelled, or vanished) is withdrawn and goes to the next waiter.
 *   - A slot is freed by its job (release: the deployment was closed, or the submit failed), by a later attempt of the
 *     same job (an attempt's deployment is always closed before the next attempt starts), or by the reclaim: the
 *     entity periodically checks that each holder's workflow still runs.
 */

export interface Holder {
  workflowId: string;
  owner: string;
  /** The attempt it is held for (absent while only waiting for admission, before the attempt number was known). */
  attempt?: number;
  grantedAt: number;
  /** The job has been told (it asked and got `granted`); until then the grant is withdrawn at claimBy. */
  seen: boolean;
  claimBy: number;
}

export interface Waiter {
  workflowId: string;
  owner: string;
  attempt?: number;
  /** When it first asked: its place among its owner's jobs. */
  since: number;
  /** How long a grant waits for it to come back and take it (a few of its admission polls). */
  claimMs: number;
}

export interface CapacityState {
  cap: number;
  holders: Holder[];
  waiters: Waiter[];
  /** Owner → sequence number of its last grant, for owners that hold or wait. */
  lastGrant: Record<string, number>;
  seq: number;
}

export interface AcquireRequest {
  workflowId: string;
  owner: string;
  attempt?: number;
  /** The backend's max_concurrent in the asking replica's config; the latest one asked with wins. */
  cap: number;
  claimMs: number;
}

export type AcquireResult =
  | { granted: true; held: number; cap: number }
  | { granted: false; position: number; waiting: number; held: number; cap: number };

export interface ReleaseRequest {
  workflowId: string;
  /** Frees the job's slot of this attempt or an earlier one (absent: whatever it holds), and its place in the queue. */
  attempt?: number;
}

export function emptyCapacity(cap: number): CapacityState {
  return { cap, holders: [], waiters: [], lastGrant: {}, seq: 0 };
}

const sameOrEarlier = (x: number | undefined, attempt: number | undefined): boolean => attempt === undefined || x === undefined || x <= attempt;

/** The waiting owners' due order and, within each, the jobs' order, as one list: who gets the next free slots. */
export function fairOrder(s: CapacityState, limit = Infinity): Waiter[] {
  const byOwner = new Map<string, Waiter[]>();
  for (const w of s.waiters) {
    const q = byOwner.get(w.owner) ?? [];
    q.push(w);
    byOwner.set(w.owner, q);
  }
  for (const q of byOwner.values()) q.sort((a, b) => a.since - b.since || (a.workflowId < b.workflowId ? -1 : a.workflowId > b.workflowId ? 1 : 0));
  const last = new Map(Object.entries(s.lastGrant));
  let seq = s.seq;
  const out: Waiter[] = [];
  while (out.length < limit && byOwner.size > 0) {
    let best: { owner: string; key: [number, number] } | undefined;
    for (const [owner, q] of byOwner) {
      const key: [number, number] = [last.get(owner) ?? -1, q[0]!.since];
      if (!best || key[0] < best.key[0] || (key[0] === best.key[0] && (key[1] < best.key[1] || (key[1] === best.key[1] && owner < best.owner))))
        best = { owner, key };
    }
    const q = byOwner.get(best!.owner)!;
    out.push(q.shift()!);
    if (q.length === 0) byOwner.delete(best!.owner);
    last.set(best!.owner, ++seq);
  }
  return out;
}

/** Forgets the grant order of owners that neither hold nor wait (they come back as never granted). */
function pruneOwners(s: CapacityState): void {
  const active = new Set([...s.holders, ...s.waiters].map((x) => x.owner));
  for (const o of Object.keys(s.lastGrant)) if (!active.has(o)) delete s.lastGrant[o];
}

/** Grants free slots to waiters in fair order; returns the workflow ids newly granted. */
export function fill(s: CapacityState, now: number): string[] {
  const granted: string[] = [];
  const free = s.cap - s.holders.length;
  if (free > 0 && s.waiters.length > 0) {
    for (const w of fairOrder(s, free)) {
      s.waiters = s.waiters.filter((x) => x.workflowId !== w.workflowId);
      s.holders.push({
        workflowId: w.workflowId,
        owner: w.owner,
        ...(w.attempt !== undefined && { attempt: w.attempt }),
        grantedAt: now,
        seen: false,
        claimBy: now + w.claimMs,
      });
      s.lastGrant[w.owner] = ++s.seq;
      granted.push(w.workflowId);
    }
    pruneOwners(s);
  }
  return granted;
}

/**
 * A waiter's place in fairOrder without building it (O(waiters), for long queues): the round robin serves the owners
 * in rounds, in their due order, one job each; the k-th job (from 0) of owner o comes after min(n, k) jobs of every
 * owner with n waiting, and after the owners due before o that still have a k-th job.
 */
export function positionOf(s: CapacityState, workflowId: string): number {
  const me = s.waiters.find((w) => w.workflowId === workflowId);
  if (!me) return 0;
  const count = new Map<string, number>();
  const firstSince = new Map<string, number>();
  let rank = 0;
  for (const w of s.waiters) {
    count.set(w.owner, (count.get(w.owner) ?? 0) + 1);
    firstSince.set(w.owner, Math.min(firstSince.get(w.owner) ?? Infinity, w.since));
    if (w.owner === me.owner && (w.since < me.since || (w.since === me.since && w.workflowId < me.workflowId))) rank++;
  }
  const key = (o: string): [number, number] => [s.lastGrant[o] ?? -1, firstSince.get(o)!];
  const dueBefore = (o: string): boolean => {
    const [a, b] = [key(o), key(me.owner)];
    return a[0] < b[0] || (a[0] === b[0] && (a[1] < b[1] || (a[1] === b[1] && o < me.owner)));
  };
  let position = 1;
  for (const [o, n] of count) {
    position += Math.min(n, rank);
    if (o !== me.owner && n > rank && dueBefore(o)) position++;
  }
  return position;
}

function queued(s: CapacityState, workflowId: string): AcquireResult {
  return { granted: false, position: positionOf(s, workflowId), waiting: s.waiters.length, held: s.holders.length, cap: s.cap };
}

/**
 * A job asks for a slot (again). Returns what it gets and the workflow ids granted a slot by this call (the asker
 * included when it got one).
 */
export function acquire(s: CapacityState, r: AcquireRequest, now: number): { result: AcquireResult; granted: string[] } {
  s.cap = r.cap;
  // A later attempt of the same job: the earlier attempt's deployment was closed before it began.
  if (r.attempt !== undefined)
    s.holders = s.holders.filter((h) => h.workflowId !== r.workflowId || h.attempt === undefined || h.attempt >= r.attempt!);
  const granted = expire(s, now);
  const held = s.holders.find((h) => h.workflowId === r.workflowId);
  if (!held) {
    const w = s.waiters.find((x) => x.workflowId === r.workflowId);
    if (w) {
      w.claimMs = r.claimMs;
      if (r.attempt !== undefined) w.attempt = r.attempt;
    } else {
      s.waiters.push({
        workflowId: r.workflowId,
        owner: r.owner,
        ...(r.attempt !== undefined && { attempt: r.attempt }),
        since: now,
        claimMs: r.claimMs,
      });
    }
    granted.push(...fill(s, now));
  }
  const mine = s.holders.find((h) => h.workflowId === r.workflowId);
  if (!mine) return { result: queued(s, r.workflowId), granted };
  mine.seen = true;
  if (r.attempt !== undefined) mine.attempt = r.attempt;
  return { result: { granted: true, held: s.holders.length, cap: s.cap }, granted };
}

/**
 * What `acquire` would answer when it would change nothing: the job already waits, nothing is free, no grant is due
 * to expire, the cap is the same. The entity answers such polls without recording them (an Update's validator),
 * so jobs waiting in a long queue cost its history nothing. Undefined: acquire must run.
 */
export function unchangedPoll(s: CapacityState, r: AcquireRequest, now: number): AcquireResult | undefined {
  if (s.cap !== r.cap || s.holders.length < s.cap) return undefined;
  if (s.holders.some((h) => h.workflowId === r.workflowId || (!h.seen && h.claimBy <= now))) return undefined;
  const w = s.waiters.find((x) => x.workflowId === r.workflowId);
  if (!w || w.attempt !== r.attempt || w.claimMs !== r.claimMs) return undefined;
  return queued(s, r.workflowId);
}

/** Whether the entity knows the job at all (holds or queues it): a release of anything else changes nothing. */
export function knows(s: CapacityState, workflowId: string): boolean {
  return s.holders.some((h) => h.workflowId === workflowId) || s.waiters.some((w) => w.workflowId === workflowId);
}

/** The job frees its slot (and leaves the queue); returns the workflow ids granted the freed slots. */
export function release(s: CapacityState, r: ReleaseRequest, now: number): { released: number; granted: string[] } {
  const before = s.holders.length + s.waiters.length;
  s.holders = s.holders.filter((h) => h.workflowId !== r.workflowId || !sameOrEarlier(h.attempt, r.attempt));
  s.waiters = s.waiters.filter((w) => w.workflowId !== r.workflowId || !sameOrEarlier(w.attempt, r.attempt));
  const released = before - s.holders.length - s.waiters.length;
  const granted = [...expire(s, now), ...fill(s, now)];
  pruneOwners(s);
  return { released, granted };
}

/** Withdraws grants nobody picked up in time (their jobs leave the queue too); returns the ids granted instead. */
export function expire(s: CapacityState, now: number): string[] {
  const stale = s.holders.filter((h) => !h.seen && h.claimBy <= now);
  if (stale.length === 0) return [];
  s.holders = s.holders.filter((h) => h.seen || h.claimBy > now);
  const granted = fill(s, now);
  pruneOwners(s);
  return granted;
}

/** Frees everything held or queued by jobs whose workflows no longer run; returns the ids granted instead. */
export function reclaim(s: CapacityState, ended: readonly string[], now: number): string[] {
  const gone = new Set(ended);
  s.holders = s.holders.filter((h) => !gone.has(h.workflowId));
  s.waiters = s.waiters.filter((w) => !gone.has(w.workflowId));
  const granted = [...expire(s, now), ...fill(s, now)];
  pruneOwners(s);
  return granted;
}

/** When the entity must look again by itself: the earliest grant that expires unseen. */
export function nextExpiry(s: CapacityState): number | undefined {
  const times = s.holders.filter((h) => !h.seen).map((h) => h.claimBy);
  return times.length ? Math.min(...times) : undefined;
}

export function isIdle(s: CapacityState): boolean {
  return s.holders.length === 0 && s.waiters.length === 0;
}

/** The state as continue-as-new carries it: owners and jobs as rows, each owner's did written once (long queues). */
export interface PackedCapacity {
  cap: number;
  seq: number;
  owners: string[];
  /** [workflowId, owner index, attempt or -1, grantedAt, seen 0|1, claimBy] */
  holders: [string, number, number, number, number, number][];
  /** [workflowId, owner index, attempt or -1, since, claimMs] */
  waiters: [string, number, number, number, number][];
  /** [owner index, seq] */
  lastGrant: [number, number][];
}

export function packCapacity(s: CapacityState): PackedCapacity {
  const owners: string[] = [];
  const index = new Map<string, number>();
  const ix = (o: string): number => {
    let i = index.get(o);
    if (i === undefined) index.set(o, (i = owners.push(o) - 1));
    return i;
  };
  return {
    cap: s.cap,
    seq: s.seq,
    holders: s.holders.map((h) => [h.workflowId, ix(h.owner), h.attempt ?? -1, h.grantedAt, h.seen ? 1 : 0, h.claimBy]),
    waiters: s.waiters.map((w) => [w.workflowId, ix(w.owner), w.attempt ?? -1, w.since, w.claimMs]),
    lastGrant: Object.entries(s.lastGrant).map(([o, seq]) => [ix(o), seq]),
    owners,
  };
}

export function unpackCapacity(p: PackedCapacity): CapacityState {
  const attempt = (a: number): { attempt?: number } => (a >= 0 ? { attempt: a } : {});
  return {
    cap: p.cap,
    seq: p.seq,
    holders: p.holders.map(([workflowId, o, a, grantedAt, seen, claimBy]) => ({
      workflowId,
      owner: p.owners[o]!,
      ...attempt(a),
      grantedAt,
      seen: seen === 1,
      claimBy,
    })),
    waiters: p.waiters.map(([workflowId, o, a, since, claimMs]) => ({ workflowId, owner: p.owners[o]!, ...attempt(a), since, claimMs })),
    lastGrant: Object.fromEntries(p.lastGrant.map(([o, seq]) => [p.owners[o]!, seq])),
  };
}

/** One request of a batch: the entity takes each replica's pending asks and gives-back in one Update. */
export type SlotOp = { acquire: AcquireRequest } | { release: ReleaseRequest };
export type SlotOpResult = AcquireResult | { released: number };

/** Applies a batch in order; returns each op's answer and every workflow id granted a slot on the way. */
export function applyBatch(s: CapacityState, ops: readonly SlotOp[], now: number): { results: SlotOpResult[]; granted: string[] } {
  const granted: string[] = [];
  const results = ops.map((op): SlotOpResult => {
    if ('acquire' in op) {
      const r = acquire(s, op.acquire, now);
      granted.push(...r.granted);
      return r.result;
    }
    const r = release(s, op.release, now);
    granted.push(...r.granted);
    return { released: r.released };
  });
  return { results, granted: [...new Set(granted)] };
}

/** The batch's answers when it would change nothing (only polls of waiting jobs and releases of unknown ones). */
export function unchangedBatch(s: CapacityState, ops: readonly SlotOp[], now: number): SlotOpResult[] | undefined {
  const results: SlotOpResult[] = [];
  for (const op of ops) {
    if ('release' in op) {
      if (knows(s, op.release.workflowId)) return undefined;
      results.push({ released: 0 });
    } else {
      const same = unchangedPoll(s, op.acquire, now);
      if (!same) return undefined;
      results.push(same);
    }
  }
  return results;
}
