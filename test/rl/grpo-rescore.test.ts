/**
 * Rewards are recomputed, not reported: a forging rollout worker (the real activity, whose report inflates every
 * reward to 1) runs a short GRPO run alone. The trainer host re-scores each group with the eval suite's checker
 * before the update: every forged group is dropped (reward-mismatch), counted by worker and reason in the run's
 * status (`rejected_rollouts`), and once the worker reached rl.max_rejections its later groups are refused outright
 * (refused-worker), and from the next update on the trainer session refuses its uploads too (HTTP 403): its rollouts
 * then fail until the run, which has no other rollout worker, gives up (LOST). Until then a step with no group left
 * updates on zero advantages. (The honest side, no rejection at all, is asserted in grpo-learn.test.ts.)
 */
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { rlRegistry } from '../../activities/rl/metrics';
import type { GrpoRunOutcome, RlProgress } from '../../workflows/grpo-run';
import { tempDir, temporalAddress } from '../helpers/forge';
import {
  grpoEnv,
  queues,
  rolloutEnv,
  runInput,
  serveModel,
  startGrpo,
  startRollout,
  startRun,
  startRunWorker,
  testClient,
  testSettings,
  tinyModel,
  type InProcess,
  type Served,
} from './harness';

const home = tempDir('forge-rl-rescore-');
const q = queues('test-rl-rescore');
// Room for the refusal to land before the last step: uploads are refused from the update after the max_rejections-th.
const STEPS = 8;
const PROMPTS = 2;
const MAX_REJECTIONS = 2;

let client: Client;
let connection: Connection;
let served: Served;
const stops: InProcess<unknown>[] = [];

beforeAll(async () => {
  ({ client, connection } = await testClient());
  served = await serveModel(await tinyModel(), path.join(home, 'serve.log'));
  stops.push(await startRunWorker(q, home));
  const forger = await startRollout(rolloutEnv(q, served.url, home, 'forger'), temporalAddress(), {
    report: (r) => ({ ...r, rewards: r.rewards.map(() => 1), successes: r.rewards.length }),
  });
  stops.push(forger);
  stops.push(await startGrpo(grpoEnv(q, home, 'g1')));
}, 300_000);

afterAll(async () => {
  for (const s of stops.reverse()) await s.stop();
  await served?.stop();
  await connection?.close();
});

test('a worker inflating its rewards is rejected, counted in the status, then refused for the rest of the run, uploads included', async () => {
  const input = runInput({
    jobId: 'c3a1d7e2-5b8f-4c1e-9a2d-0f6e8b4c7a15',
    maxSteps: STEPS,
    model: await tinyModel(),
    rl: { prompts_per_step: PROMPTS, group_size: 4, max_off_policy_steps: 1 },
    settings: testSettings(q, { maxRejections: MAX_REJECTIONS }),
  });
  const handle = await startRun(client, q, input);
  const result = (await handle.result()) as GrpoRunOutcome;
  // Its only rollout worker refused at upload: the run cannot go on.
  expect(result).toMatchObject({ ok: false, failure: { class: 'LOST', detail: expect.stringMatching(/forger is refused for the rest of this run/) } });

  const status = (await handle.query('status')) as RlProgress;
  const byReason = Object.fromEntries(status.rejected_rollouts.map((r) => [`${r.worker}/${r.reason}`, r.count]));
  // Every group of the run came from the forger, and none entered an update.
  expect(Object.keys(byReason).every((k) => k === 'forger/refused-worker' || k === 'forger/reward-mismatch')).toBe(true);
  expect(byReason['forger/reward-mismatch']! + (byReason['forger/refused-worker'] ?? 0)).toBeLessThanOrEqual(STEPS * PROMPTS);
  // Refused once it reached max_rejections: the groups it had uploaded before the session knew are refused outright.
  expect(byReason['forger/reward-mismatch']).toBeGreaterThanOrEqual(MAX_REJECTIONS);
  // And in the trainer host's metrics (its /metrics), by worker and reason.
  const metrics = await rlRegistry.getMetricsAsJSON();
  const counted = metrics.find((m) => m.name === 'forge_rl_rejected_rollouts_total')!.values;
  for (const [key, count] of Object.entries(byReason)) {
    const [worker, reason] = key.split('/');
    expect({ key, count: counted.find((v) => v.labels.worker === worker && v.labels.reason === reason)?.value }).toEqual({ key, count });
  }
}, 600_000);
