/**
 * Chaos: the orchestrator worker is killed with SIGKILL at random points while jobs run (CI: 12 jobs, 5 kills;
 * `npm run chaos`: 50 jobs, 20 kills), and started again after a random pause. The jobs mix successes, permanent
 * failures and transient ones that succeed on their second attempt. Afterwards every job reached its right terminal
 * state, none lost or duplicated, one trainer start per attempt, no orphan, no open deployment.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, startJob, tempDir, testClient, testConfig } from '../helpers/forge';
import { chaosSeed, FULL, killHard, report, rng, sleep, spawnWorker, verifyJobs, type Expectation } from './harness';

const TQ = 'test-chaos-worker-kill';
const JOBS = FULL ? 50 : 12;
const KILLS = FULL ? 20 : 5;
const home = tempDir('forge-chaos-worker-');
const configFile = path.join(home, 'config.json');
writeFileSync(
  configFile,
  JSON.stringify(
    testConfig(
      {
        local: {
          trainers: {
            'ok-1': fakeTrainer('ok', 1),
            'ok-3': fakeTrainer('ok', 3),
            'ok-6': fakeTrainer('ok', 6),
            'exit-3': fakeTrainer('exit', 1, 3),
            'transient-2': fakeTrainer('transient-until', 1, 2),
          },
        },
      },
      path.join(home, 'starts.log'),
    ),
  ),
);

let client: Client;
let connection: Connection;
let worker: ChildProcess | undefined;
beforeAll(async () => ({ client, connection } = await testClient()));
afterAll(async () => {
  await killHard(worker);
  await connection?.close();
});

test(`SIGKILL of the worker at ${KILLS} random points of ${JOBS} jobs: every job ends right, once`, async () => {
  const seed = chaosSeed();
  const random = rng(seed);
  const kinds = [
    { image: 'ok-1', expect: { state: 'COMPLETED', attempts: 1 } },
    { image: 'ok-3', expect: { state: 'COMPLETED', attempts: 1 } },
    { image: 'ok-6', expect: { state: 'COMPLETED', attempts: 1 } },
    { image: 'exit-3', expect: { state: 'ABANDONED', attempts: 1, lastError: 'EXIT_CODE' } },
    { image: 'transient-2', expect: { state: 'COMPLETED', attempts: 2 } },
  ] as const;
  const started = Date.now();
  worker = spawnWorker({ home, configFile, taskQueue: TQ });
  const expected: Expectation[] = [];
  // Jobs arrive over the first part of the run, so kills hit every phase: admission, submit, follow, close.
  const submitting = (async () => {
    for (let i = 0; i < JOBS; i++) {
      const kind = kinds[i % kinds.length]!;
      const spec = makeSignedSpec({ trainer: { image: kind.image }, backend: { provider: 'local', region: 'any', max_cost_usd: 1, max_retries: 2 } });
      await startJob(client, TQ, spec);
      expected.push({ jobId: spec.job_id, ...kind.expect });
      await sleep(random() * (FULL ? 300 : 400));
    }
  })();
  const kills: number[] = [];
  for (let k = 0; k < KILLS; k++) {
    await sleep(500 + random() * 2500);
    await killHard(worker);
    kills.push(Date.now() - started);
    await sleep(200 + random() * 1300);
    worker = spawnWorker({ home, configFile, taskQueue: TQ });
  }
  await submitting;
  const verdict = await verifyJobs(client, home, expected, FULL ? 300_000 : 150_000);
  const seconds = (Date.now() - started) / 1000;
  report('worker-kill', { seed, kills: kills.length, killAtMs: kills, seconds, ...verdict });
  expect(verdict.problems).toEqual([]);
  expect(verdict.byState.COMPLETED).toBe(expected.filter((e) => e.state === 'COMPLETED').length);
}, 400_000);
