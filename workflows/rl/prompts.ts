/**
 * Which prompts a GRPO step samples, pure and reproducible: step s of a job draws `count` (task type, task seed)
 * pairs from a PRNG seeded by the job's seed and s, uniformly over the objective's task types. The rollout worker
 * turns a pair into a concrete prompt and checker (activities/rl/tasks.ts), so the workflow carries two numbers per
 * prompt, never the prompts themselves. A step that is redone (after a trainer host was lost) draws the same prompts.
 */
import { mulberry32 } from '../../common/prng';

export { fnv1a } from '../../common/prng';

export interface PromptPick {
  taskType: string;
  /** Selects the task within its type (a generated task, or one of a task file's). */
  seed: number;
}

export function promptsForStep(jobSeed: number, step: number, count: number, taskTypes: readonly string[]): PromptPick[] {
  if (!taskTypes.length) throw new RangeError('no task types to sample prompts from');
  const next = mulberry32((jobSeed ^ Math.imul(step, 0x9e3779b1)) >>> 0);
  return Array.from({ length: count }, () => ({ taskType: taskTypes[next() % taskTypes.length]!, seed: next() }));
}

/** The sampling seed of one rollout request (the inference server's `seed`), reproducible per step and prompt. */
export function samplingSeed(jobSeed: number, step: number, index: number): number {
  return mulberry32((jobSeed ^ Math.imul(step, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)) >>> 0)() & 0x7fffffff;
}
