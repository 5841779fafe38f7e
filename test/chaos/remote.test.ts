/**
 * Chaos for remote backends (issue 13 point 6), against the fakes of the Prime Intellect API and the Akash Console +
 * provider gateway, with orchestrator worker processes: (a) the API down for 2× the status interval mid-run, then
 * back; (b) 503 and 429 storms; (c) answers slower than request_timeout_ms; (d) a provider that loses the lease
 * mid-attempt; (e) a worker SIGKILLed between creating a deployment and recording it; (f) cancel during an outage.
 * (g), the network partition, is in partition.test.ts. Every scenario checks remote-harness.ts's invariants.
 *
 * CI size here; FORGE_CHAOS_FULL=1 (`npm run chaos`) runs more jobs per scenario. FORGE_CHAOS_SEED replays a run.
 */
import type { Client, Connection, WorkflowHandle } from '@temporalio/client';
import type { JobStatus } from '../../workflows/messages';
import { startJob, testClient } from '../helpers/forge';
import { chaosSeed, FULL, report, rng, sleep } from './harness';
import { allRunning, RemoteWorld, verifyRemote, type RemoteExpectation, type RemoteVerdict } from './remote-harness';

const TQ = 'chaos-remote';
const STATUS_MS = 500;
const REQUEST_TIMEOUT_MS = 1000;
const JOBS = FULL ? 8 : 2;
/** (f): how long the API stays down around the cancels (full size: longer than many request timeouts and backoffs). */
const CANCEL_OUTAGE_MS = FULL ? 20_000 : 10 * STATUS_MS;
const seed = chaosSeed();
const rand = rng(seed);
const world = new RemoteWorld({ taskQueue: TQ, statusMs: STATUS_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS, trainerSeconds: 4 });
jest.setTimeout(FULL ? 900_000 : 180_000);
let client: Client;
let connection: Connection | undefined;

beforeAll(async () => {
  await world.start();
  world.spawnWorker();
  ({ client, connection } = await testClient());
});

afterAll(async () => {
  await connection?.close();
  await world.stop();
});

afterEach(async () => {
  world.pi.faults.clear();
  world.akash.faults.clear();
  world.provider.faults.clear();
  await Promise.all([world.pi.up(), world.akash.up()]);
});

async function submit(n: number, provider: string, fallbacks: string[] = []): Promise<{ handle: WorkflowHandle; jobId: string }[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const spec = world.spec(provider, fallbacks);
      return { handle: await startJob(client, TQ, spec), jobId: spec.job_id };
    }),
  );
}

function expectClean(scenario: string, verdict: RemoteVerdict, figures: object = {}): void {
  report(`remote-${scenario}`, { seed, ...verdict, ...figures });
  expect(verdict.problems).toEqual([]);
}

test(`(a) the API is down for 2× the status interval mid-run, then back: every job completes on its first attempt (seed ${seed})`, async () => {
  for (const [name, fake] of [['pi', world.pi], ['akash', world.akash]] as const) {
    const jobs = await submit(JOBS, name);
    await allRunning(jobs.map((j) => j.handle));
    await fake.down();
    await sleep(2 * STATUS_MS);
    await fake.up();
    const verdict = await verifyRemote(client, world, jobs.map((j): RemoteExpectation => ({ ...j, maxAttempts: 1 })));
    expectClean(`a-outage-${name}`, verdict, { outageMs: 2 * STATUS_MS });
  }
});

test(`(b) 503 and 429 storms (30% of requests, from the seeded PRNG) on both APIs: every job completes`, async () => {
  for (const status of [503, 429] as const) {
    world.pi.faults.storm({ status, rate: 0.3, rand, retryAfterSeconds: 1 });
    world.akash.faults.storm({ status, rate: 0.3, rand, retryAfterSeconds: 1 });
    const jobs = [...(await submit(JOBS / 2 || 1, 'pi')), ...(await submit(JOBS / 2 || 1, 'akash'))];
    const verdict = await verifyRemote(client, world, jobs.map((j): RemoteExpectation => ({ ...j })));
    const storms = world.pi.faults.counts.storm + world.akash.faults.counts.storm;
    world.pi.faults.clear();
    world.akash.faults.clear();
    expectClean(`b-storm-${status}`, verdict, { rate: 0.3, stormAnswers: storms });
    expect(storms).toBeGreaterThan(0);
  }
});

test('(c) answers slower than request_timeout_ms for 4 status intervals mid-run: every job completes on its first attempt', async () => {
  const jobs = await submit(JOBS, 'pi');
  await allRunning(jobs.map((j) => j.handle));
  world.pi.faults.delay(REQUEST_TIMEOUT_MS + 500);
  await sleep(4 * STATUS_MS);
  world.pi.faults.delay(0);
  const verdict = await verifyRemote(client, world, jobs.map((j): RemoteExpectation => ({ ...j, maxAttempts: 1 })));
  expectClean('c-slow', verdict, { delayMs: REQUEST_TIMEOUT_MS + 500, slowForMs: 4 * STATUS_MS, delayed: world.pi.faults.counts.delayed });
});

