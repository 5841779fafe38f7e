/** Group-relative advantages (workflows/rl/advantages.ts): DeepSeekMath's (r − mean) / std, and std = 0. */
import fc from 'fast-check';
import { groupAdvantages, mean, sampleStd, ZERO_STD } from '../../workflows/rl/advantages';

describe('groupAdvantages', () => {
  it('is (reward − group mean) / group sample std', () => {
    const g = groupAdvantages([1, 0, 0, 1]);
    expect(g.mean).toBe(0.5);
    expect(g.std).toBeCloseTo(Math.sqrt(1 / 3), 12);
    expect(g.advantages.map((a) => +a.toFixed(6))).toEqual([0.866025, -0.866025, -0.866025, 0.866025]);
    expect(g.degenerate).toBe(false);
  });

  it('ranks completions by reward: the best gets the largest advantage', () => {
    const g = groupAdvantages([0.1, 0.9, 0.5, 0.5]);
    expect(g.advantages[1]).toBeGreaterThan(g.advantages[2]!);
    expect(g.advantages[2]).toBeGreaterThan(g.advantages[0]!);
    expect(g.advantages[2]).toBeCloseTo(g.advantages[3]!, 12);
  });

  it('gives 0 to every completion of a group whose rewards are all equal (std = 0): no signal, no division by zero', () => {
    for (const rewards of [[0, 0, 0, 0], [1, 1], [0.25, 0.25, 0.25]]) {
      const g = groupAdvantages(rewards);
      expect(g).toMatchObject({ degenerate: true, std: 0 });
      expect(g.advantages).toEqual(rewards.map(() => 0));
    }
    expect(groupAdvantages([0.5]).advantages).toEqual([0]);
    expect(groupAdvantages([]).advantages).toEqual([]);
  });

  it('refuses rewards that are not finite numbers', () => {
    expect(() => groupAdvantages([1, Number.NaN])).toThrow(RangeError);
    expect(() => groupAdvantages([Number.POSITIVE_INFINITY, 0])).toThrow(RangeError);
  });

  it('properties: zero mean, unit sample std (or all zero), invariant to shifting and scaling the rewards', () => {
    const rewards = fc.array(fc.double({ min: -10, max: 10, noNaN: true }), { minLength: 2, maxLength: 32 });
    fc.assert(
      fc.property(rewards, fc.double({ min: -5, max: 5, noNaN: true }), fc.double({ min: 0.1, max: 10, noNaN: true }), (rs, shift, scale) => {
        const g = groupAdvantages(rs);
        if (g.degenerate) return g.advantages.every((a) => a === 0);
        const ok = Math.abs(mean(g.advantages)) < 1e-9 && Math.abs(sampleStd(g.advantages) - 1) < 1e-9;
        const moved = groupAdvantages(rs.map((r) => r * scale + shift));
        if (sampleStd(rs) * scale < ZERO_STD * 10) return ok;
        return ok && moved.advantages.every((a, i) => Math.abs(a - g.advantages[i]!) < 1e-6);
      }),
    );
  });
});
