/** The admission entity's pure rule (workflows/capacity/slots.ts): grants, the owners' round robin, expiry, reclaim. */
import { mulberry32 } from '../../common/prng';
import { acquire, emptyCapacity, expire, fairOrder, nextExpiry, packCapacity, positionOf, reclaim, release, unchangedPoll, unpackCapacity, type AcquireRequest, type CapacityState } from '../../workflows/capacity/slots';

const req = (workflowId: string, owner: string, extra: Partial<AcquireRequest> = {}): AcquireRequest => ({
  workflowId,
  owner,
  cap: 1,
  claimMs: 10_000,
  ...extra,
});

/** Releases the holder, then lets the next grant be taken; returns who got each slot, in order. */
function drain(s: CapacityState, now: number): string[] {
  const order: string[] = [];
  let t = now;
  while (s.holders.length > 0) {
    const h = s.holders[0]!;
    const { granted } = release(s, { workflowId: h.workflowId }, ++t);
    for (const id of granted) {
      order.push(id);
      expect(acquire(s, req(id, s.holders.find((x) => x.workflowId === id)!.owner), ++t).result.granted).toBe(true);
    }
  }
  return order;
}

test('grants up to the cap, queues the rest with their place', () => {
  const s = emptyCapacity(2);
  expect(acquire(s, req('a', 'o1', { cap: 2 }), 0).result).toEqual({ granted: true, held: 1, cap: 2 });
  expect(acquire(s, req('b', 'o1', { cap: 2 }), 1).result.granted).toBe(true);
  expect(acquire(s, req('c', 'o1', { cap: 2 }), 2).result).toEqual({ granted: false, position: 1, waiting: 1, held: 2, cap: 2 });
  // Asking again while held is idempotent.
  expect(acquire(s, req('a', 'o1', { cap: 2 }), 3).result.granted).toBe(true);
  expect(s.holders).toHaveLength(2);
});

test('two owners, one with 5 waiting and one with 1 arriving later: the other owner is admitted second', () => {
  const s = emptyCapacity(1);
  expect(acquire(s, req('running', 'x'), 0).result.granted).toBe(true);
  for (let i = 0; i < 5; i++) expect(acquire(s, req(`a${i}`, 'alice'), 10 + i).result.granted).toBe(false);
  const bob = acquire(s, req('b0', 'bob'), 20).result;
  expect(bob).toMatchObject({ granted: false, position: 2, waiting: 6 });
  expect(fairOrder(s).map((w) => w.workflowId)).toEqual(['a0', 'b0', 'a1', 'a2', 'a3', 'a4']);
  expect(drain(s, 100)).toEqual(['a0', 'b0', 'a1', 'a2', 'a3', 'a4']);
});

test('round robin across three owners, first come first served within each', () => {
  const s = emptyCapacity(1);
  acquire(s, req('hold', 'z'), 0);
  ['a1', 'a2', 'a3'].forEach((id, i) => acquire(s, req(id, 'A'), 1 + i));
  ['b1', 'b2'].forEach((id, i) => acquire(s, req(id, 'B'), 10 + i));
  acquire(s, req('c1', 'C'), 20);
  expect(drain(s, 100)).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
});

test('an owner that was just served goes behind one that was not', () => {
  const s = emptyCapacity(1);
  acquire(s, req('a1', 'A'), 0); // A granted at once
  acquire(s, req('a2', 'A'), 1);
  acquire(s, req('b1', 'B'), 2); // B arrived after A's second job, but A was served last
  expect(fairOrder(s).map((w) => w.workflowId)).toEqual(['b1', 'a2']);
});

test('a poll that changes nothing is recognised (the entity answers it without recording it)', () => {
  const s = emptyCapacity(1);
  acquire(s, req('a', 'A'), 0);
  acquire(s, req('b', 'B'), 1);
  expect(unchangedPoll(s, req('b', 'B'), 2)).toMatchObject({ granted: false, position: 1 });
  expect(unchangedPoll(s, req('c', 'C'), 2)).toBeUndefined(); // new: must be queued
  expect(unchangedPoll(s, req('b', 'B', { cap: 2 }), 2)).toBeUndefined(); // the cap changed: b gets a slot
  expect(unchangedPoll(s, req('a', 'A'), 2)).toBeUndefined(); // the holder itself
  release(s, { workflowId: 'a' }, 3); // b is granted, not yet told
  expect(unchangedPoll(s, req('b', 'B'), 4)).toBeUndefined();
  expect(acquire(s, req('b', 'B'), 4).result.granted).toBe(true);
});