test('(d) the provider loses the lease (Akash) or the pod (Prime Intellect) mid-attempt: LOST, the next attempt completes, the lost one closed', async () => {
  const onAkash = await submit(Math.max(1, JOBS / 2), 'akash', ['pi']);
  const onPi = await submit(Math.max(1, JOBS / 2), 'pi', ['akash']);
  const running = await allRunning([...onAkash, ...onPi].map((j) => j.handle));
  await sleep(Math.floor(rand() * 1000));
  for (const s of running) {
    const d = s.deployments.at(-1)!;
    if (d.backend === 'akash') world.akash.loseLease(String(d.ref.data.dseq));
    else world.pi.lose(d.id);
  }
  const verdict = await verifyRemote(client, world, [...onAkash, ...onPi].map((j): RemoteExpectation => ({ ...j, maxAttempts: 2 })));
  expectClean('d-lost-lease', verdict);
  for (const [jobs, lost, next] of [[onAkash, 'akash', 'pi'], [onPi, 'pi', 'akash']] as const) {
    for (const j of jobs) {
      const s = await j.handle.query<JobStatus>('status');
      expect(s.errors.map((e) => [e.class, e.backend])).toEqual([['LOST', lost]]);
      expect(s.deployments.map((d) => [d.backend, d.closed])).toEqual([[lost, true], [next, true]]);
    }
  }
});

test('(e) a worker SIGKILLed between creating a deployment and recording it: another worker adopts it, one deployment per attempt, nothing left open', async () => {
  for (const [name, fake] of [['pi', world.pi], ['akash', world.akash]] as const) {
    const kills = FULL ? 3 : 1;
    const jobs: { handle: WorkflowHandle; jobId: string }[] = [];
    for (let round = 0; round < kills; round++) {
      // The first create of the round: every worker is killed before the answer leaves; then a new worker starts.
      let killed = false;
      let replaced: Promise<void> | undefined;
      fake.faults.holdCreate(() => {
        if (killed) return;
        killed = true;
        replaced = world.killWorkers().then(() => {
          fake.faults.holdCreate(undefined);
          fake.faults.release();
          world.spawnWorker();
        });
      });
      const [job] = await submit(1, name);
      jobs.push(job!);
      const deadline = Date.now() + 60_000;
      while (!replaced && Date.now() < deadline) await sleep(50);
      expect(killed).toBe(true);
      await replaced;
    }
    const verdict = await verifyRemote(client, world, jobs.map((j): RemoteExpectation => ({ ...j, maxAttempts: 1 })));
    expectClean(`e-kill-after-create-${name}`, verdict, { kills });
  }
});

test('(f) cancel during an outage (5 s; full size 20 s): CANCELLED, no failure recorded, the deployment closed once the API is back', async () => {
  const jobs = await submit(JOBS, 'pi');
  await allRunning(jobs.map((j) => j.handle));
  await world.pi.down();
  await Promise.all(jobs.map((j) => j.handle.cancel()));
  await sleep(CANCEL_OUTAGE_MS);
  await world.pi.up();
  const verdict = await verifyRemote(client, world, jobs.map((j): RemoteExpectation => ({ ...j, states: ['CANCELLED'], maxAttempts: 1, noErrors: true })));
  expectClean('f-cancel-in-outage', verdict, { outageMs: CANCEL_OUTAGE_MS });
});


/**
 * Full size only (`npm run chaos`): a cancel during an outage longer than the control activities' own retries
 * (FORGE_CHAOS_LONG_OUTAGE_SECONDS, default 180): issue 13 saw such a job end Temporal-Failed with its pod left
 * running. Needs the outage budget (backend_outage_seconds): fails before it is merged.
 */
const LONG_OUTAGE_S = Number(process.env.FORGE_CHAOS_LONG_OUTAGE_SECONDS ?? 180);
(FULL || process.env.FORGE_CHAOS_LONG_OUTAGE_SECONDS ? test : test.skip)(`(f, long) cancel during a ${LONG_OUTAGE_S} s outage: CANCELLED, not Temporal-Failed, the pod deleted once the API is back`, async () => {
  const jobs = await submit(2, 'pi');
  await allRunning(jobs.map((j) => j.handle));
  await world.pi.down();
  await Promise.all(jobs.map((j) => j.handle.cancel()));
  await sleep(LONG_OUTAGE_S * 1000);
  await world.pi.up();
  const verdict = await verifyRemote(client, world, jobs.map((j): RemoteExpectation => ({ ...j, states: ['CANCELLED'], maxAttempts: 1, noErrors: true })), { timeoutMs: 600_000 });
  expectClean('f-cancel-in-long-outage', verdict, { outageMs: LONG_OUTAGE_S * 1000 });
}, 900_000);
