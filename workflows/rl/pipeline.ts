/**
 * Bounded staleness of asynchronous GRPO (INTELLECT-2 style), pure. Policy version v is the policy after v updates
 * (version 0: the base model); step s is the update that turns version s − 1 into version s, on one batch of
 * rollouts. A batch generated with version g and used by step s is s − 1 − g versions old when it is used.
 *
 * The rule: no rollout older than `k` = max_off_policy_steps versions is ever used. The workflow enforces it where it
 * decides, at dispatch: the batch of step s may be dispatched once the latest version is ≥ s − 1 − k, and is
 * generated with the latest version (so it can only be fresher than the bound at use). k = 0 is synchronous RL
 * (generate with v, update to v + 1, repeat); k = 1 lets the rollouts of step s + 1 run while step s updates.
 * `assertUsable` checks it again at use, from the recorded versions.
 */

/** How many versions old a rollout of version `generatedWith` is when step `step` uses it. */
export function stalenessAt(step: number, generatedWith: number): number {
  return step - 1 - generatedWith;
}

/** Whether the batch of `step` may be dispatched now that the latest policy version is `latest`. */
export function mayDispatch(step: number, latest: number, maxOffPolicySteps: number, maxSteps: number): boolean {
  return step <= maxSteps && step >= latest + 1 && stalenessAt(step, latest) <= maxOffPolicySteps;
}

/** The steps whose batches may be dispatched now, after `nextStep − 1` were dispatched already (in order). */
export function dispatchableSteps(nextStep: number, latest: number, maxOffPolicySteps: number, maxSteps: number): number[] {
  const out: number[] = [];
  for (let s = Math.max(nextStep, latest + 1); mayDispatch(s, latest, maxOffPolicySteps, maxSteps); s++) out.push(s);
  return out;
}

export class StalenessError extends Error {
  override name = 'StalenessError';
}

/** Throws when a rollout of version `generatedWith` would be used by `step` beyond the bound (or from the future). */
export function assertUsable(step: number, generatedWith: number, maxOffPolicySteps: number): number {
  const age = stalenessAt(step, generatedWith);
  if (age < 0) throw new StalenessError(`step ${step} cannot use a rollout of version ${generatedWith}: newer than version ${step - 1}`);
  if (age > maxOffPolicySteps) {
    throw new StalenessError(`step ${step} cannot use a rollout of version ${generatedWith}: ${age} versions old, max_off_policy_steps is ${maxOffPolicySteps}`);
  }
  return age;
}
