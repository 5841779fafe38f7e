import { completionText, rescoreGroup, verifyGroups, type StoredRollout } from '../../activities/rl/rescore';
import { PARTIAL_CREDIT, reverseWords, rewardOf, type RlTask } from '../../activities/rl/tasks';
import { addRejections, refusedWorkers, REJECTION } from '../../common/rl-rejections';

const task: RlTask = reverseWords.task(7);
const expected = task.check.kind === 'exact' ? task.check.expected : '';
const honest = (texts: string[]): number[] => texts.map((t) => rewardOf(task, completionText(t, task.stop)).reward);

test("a completion is cut at the task's first stop string, as the inference server cuts it", () => {
  expect(completionText(' abc\nmore', ['\n'])).toBe(' abc');
  expect(completionText(' abc', ['\n'])).toBe(' abc');
  expect(completionText('a;b\nc', ['\n', ';'])).toBe('a');
  expect(completionText('abc', undefined)).toBe('abc');
});

test("the eval suite's checker re-scores every completion: honest rewards pass, an inflated one is a reward-mismatch", () => {
  const texts = [` ${expected}\n`, ' xyz', ''];
  const rewards = honest(texts);
  expect(rewards[0]).toBe(1);
  expect(rewards[1]).toBeLessThanOrEqual(PARTIAL_CREDIT);
  const stored: StoredRollout = { prompt: task.prompt, texts, rewards };
  expect(rescoreGroup(task, stored, rewards)).toBeNull();
  expect(rescoreGroup(task, stored, [1, 1, 1])).toMatchObject({ reason: REJECTION.REWARD_MISMATCH, detail: expect.stringContaining('completion 1: reported reward 1') });
  // Inflated in the upload only (what the trainer would log) is caught too.
  expect(rescoreGroup(task, { ...stored, rewards: [1, 1, 1] }, rewards)).toMatchObject({ reason: REJECTION.REWARD_MISMATCH, detail: expect.stringContaining('uploaded') });
  expect(rescoreGroup(task, { ...stored, prompt: 'reverse abc:' }, rewards)).toMatchObject({ reason: REJECTION.PROMPT_MISMATCH });
  expect(rescoreGroup(task, stored, rewards.slice(1))).toMatchObject({ reason: REJECTION.SAMPLE_COUNT });
  // A prompt uploaded as token ids (no text) is not compared.
  expect(rescoreGroup(task, { ...stored, prompt: null }, rewards)).toBeNull();
});

test('verifyGroups keeps honest groups, drops forged ones and every group of a refused worker', async () => {
  const texts = [' aaa', ` ${expected}`];
  const rewards = honest(texts);
  const ref = { taskType: 'toy', seed: 7 };
  const groups = [
    { rolloutId: 'ok', advantages: [0, 0], task: ref, worker: 'w1', rewards },
    { rolloutId: 'forged', advantages: [0, 0], task: ref, worker: 'w2', rewards: [1, 1] },
    { rolloutId: 'refused', advantages: [0, 0], task: ref, worker: 'w3', rewards },
    { rolloutId: 'legacy', advantages: [0, 0] },
  ];
  const asked: string[][] = [];
  const stored = async (ids: string[]): Promise<Record<string, StoredRollout>> => {
    asked.push(ids);
    return Object.fromEntries(ids.map((id) => [id, { prompt: task.prompt, texts, rewards }]));
  };
  const { kept, rejected } = await verifyGroups(groups, ['w3'], stored, (r) => reverseWords.task(r.seed));
  expect(kept.map((g) => g.rolloutId)).toEqual(['ok', 'legacy']);
  expect(rejected.map((r) => [r.rolloutId, r.worker, r.reason])).toEqual([
    ['forged', 'w2', REJECTION.REWARD_MISMATCH],
    ['refused', 'w3', REJECTION.REFUSED_WORKER],
  ]);
  expect(asked).toEqual([['ok', 'forged', 'refused']]);
});

test('rejections are counted by worker and reason; max_rejections of them refuse the worker', () => {
  const r = (worker: string, reason: (typeof REJECTION)[keyof typeof REJECTION]) => ({ rolloutId: 'x', worker, reason, detail: '' });
  let counts = addRejections([], [r('w2', REJECTION.REWARD_MISMATCH), r('w2', REJECTION.REWARD_MISMATCH), r('w1', REJECTION.PROMPT_MISMATCH)]);
  expect(counts).toEqual([
    { worker: 'w2', reason: 'reward-mismatch', count: 2 },
    { worker: 'w1', reason: 'prompt-mismatch', count: 1 },
  ]);
  expect(refusedWorkers(counts, 3)).toEqual([]);
  expect(refusedWorkers(counts, 2)).toEqual(['w2']);
  counts = addRejections(counts, [r('w1', REJECTION.REFUSED_WORKER), r('w1', REJECTION.REFUSED_WORKER)]);
  expect(refusedWorkers(counts, 2)).toEqual(['w2']); // refusals are the consequence, not new evidence
});
