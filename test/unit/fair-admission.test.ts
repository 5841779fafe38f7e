/** Per-owner round robin of admission (activities/control/fair-admission.ts): the pure rule and its wake-ups. */
import fc from 'fast-check';
import { FairAdmission, OwnerRoundRobin } from '../../activities/control/fair-admission';

describe('OwnerRoundRobin', () => {
  test('nobody waiting: anyone may take a slot', () => {
    const rr = new OwnerRoundRobin(60_000);
    expect(rr.mayAdmit('a', 0)).toBe(true);
    expect(rr.next(0)).toBeUndefined();
  });

  test('a flood from one owner does not hold back the others: they alternate', () => {
    const rr = new OwnerRoundRobin(60_000);
    for (let i = 0; i < 100; i++) rr.wait(`a${i}`, 'A', i); // A floods first
    rr.wait('b0', 'B', 200);
    rr.wait('b1', 'B', 201);
    rr.wait('c0', 'C', 300);
    const served: string[] = [];
    for (let slot = 0; slot < 8; slot++) {
      const w = rr.next(1000)!;
      expect(rr.mayAdmit(w.owner, 1000)).toBe(true);
      for (const other of ['A', 'B', 'C'].filter((o) => o !== w.owner)) expect(rr.mayAdmit(other, 1000)).toBe(false);
      rr.granted(w.jobId, w.owner);
      served.push(w.jobId);
    }
    // Never-served owners by first wait (A, B, C), then the least recently served; within an owner, oldest first.
    expect(served).toEqual(['a0', 'b0', 'c0', 'a1', 'b1', 'a2', 'a3', 'a4']);
  });

  test('a new owner is served at the next free slot, then rotates like the others', () => {
    const rr = new OwnerRoundRobin(60_000);
    for (let i = 0; i < 5; i++) rr.wait(`a${i}`, 'A', i);
    rr.granted('a0', 'A');
    rr.granted('a1', 'A');
    rr.wait('z0', 'Z', 50);
    rr.wait('z1', 'Z', 51);
    expect(rr.next(100)?.jobId).toBe('z0');
    rr.granted('z0', 'Z');
    expect(rr.next(100)?.jobId).toBe('a2');
  });

  test('waiters that stop asking expire; a refreshed one stays', () => {
    const rr = new OwnerRoundRobin(10_000);
    rr.wait('a', 'A', 0);
    rr.wait('b', 'B', 0);
    rr.wait('b', 'B', 9_000); // B's job asked again
    expect(rr.dueOrder(15_000)).toEqual(['B']);
    expect(rr.mayAdmit('B', 15_000)).toBe(true);
    rr.leave('b');
    expect(rr.mayAdmit('A', 15_000)).toBe(true);
  });

  test('property: an owner with waiting jobs waits at most (owners − 1) grants for its next one, whatever the arrivals', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ owner: fc.constantFrom('A', 'B', 'C', 'D', 'E'), count: fc.integer({ min: 1, max: 30 }), at: fc.integer({ min: 0, max: 50 }) }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 5 }),
        (arrivals, slotsPerTick) => {
          const rr = new OwnerRoundRobin(1e9);
          let id = 0;
          const sinceServed = new Map<string, number>();
          const owners = new Set<string>();
          for (let tick = 0; tick <= 60; tick++) {
            for (const a of arrivals.filter((x) => x.at === tick)) {
              owners.add(a.owner);
              for (let k = 0; k < a.count; k++) rr.wait(`${a.owner}-${id++}`, a.owner, tick);
            }
            for (let s = 0; s < slotsPerTick; s++) {
              const w = rr.next(tick);
              if (!w) break;
              rr.granted(w.jobId, w.owner);
              // Every other waiting owner has now waited one more grant; none may wait more than the number of owners.
              for (const o of rr.dueOrder(tick)) {
                if (o === w.owner) continue;
                const n = (sinceServed.get(o) ?? 0) + 1;
                if (n > owners.size - 1) return false;
                sinceServed.set(o, n);
              }
              sinceServed.set(w.owner, 0);
            }
          }
          return true;
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('FairAdmission', () => {
  test('a job waiting behind another owner is woken when its owner becomes due', async () => {
    let now = 0;
    const fair = new FairAdmission(60_000, () => now);
    fair.wait(['local'], 'a1', 'A');
    fair.wait(['local'], 'a2', 'A');
    fair.wait(['local'], 'b1', 'B');
    expect(fair.mayAdmit('local', 'A')).toBe(true);
    expect(fair.mayAdmit('local', 'B')).toBe(false);
    const woken = fair.wakeup('b1');
    let wokeUp = false;
    void woken.promise.then(() => (wokeUp = true));
    now = 10;
    fair.granted('local', 'a1', 'A'); // A goes to the back: B is due, b1 is woken
    await Promise.resolve();
    expect(wokeUp).toBe(true);
    woken.cancel();
    expect(fair.mayAdmit('local', 'B')).toBe(true);
    expect(fair.mayAdmit('local', 'A')).toBe(false);
    expect(fair.snapshot()).toEqual({ local: { A: 1, B: 1 } });
    // Admitted elsewhere: the job leaves every backend's queue.
    fair.wait(['other'], 'b1', 'B');
    fair.granted('other', 'b1', 'B');
    expect(fair.snapshot()).toEqual({ local: { A: 1 }, other: {} });
  });
});
