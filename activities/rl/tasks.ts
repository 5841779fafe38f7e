/**
 * RL tasks and rewards: what a rollout worker makes of a (task type, seed) pair (workflows/rl/prompts.ts), and how a
 * completion is scored. The checkers are the eval suite's (activities/eval-suite.ts): the reward of a completion is 1
 * when the task's checker accepts it — the same verdict the EVALUATING state and the elite registry use.
 *
 * Partial credit: a failed completion of a task with a reference answer (an `exact` check) earns
 * PARTIAL_CREDIT × similarity(answer, reference), the longest-common-subsequence ratio 2·LCS / (|a| + |b|) of the
 * trimmed strings, always below the 1 of success. Small policies rarely hit an exact answer at first; without it
 * every group of theirs would have zero spread and GRPO no gradient. Other checks score 0 or 1.
 *
 * Task sources, per task type:
 *  - a generator (unbounded, fresh prompts): `toy` — reverse a word of 3 to 5 letters a–h, the format of
 *    evals/toy.json (`reverse gdb:` → ` bdg`), so that the policy is trained on other words than it is evaluated on;
 *  - otherwise the eval suite's task file `<task_type>.json`: the seed picks one of its tasks.
 */
import { checkAnswer, defaultSuiteDir, loadSuite, renderPrompt, type EvalCheck } from '../eval-suite';
import { mulberry32 } from '../../common/prng';

export const PARTIAL_CREDIT = 0.5;

export interface RlTask {
  taskType: string;
  id: string;
  prompt: string;
  /** The task's own completion budget (the spec's max_completion_tokens caps it). */
  maxTokens?: number;
  stop?: string[];
  check: EvalCheck;
}

export interface TaskSource {
  taskType: string;
  /** Identifies the task set (a task file's sha256, or a generator's name and version). */
  fingerprint: string;
  task(seed: number): RlTask;
}

/** Where rewards come from: any module with the eval suite's `checkAnswer` shape can be the checker. */
export interface RewardChecker {
  check(check: EvalCheck, answer: string): { success: boolean; detail: string };
}

export const evalSuiteChecker: RewardChecker = { check: checkAnswer };

/** 2·LCS(a, b) / (|a| + |b|) over characters: 1 for equal strings, 0 when nothing is shared (or both are empty). */
export function similarity(a: string, b: string): number {
  if (!a.length || !b.length) return a === b && a.length ? 1 : 0;
  let prev = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    const row = new Array<number>(b.length + 1).fill(0);
    for (let j = 1; j <= b.length; j++) row[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, row[j - 1]!);
    prev = row;
  }
  return (2 * prev[b.length]!) / (a.length + b.length);
}

export interface Reward {
  reward: number;
  success: boolean;
  detail: string;
}

export function rewardOf(task: RlTask, answer: string, checker: RewardChecker = evalSuiteChecker): Reward {
  const verdict = checker.check(task.check, answer);
  if (verdict.success) return { reward: 1, success: true, detail: verdict.detail };
  const reference = task.check.kind === 'exact' ? task.check.expected : undefined;
  const partial = reference === undefined ? 0 : PARTIAL_CREDIT * similarity(answer.trim(), reference);
  return { reward: Math.min(partial, PARTIAL_CREDIT), success: false, detail: verdict.detail };
}

// ---- sources ------------------------------------------------------------------------------------------------------

const TOY_LETTERS = 'abcdefgh';

/** `toy`: reverse a word of 3 to 5 letters a–h (evals/toy.json's format), a fresh word per seed. */
export const reverseWords: TaskSource = {
  taskType: 'toy',
  fingerprint: 'generator:reverse-words@1',
  task(seed: number): RlTask {
    const next = mulberry32(seed);
    const length = 3 + (next() % 3);
    const word = Array.from({ length }, () => TOY_LETTERS[next() % TOY_LETTERS.length]).join('');
    const expected = [...word].reverse().join('');
    return { taskType: 'toy', id: `reverse-${word}`, prompt: `reverse ${word}:`, maxTokens: 12, stop: ['\n'], check: { kind: 'exact', expected } };
  },
};

export const GENERATORS: Readonly<Record<string, TaskSource>> = { toy: reverseWords };

/** A task type's eval-suite file as a source: the seed picks one of its tasks. */
export function suiteSource(dir: string, taskType: string): TaskSource | undefined {
  const suite = loadSuite(dir, taskType);
  if (!suite) return undefined;
  return {
    taskType,
    fingerprint: `suite:${suite.sha256}`,
    task(seed: number): RlTask {
      const t = suite.tasks[seed % suite.tasks.length]!;
      return {
        taskType,
        id: t.id,
        prompt: renderPrompt(t),
        maxTokens: t.max_tokens,
        ...(t.stop ? { stop: t.stop } : {}),
        check: t.check,
      };
    },
  };
}

export class UnknownTaskTypeError extends Error {
  override name = 'UnknownTaskTypeError';
}

/** Task sources by type: generators first, then the suite's task files (loaded once, on first use). */
export class TaskRegistry {
  private readonly cache = new Map<string, TaskSource | undefined>();

  constructor(
    private readonly suiteDir: string = defaultSuiteDir(),
    private readonly generators: Readonly<Record<string, TaskSource>> = GENERATORS,
  ) {}

  source(taskType: string): TaskSource {
    if (!this.cache.has(taskType)) this.cache.set(taskType, this.generators[taskType] ?? suiteSource(this.suiteDir, taskType));
    const s = this.cache.get(taskType);
    if (!s) throw new UnknownTaskTypeError(`no RL task source for task type "${taskType}": neither a generator nor ${this.suiteDir}/${taskType}.json`);
    return s;
  }
}
