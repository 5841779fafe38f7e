/** RL prompts and rewards: reproducible picks, the toy generator, partial credit, the eval suite's checkers. */
import { mulberry32 } from '../../common/prng';
import { PARTIAL_CREDIT, reverseWords, rewardOf, similarity, suiteSource, TaskRegistry, UnknownTaskTypeError } from '../../activities/rl/tasks';
import { defaultSuiteDir } from '../../activities/eval-suite';
import { fnv1a, promptsForStep, samplingSeed } from '../../workflows/rl/prompts';

describe('prompts of a step', () => {
  it('are the same for the same job and step, and differ between steps', () => {
    const seed = fnv1a('7d0c5d1e-0b7a-4a57-9e4c-1e0f6a3b2c01');
    const a = promptsForStep(seed, 3, 8, ['toy', 'vcs']);
    expect(promptsForStep(seed, 3, 8, ['toy', 'vcs'])).toEqual(a);
    expect(promptsForStep(seed, 4, 8, ['toy', 'vcs'])).not.toEqual(a);
    expect(new Set(a.map((p) => p.taskType))).toEqual(new Set(['toy', 'vcs']));
    expect(samplingSeed(seed, 3, 0)).toBe(samplingSeed(seed, 3, 0));
    expect(samplingSeed(seed, 3, 0)).not.toBe(samplingSeed(seed, 3, 1));
    expect(() => promptsForStep(seed, 1, 1, [])).toThrow(RangeError);
  });

  it('mulberry32 is the reference sequence (seed 1 starts 0.6270739405881613 × 2^32)', () => {
    const next = mulberry32(1);
    expect([next(), next(), next()]).toEqual([2693262067, 11749833, 2265367787]);
  });
});

describe('rewards', () => {
  it('similarity is the LCS ratio', () => {
    expect(similarity('abc', 'abc')).toBe(1);
    expect(similarity('abc', 'xyz')).toBe(0);
    expect(similarity('ab', 'ba')).toBe(0.5);
    expect(similarity('', 'abc')).toBe(0);
    expect(similarity('', '')).toBe(0);
  });

  it('the toy generator matches evals/toy.json and its checker: 1 for the reverse, partial credit below 1 otherwise', () => {
    const t = reverseWords.task(42);
    expect(t.prompt).toMatch(/^reverse [a-h]{3,5}:$/);
    const word = t.prompt.slice(8, -1);
    const answer = ` ${[...word].reverse().join('')}`;
    expect(rewardOf(t, answer)).toMatchObject({ reward: 1, success: true });
    const wrong = rewardOf(t, ` ${word}x`);
    expect(wrong.success).toBe(false);
    expect(wrong.reward).toBeGreaterThan(0);
    expect(wrong.reward).toBeLessThanOrEqual(PARTIAL_CREDIT);
    expect(rewardOf(t, '').reward).toBe(0);
    expect(reverseWords.task(42)).toEqual(t);
  });

  it('suite tasks come from evals/ and are scored by their checkers (no partial credit without a reference)', () => {
    const vcs = suiteSource(defaultSuiteDir(), 'vcs')!;
    expect(vcs.fingerprint).toMatch(/^suite:[0-9a-f]{64}$/);
    const task = vcs.task(7);
    expect(task.taskType).toBe('vcs');
    const r = rewardOf(task, 'something wrong');
    expect(r.success).toBe(false);
    if (task.check.kind !== 'exact') expect(r.reward).toBe(0);
  });

  it('an unknown task type is named', () => {
    const registry = new TaskRegistry(defaultSuiteDir());
    expect(registry.source('toy')).toBe(reverseWords);
    expect(() => registry.source('no-such-type')).toThrow(UnknownTaskTypeError);
  });
});
