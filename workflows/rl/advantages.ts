/**
 * Group-relative advantages of GRPO (DeepSeekMath, Shao et al. 2024, §4.1.2 outcome supervision): each completion's
 * reward minus the mean reward of its group (the completions of the same prompt), over the group's standard
 * deviation. Pure: the grpoRun workflow computes them from the rewards its rollout activities return.
 *
 * Conventions:
 *  - std is the sample standard deviation (n − 1), as TRL's GRPOTrainer computes it.
 *  - A group whose rewards are all equal (std = 0, e.g. every completion failed, or every one succeeded) carries no
 *    signal about which completion is better: every advantage is 0. Its samples still enter the update, where only
 *    the KL term acts on them (nothing is divided by zero, nothing is dropped silently).
 *  - Groups of one completion have no spread either: advantage 0 (the spec requires group_size ≥ 2 anyway).
 */

/** std below this counts as zero (rewards are checker verdicts and similarities in [0, 1]). */
export const ZERO_STD = 1e-6;

export interface GroupAdvantages {
  advantages: number[];
  mean: number;
  std: number;
  /** std = 0: all advantages are 0. */
  degenerate: boolean;
}

export function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

/** Sample standard deviation (n − 1); 0 for fewer than two values. */
export function sampleStd(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1));
}

export function groupAdvantages(rewards: readonly number[]): GroupAdvantages {
  for (const r of rewards) if (!Number.isFinite(r)) throw new RangeError(`reward ${r} is not a finite number`);
  const m = mean(rewards);
  const std = sampleStd(rewards);
  if (std < ZERO_STD) return { advantages: rewards.map(() => 0), mean: m, std, degenerate: true };
  return { advantages: rewards.map((r) => (r - m) / std), mean: m, std, degenerate: false };
}