test('a grant nobody comes back for is withdrawn at claimBy and goes to the next waiter', () => {
  const s = emptyCapacity(1);
  acquire(s, req('a', 'A'), 0);
  acquire(s, req('gone', 'B', { claimMs: 50 }), 1);
  acquire(s, req('c', 'C'), 2);
  const { granted } = release(s, { workflowId: 'a' }, 10);
  expect(granted).toEqual(['gone']);
  expect(nextExpiry(s)).toBe(60);
  expect(expire(s, 59)).toEqual([]);
  expect(expire(s, 60)).toEqual(['c']);
  expect(s.waiters).toEqual([]); // the one that never came back left the queue
  expect(acquire(s, req('c', 'C'), 61).result.granted).toBe(true);
});

test('reclaim frees the slots of jobs whose workflows ended; a later attempt replaces an earlier one', () => {
  const s = emptyCapacity(1);
  acquire(s, req('job-t', 'A', { attempt: 1 }), 0);
  acquire(s, req('job-n', 'B', { attempt: 1 }), 1);
  expect(reclaim(s, ['job-t'], 5)).toEqual(['job-n']);
  expect(acquire(s, req('job-n', 'B', { attempt: 1 }), 6).result.granted).toBe(true);
  // Attempt 2 of the same job takes over its own slot (attempt 1's deployment was closed first).
  expect(acquire(s, req('job-n', 'B', { attempt: 2 }), 7).result.granted).toBe(true);
  expect(s.holders).toEqual([expect.objectContaining({ workflowId: 'job-n', attempt: 2 })]);
  // A late release of attempt 1 does not free attempt 2's slot.
  expect(release(s, { workflowId: 'job-n', attempt: 1 }, 8).released).toBe(0);
  expect(release(s, { workflowId: 'job-n', attempt: 2 }, 9).released).toBe(1);
  expect(s).toMatchObject({ holders: [], waiters: [], lastGrant: {} });
});

test('the state is plain JSON (it travels through continue-as-new)', () => {
  const s = emptyCapacity(2);
  acquire(s, req('a', 'A', { cap: 2 }), 0);
  acquire(s, req('b', 'B', { cap: 2 }), 1);
  acquire(s, req('c', 'A', { cap: 2 }), 2);
  const copy = JSON.parse(JSON.stringify(s)) as CapacityState;
  expect(copy).toEqual(s);
  expect(fairOrder(copy)).toEqual(fairOrder(s));
});

/** Uniform in [0, 1) from the project's PRNG. */
function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

test('a waiter\'s position (computed in one pass) is its place in the fair order, for random queues', () => {
  for (let seed = 1; seed <= 200; seed++) {
    const r = rng(seed);
    const s = emptyCapacity(1 + Math.floor(r() * 3));
    let t = 0;
    for (let i = 0; i < 40; i++) {
      const owner = `o${Math.floor(r() * 5)}`;
      if (r() < 0.2 && s.holders.length > 0)
        release(s, { workflowId: s.holders[Math.floor(r() * s.holders.length)]!.workflowId }, (t += 1 + Math.floor(r() * 3)));
      else acquire(s, req(`j${i}`, owner, { cap: s.cap }), (t += Math.floor(r() * 3)));
    }
    const order = fairOrder(s);
    for (const [i, w] of order.entries()) expect([seed, w.workflowId, positionOf(s, w.workflowId)]).toEqual([seed, w.workflowId, i + 1]);
  }
});

test('continue-as-new carries a 10,000-job queue well under Temporal\'s 2 MB payload limit, losslessly', () => {
  const s = emptyCapacity(50);
  const owners = Array.from({ length: 10 }, (_, i) => `did:key:z6Mk${String(i).padStart(44, 'x')}`);
  for (let i = 0; i < 50; i++) acquire(s, req(`job-h${i}`, owners[i % 10]!, { cap: 50, attempt: 1 }), 1_796_400_000_000 + i);
  // The queue itself, as 10,000 acquires would leave it (built directly: the test is about its size).
  for (let i = 0; i < 10_000; i++) {
    s.waiters.push({ workflowId: `job-${i.toString(16).padStart(8, '0')}-aaaa-bbbb-cccc-dddddddddddd`, owner: owners[i % 10]!, attempt: 1, since: 1_796_400_001_000 + i, claimMs: 55_000 });
  }
  // A poll of a queued job in a 10,000-job queue changes nothing (its cost is measured by npm run bench:capacity).
  for (let i = 0; i < 100; i++)
    expect(
      unchangedPoll(s, req(s.waiters[i * 97]!.workflowId, s.waiters[i * 97]!.owner, { cap: 50, attempt: 1, claimMs: 55_000 }), 1_796_400_020_000),
    ).toBeDefined();
  const packed = packCapacity(s);
  const bytes = JSON.stringify(packed).length;
  expect(bytes).toBeLessThan(1_000_000);
  expect(JSON.stringify(s).length).toBeGreaterThan(bytes * 1.8);
  expect(unpackCapacity(JSON.parse(JSON.stringify(packed)) as typeof packed)).toEqual(s);
});
