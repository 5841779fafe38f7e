/**
 * TOPLOC-checked rollouts (activities/rl/verify.ts): forging rollout workers — the real rollout activity, whose
 * completions a hook rewrites after the inference server made them — each run a short GRPO run alone, at
 * rl.verify_fraction 1 (every group checked, so the test is deterministic). The trainer host checks each group by one
 * prefill under the policy version it claims: an altered completion fails its TOPLOC proofs, logprobs from another
 * model (a second tiny model, other weights) fail the logprob check; each is dropped, counted by worker and reason in
 * the run's status and metrics (rl.max_rejections is set high here so that every group is checked; the refusal of a
 * worker's uploads once it reached it is tested in trainer/tests/test_rl_endpoints.py). An honest worker's run at the
 * same setting rejects nothing. (A completion of another policy version is checked at the trainer level:
 * trainer/tests/test_toploc_proofs.py, since the tiny model's weights move too little in a short run for the versions
 * to differ.)
 */
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { complete, type Completion } from '../../activities/rl/inference';
import { rlRegistry } from '../../activities/rl/metrics';
import { completionText } from '../../activities/rl/rescore';
import type { RolloutHooks } from '../../activities/rl/rollout';
import type { RlProgress } from '../../workflows/grpo-run';
import { tempDir, temporalAddress } from '../helpers/forge';
import {
  FORGE_TRAINER,
  grpoEnv,
  queues,
  rolloutEnv,
  run,
  runInput,
  serveModel,
  startGrpo,
  startRollout,
  startRun,
  startRunWorker,
  testClient,
  testSettings,
  tinyModel,
  type GrpoRunResult,
  type InProcess,
  type Queues,
  type Served,
} from './harness';

const home = tempDir('forge-rl-verify-');
const STEPS = 3;
const PROMPTS = 2;
const MAX_REJECTIONS = 100;
/** The tiny model's end-of-text token (forge_trainer.model.byte_tokenizer). */
const EOS = 256;

let client: Client;
let connection: Connection;
let served: Served;
let other: Served;
const stops: InProcess<unknown>[] = [];

beforeAll(async () => {
  ({ client, connection } = await testClient());
  served = await serveModel(await tinyModel(), path.join(home, 'serve.log'));
  const otherModel = path.join(home, 'other-model');
  await run(FORGE_TRAINER, ['init-tiny', '--out', otherModel, '--seed', '7'], { ...process.env, OMP_NUM_THREADS: '1' });
  other = await serveModel(otherModel, path.join(home, 'other.log'));
}, 600_000);

afterAll(async () => {
  for (const s of stops.reverse()) await s.stop();
  await served?.stop();
  await other?.stop();
  await connection?.close();
});

/** One run of STEPS steps on its own queues, with one rollout worker `worker` (hooks: how it forges). */
async function runWith(name: string, worker: string, hooks: RolloutHooks | undefined): Promise<RlProgress> {
  const q: Queues = queues(`test-rl-verify-${name}`);
  const mine: InProcess<unknown>[] = [];
  mine.push(await startRunWorker(q, home));
  mine.push(await startRollout(rolloutEnv(q, served.url, home, worker), temporalAddress(), hooks));
  mine.push(await startGrpo(grpoEnv(q, home, `g-${name}`)));
  stops.push(...mine);
  const input = runInput({
    jobId: `d4b2e8f1-6c9a-4d2e-8b3f-${name.padEnd(12, '0').slice(0, 12).replace(/[^0-9a-f]/g, 'a')}`,
    maxSteps: STEPS,
    model: await tinyModel(),
    rl: { prompts_per_step: PROMPTS, group_size: 2, max_completion_tokens: 12, max_off_policy_steps: 1 },
    settings: testSettings(q, { maxRejections: MAX_REJECTIONS, verifyFraction: 1 }),
  });
  const handle = await startRun(client, q, input);
  const result = (await handle.result()) as GrpoRunResult;
  expect(result.steps).toBe(STEPS);
  return (await handle.query('status')) as RlProgress;
}

function counts(status: RlProgress): Record<string, number> {
  return Object.fromEntries(status.rejected_rollouts.map((r) => [`${r.worker}/${r.reason}`, r.count]));
}

/**
 * Changes one token in the middle of each completion, keeping its logprobs and proofs. The text (and so the reward) is
 * made consistent with the new tokens, as a forger would: the tiny model's tokens are bytes (ids 0-255, 256 the end of
 * text), decoded as the trainer session decodes them and cut at the toy task's stop string, so that re-scoring
 * (rescore.ts) passes and only verification can tell.
 */
function altered(completions: Completion[]): Completion[] {
  return completions.map((c) => {
    if (c.tokenIds.length < 3) return c;
    const ids = [...c.tokenIds];
    const mid = Math.floor(ids.length / 2);
    ids[mid] = ids[mid] === 0x61 ? 0x62 : 0x61;
    const bytes = ids.at(-1) === EOS ? ids.slice(0, -1) : ids;
    return { ...c, tokenIds: ids, text: completionText(new TextDecoder('utf-8').decode(Uint8Array.from(bytes)), ['\n']) };
  });
}

test('an honest worker at verify_fraction 1: nothing is rejected', async () => {
  const status = await runWith('honest', 'honest', undefined);
  expect(status.rejected_rollouts).toEqual([]);
  const metrics = await rlRegistry.getMetricsAsJSON();
  const verified = metrics.find((m) => m.name === 'forge_rl_verified_rollouts_total')!.values[0]!.value;
  expect(verified).toBeGreaterThanOrEqual(STEPS * PROMPTS);
}, 600_000);

test('an altered completion fails its TOPLOC proofs', async () => {
  const status = await runWith('altered', 'alterer', { forge: (cs) => altered(cs) });
  const by = counts(status);
  expect(by).toEqual({ 'alterer/toploc-mismatch': STEPS * PROMPTS });
}, 600_000);

test('logprobs from another model fail the logprob check', async () => {
  const status = await runWith('logprobs', 'borrower', {
    forge: async (cs, input, prompt) => {
      const theirs = await complete(other.url, { prompt, n: cs.length, maxTokens: 12, temperature: input.temperature, seed: input.seed });
      return cs.map((c, i) => ({ ...c, logprobs: c.logprobs.map((lp, k) => theirs[i]!.logprobs[k] ?? lp) }));
    },
  });
  const by = counts(status);
  expect(by).toEqual({ 'borrower/logprob-mismatch': STEPS * PROMPTS });
  const metrics = await rlRegistry.getMetricsAsJSON();
  const counted = metrics.find((m) => m.name === 'forge_rl_rejected_rollouts_total')!.values;
  expect(counted.find((v) => v.labels.worker === 'borrower' && v.labels.reason === 'logprob-mismatch')?.value).toBe(by['borrower/logprob-mismatch']);
}, 600_000);
