/**
 * Chaos: the HTTP API (its own process, as `npm start` and the image run it) is killed with SIGKILL while 200
 * clients submit jobs concurrently. Clients whose request failed submit the same signed spec again once the API is
 * back (POST /jobs is idempotent on job_id). Every job exists exactly once and completes; a retry of a submission
 * that had in fact been started before the kill answers 200 (the existing job), never a second job.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { makeSignedSpec, type SignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, tempDir, temporalAddress, testClient, testConfig } from '../helpers/forge';
import { freePort } from '../helpers/ports';
import { FULL, killHard, MAIN, report, sleep, spawnWorker, verifyJobs, type Expectation } from './harness';

const TQ = 'test-chaos-api-kill';
const SUBMISSIONS = 200;
const ROUNDS = FULL ? 3 : 1;
const home = tempDir('forge-chaos-api-');
const configFile = path.join(home, 'config.json');
writeFileSync(configFile, JSON.stringify(testConfig({ local: { trainers: { instant: fakeTrainer('ok', 0) } } }, path.join(home, 'starts.log'))));

let client: Client;
let connection: Connection;
let worker: ChildProcess | undefined;
let api: ChildProcess | undefined;
let port = 0;

function spawnApi(): ChildProcess {
  return spawn(process.execPath, [MAIN, 'api'], {
    stdio: ['ignore', 'ignore', openSync(path.join(home, 'api.log'), 'a')],
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: temporalAddress(),
      FORGE_HOME: home,
      FORGE_CONFIG: configFile,
      FORGE_API_PORT: String(port),
      FORGE_ORCHESTRATOR_TASK_QUEUE: TQ,
      FORGE_API_LOG_LEVEL: 'error',
    },
  });
}

async function apiReady(): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('API never became ready');
    await sleep(50);
  }
}

async function submit(spec: SignedSpec): Promise<number | 'network'> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 'network';
  }
}

beforeAll(async () => {
  ({ client, connection } = await testClient());
  port = await freePort();
  worker = spawnWorker({ home, configFile, taskQueue: TQ });
});
afterAll(async () => {
  await killHard(api);
  await killHard(worker);
  await connection?.close();
});

test(`SIGKILL of the API during ${SUBMISSIONS} concurrent submissions (${ROUNDS}×): each job exists once and completes`, async () => {
  const expected: Expectation[] = [];
  const rounds: object[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    api = spawnApi();
    await apiReady();
    const specs = Array.from({ length: SUBMISSIONS }, () => makeSignedSpec({ trainer: { image: 'instant' } }));
    let answered = 0;
    const first = specs.map((s) =>
      submit(s).then((r) => {
        if (typeof r === 'number') answered++;
        return r;
      }),
    );
    // Kill it once part of the burst has been answered: some accepted, some in flight, some not yet sent.
    const killAfter = [20, 60, 120][round % 3]!;
    const deadline = Date.now() + 20_000;
    while (answered < killAfter && Date.now() < deadline) await sleep(2);
    await killHard(api);
    const firstResults = await Promise.all(first);
    api = spawnApi();
    await apiReady();
    // Clients retry what failed (network error or 5xx), with the same signed spec.
    const final = [...firstResults];
    let retries = 0;
    for (let pass = 0; pass < 10 && final.some((r) => r === 'network' || (typeof r === 'number' && r >= 500)); pass++) {
      await Promise.all(
        final.map(async (r, i) => {
          if (r !== 'network' && (r as number) < 500) return;
          retries++;
          final[i] = await submit(specs[i]!);
        }),
      );
    }
    const tally = (rs: (number | 'network')[]): Record<string, number> => rs.reduce<Record<string, number>>((t, r) => ((t[String(r)] = (t[String(r)] ?? 0) + 1), t), {});
    rounds.push({ killAfterAnswers: killAfter, firstTry: tally(firstResults), retries, afterRetries: tally(final) });
    expect(final.every((r) => r === 201 || r === 200)).toBe(true);
    for (const s of specs) expected.push({ jobId: s.job_id, state: 'COMPLETED', attempts: 1, countSpuriousLost: true });
    await killHard(api);
  }
  const verdict = await verifyJobs(client, home, expected, 180_000);
  report('api-kill', { submissions: SUBMISSIONS * ROUNDS, rounds, ...verdict });
  expect(verdict.problems).toEqual([]);
}, 400_000);
