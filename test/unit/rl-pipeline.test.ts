/**
 * Bounded staleness (workflows/rl/pipeline.ts), simulated: a pipeline that dispatches whatever the rule allows and
 * finishes rollouts and updates in random orders and durations never uses a rollout more than max_off_policy_steps
 * versions old; k = 0 is synchronous; k ≥ 1 overlaps rollouts with updates.
 */
import fc from 'fast-check';
import { assertUsable, dispatchableSteps, mayDispatch, stalenessAt, StalenessError } from '../../workflows/rl/pipeline';

describe('bounded staleness', () => {
  it('dispatches the batch of step s once the latest version is ≥ s − 1 − k', () => {
    expect(dispatchableSteps(1, 0, 0, 10)).toEqual([1]);
    expect(dispatchableSteps(2, 0, 0, 10)).toEqual([]); // synchronous: step 2 waits for version 1
    expect(dispatchableSteps(1, 0, 1, 10)).toEqual([1, 2]);
    expect(dispatchableSteps(3, 0, 1, 10)).toEqual([]);
    expect(dispatchableSteps(3, 1, 2, 10)).toEqual([3, 4]);
    expect(dispatchableSteps(1, 0, 5, 3)).toEqual([1, 2, 3]); // never past max_steps
    expect(dispatchableSteps(2, 4, 1, 10)).toEqual([5, 6]); // after a resume the next steps restart from the version
    expect(mayDispatch(4, 4, 1, 10)).toBe(false); // done already
  });

  it('checks a rollout at use', () => {
    expect(stalenessAt(5, 4)).toBe(0);
    expect(assertUsable(5, 3, 1)).toBe(1);
    expect(() => assertUsable(5, 2, 1)).toThrow(StalenessError);
    expect(() => assertUsable(5, 5, 1)).toThrow(/newer/);
    expect(() => assertUsable(2, 0, 0)).toThrow(/max_off_policy_steps is 0/);
  });

  it('a simulated asynchronous pipeline never exceeds the bound, and overlaps when k ≥ 1', () => {
    // Events: finish a random in-flight rollout batch, or finish the update in flight.
    const scenario = fc.record({
      k: fc.integer({ min: 0, max: 3 }),
      maxSteps: fc.integer({ min: 1, max: 25 }),
      choices: fc.array(fc.nat(), { minLength: 200, maxLength: 200 }),
    });
    fc.assert(
      fc.property(scenario, ({ k, maxSteps, choices }) => {
        let version = 0;
        let next = 1;
        const inFlight: { step: number; gen: number }[] = [];
        const done = new Map<number, number>();
        let updating: { step: number; gen: number } | null = null;
        let overlapped = false;
        for (const c of choices) {
          for (const s of dispatchableSteps(next, version, k, maxSteps)) {
            inFlight.push({ step: s, gen: version });
            next = s + 1;
          }
          if (updating && inFlight.length) overlapped = true;
          const ready = done.get(version + 1);
          if (!updating && ready !== undefined) {
            assertUsable(version + 1, ready, k);
            updating = { step: version + 1, gen: ready };
            done.delete(version + 1);
          } else if (updating && (c % 2 === 0 || !inFlight.length)) {
            version = updating.step;
            updating = null;
          } else if (inFlight.length) {
            const b = inFlight.splice(c % inFlight.length, 1)[0]!;
            done.set(b.step, b.gen);
          }
          if (version === maxSteps) break;
        }
        if (k === 0 && overlapped) return false;
        return true;
      }),
    );
  });
});
