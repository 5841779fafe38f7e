/**
 * Chaos for remote backends, (g): a real network partition between the orchestrator and a fake provider (issue 13
 * point 6). The orchestrator worker runs in one network namespace, the fake Prime Intellect API (and its pods' agents)
 * in another, joined by a veth pair; the link is set down mid-run for longer than the request timeout, then up. Every
 * job must end as remote-harness.ts's invariants say. Skipped, saying why, where `ip netns` is not permitted.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { FAKE_TRAINER_SH } from '../fakes/container';
import { startJob, tempDir, temporalAddress, testClient } from '../helpers/forge';
import { exited, MAIN } from '../helpers/processes';
import { chaosSeed, FULL, report, rng, sleep } from './harness';
import { makePartition, netnsUnavailable, type Partition } from './netns/netns';
import { allRunning, PI_KEY, RemoteWorld, verifyRemote, type FakeRecord, type RemoteExpectation } from './remote-harness';

const TQ = 'chaos-partition';
const STATUS_MS = 500;
const REQUEST_TIMEOUT_MS = 1000;
const JOBS = FULL ? 6 : 2;
const why = netnsUnavailable();
const seed = chaosSeed();
const rand = rng(seed);

if (why) {
  console.warn(`[chaos] partition.test.ts skipped: ${why}`);
}
const maybe = why ? test.skip : test;

jest.setTimeout(FULL ? 600_000 : 120_000);
let world: RemoteWorld;
let net: Partition | undefined;
let fake: ChildProcess | undefined;
let worker: ChildProcess | undefined;
let client: Client;
let connection: Connection | undefined;
let stateFile = '';
let farUrl = '';

async function startFake(p: Partition, dir: string): Promise<string> {
  stateFile = path.join(dir, 'pi-state.json');
  const scenario = {
    apiKey: PI_KEY,
    host: p.providerAddress,
    offers: [{ cloudId: 'c1', gpuType: 'CPU_NODE', gpuCount: 1, price: 1.5 }],
    templates: { 'tpl-trainer': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', '5'] } } },
    provisionMs: 100,
  };
  const register = path.join(__dirname, 'netns', 'ts-register.js');
  fake = p.spawnIn(p.provider, [process.execPath, '-r', register, path.join(__dirname, 'netns', 'pi-server.ts'), JSON.stringify(scenario), stateFile], process.env, 'pipe');
  return new Promise<string>((resolve, reject) => {
    let out = '';
    fake!.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const m = /url (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    fake!.stderr!.on('data', (c: Buffer) => process.stderr.write(c));
    fake!.once('exit', (code) => reject(new Error(`the fake Prime Intellect in namespace ${p.provider} exited ${code} before listening`)));
  });
}

/** The far fake's pods as it last wrote them. */
async function farRecords(): Promise<FakeRecord[]> {
  await sleep(300);
  if (!existsSync(stateFile)) return [];
  const pods = JSON.parse(readFileSync(stateFile, 'utf8')) as { id: string; name: string; status: string; running: boolean }[];
  return pods.map((p) => ({ id: `far:${p.id}`, name: p.name, open: (p.status !== 'TERMINATED' && p.status !== 'GONE') || p.running }));
}

beforeAll(async () => {
  if (why) return;
  const dir = tempDir('forge-chaos-netns-');
  net = makePartition(dir);
  farUrl = await startFake(net, dir);
  world = new RemoteWorld({ taskQueue: TQ, statusMs: STATUS_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS, trainerSeconds: 5, remotePi: { far: farUrl } });
  await world.start();
  // The worker's way to Temporal and to the webhook receiver: unix-socket bridges, not the partitioned link.
  const temporal = temporalAddress();
  await net.bridge(Number(temporal.split(':').at(-1)));
  await net.bridge(Number(new URL(world.webhook.url).port));
  worker = net.spawnIn(net.orchestrator, [process.execPath, MAIN, 'orchestrator'], {
    ...process.env,
    TEMPORAL_ADDRESS: temporal,
    FORGE_HOME: world.home,
    FORGE_CONFIG: world.configFile,
    FORGE_ORCHESTRATOR_TASK_QUEUE: TQ,
    FORGE_WORKFLOW_BUNDLE: process.env.FORGE_TEST_WORKFLOW_BUNDLE,
    FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS: '1',
    FORGE_WORKER_LOG_LEVEL: 'ERROR',
  });
  ({ client, connection } = await testClient());
}, 60_000);

afterAll(async () => {
  await connection?.close();
  if (worker && worker.exitCode === null) {
    worker.kill('SIGKILL');
    await exited(worker);
  }
  if (fake && fake.exitCode === null) {
    fake.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited(fake), new Promise((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
  }
  await world?.stop();
  net?.remove();
});

maybe(`(g) a network partition between the orchestrator and the provider for 3× the request timeout (full size: 30 s), then healed: every job completes, nothing left open (seed ${seed})`, async () => {
  const jobs = await Promise.all(
    Array.from({ length: JOBS }, async () => {
      const spec = world.spec('far');
      return { handle: await startJob(client, TQ, spec), jobId: spec.job_id };
    }),
  );
  await allRunning(jobs.map((j) => j.handle));
  await sleep(Math.floor(rand() * 1000));
  const cutMs = FULL ? 30_000 : 3 * REQUEST_TIMEOUT_MS;
  const far = new URL(farUrl);
  expect(net!.reaches(far.hostname, Number(far.port))).toBe(true);
  net!.cut();
  const started = Date.now();
  // A real partition: the orchestrator's namespace cannot reach the provider's (while the pods there run on).
  expect(net!.reaches(far.hostname, Number(far.port))).toBe(false);
  await sleep(Math.max(0, cutMs - (Date.now() - started)));
  net!.heal();
  expect(net!.reaches(far.hostname, Number(far.port))).toBe(true);
  const verdict = await verifyRemote(client, world, jobs.map((j): RemoteExpectation => ({ ...j, maxAttempts: 1 })), { extraRecords: farRecords });
  report('remote-g-partition', { seed, cutMs, ...verdict });
  expect(verdict.problems).toEqual([]);
});
