/**
 * Rewards are recomputed, not reported: before a group enters an update, the trainer host re-scores every completion
 * with the task's checker (the eval suite's, through rewardOf: the same verdict the EVALUATING state uses) and
 * compares the rewards the rollout worker reported (to the workflow, and with its upload) against its own. A group
 * whose rewards differ, or whose prompt is not its task's, is dropped from the update and counted against the worker
 * that produced it; a worker with `max_rejections` of them is refused for the rest of the run. Pure.
 */
import { REJECTION, type RejectedRollout, type RejectionReason } from '../../common/rl-rejections';
import { rewardOf, type RewardChecker, type RlTask } from './tasks';

export { REJECTION, type RejectedRollout, type RejectionReason };

/** A stored group as the trainer session returns it (POST /v1/rollout-texts). */
export interface StoredRollout {
  prompt: string | null;
  texts: string[];
  rewards: number[];
}

/** Rewards are equal when they differ by less than this (JSON round trips of the same float are exact anyway). */
const TOLERANCE = 1e-6;

/** A completion's text cut at the task's first stop string, as the inference server returns it. */
export function completionText(text: string, stop: readonly string[] | undefined): string {
  const cuts = (stop ?? []).map((s) => text.indexOf(s)).filter((i) => i >= 0);
  return cuts.length ? text.slice(0, Math.min(...cuts)) : text;
}

/** Why a group must not enter the update, or null when every reward the worker reported is the checker's. */
export function rescoreGroup(
  task: RlTask,
  stored: StoredRollout,
  reported: readonly number[],
  checker?: RewardChecker,
): { reason: RejectionReason; detail: string } | null {
  if (stored.prompt !== null && stored.prompt !== task.prompt) {
    return { reason: REJECTION.PROMPT_MISMATCH, detail: `uploaded prompt ${JSON.stringify(stored.prompt.slice(0, 80))} is not task ${task.id}'s` };
  }
  if (stored.texts.length !== reported.length || stored.rewards.length !== reported.length) {
    return { reason: REJECTION.SAMPLE_COUNT, detail: `${stored.texts.length} completions uploaded, ${reported.length} rewards reported` };
  }
  for (let i = 0; i < stored.texts.length; i++) {
    const own = rewardOf(task, completionText(stored.texts[i]!, task.stop), checker).reward;
    for (const [claimed, where] of [
      [reported[i]!, 'reported'],
      [stored.rewards[i]!, 'uploaded'],
    ] as const) {
      if (Math.abs(claimed - own) > TOLERANCE) {
        return { reason: REJECTION.REWARD_MISMATCH, detail: `completion ${i}: ${where} reward ${claimed}, the task's checker gives ${own}` };
      }
    }
  }
  return null;
}

/** A group of an update, with what the host needs to re-score it (absent in updates from before re-scoring). */
export interface GroupToVerify {
  rolloutId: string;
  advantages: number[];
  task?: { taskType: string; seed: number };
  worker?: string;
  rewards?: number[];
}

/**
 * The groups that may enter the update, and the rejected ones. `stored` fetches the session's copies of the groups;
 * `taskOf` resolves a task reference (the host's TaskRegistry). A group from before re-scoring (no task or rewards)
 * passes: there is nothing it claimed to check.
 */
export async function verifyGroups<G extends GroupToVerify>(
  groups: readonly G[],
  refused: readonly string[],
  stored: (ids: string[]) => Promise<Record<string, StoredRollout>>,
  taskOf: (ref: { taskType: string; seed: number }) => RlTask,
  checker?: RewardChecker,
): Promise<{ kept: G[]; rejected: RejectedRollout[] }> {
  const checkable = groups.filter((g) => g.task && g.rewards);
  const copies = checkable.length ? await stored(checkable.map((g) => g.rolloutId)) : {};
  const kept: G[] = [];
  const rejected: RejectedRollout[] = [];
  for (const g of groups) {
    const worker = g.worker ?? 'unknown';
    if (g.worker !== undefined && refused.includes(g.worker)) {
      rejected.push({ rolloutId: g.rolloutId, worker, reason: REJECTION.REFUSED_WORKER, detail: `worker ${worker} reached rl.max_rejections earlier in this run` });
      continue;
    }
    if (!g.task || !g.rewards) {
      kept.push(g);
      continue;
    }
    const copy = copies[g.rolloutId];
    // Missing: the session refuses the update itself (409, never uploaded), as before re-scoring.
    const why = copy ? rescoreGroup(taskOf(g.task), copy, g.rewards, checker) : null;
    if (why) rejected.push({ rolloutId: g.rolloutId, worker, ...why });
    else kept.push(g);
  }
  return { kept, rejected };
}
