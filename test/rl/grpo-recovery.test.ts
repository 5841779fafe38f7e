/**
 * Failures during an RL run, with workers as real processes (the image's entrypoint, dist/workers/main.js):
 *  - a rollout worker is SIGKILLed while its activities wait on its inference server: they are retried on another
 *    rollout worker (heartbeat timeout) and nothing else is lost;
 *  - the GRPO trainer host holding the policy is SIGKILLed mid-run: the run acquires the other host, which resumes
 *    from the job's last checkpoint, and completes. The training log stays one line per step, the staleness bound
 *    holds across the resume, and no policy process is left running.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import type { GrpoRunResult, RlProgress } from '../../workflows/grpo-run';
import { tempDir } from '../helpers/forge';
import {
  exited,
  grpoEnv,
  queues,
  readSteps,
  rolloutEnv,
  runInput,
  serveModel,
  spawnRole,
  startRollout,
  startRun,
  startRunWorker,
  testClient,
  testSettings,
  tinyModel,
  type InProcess,
  type Served,
} from './harness';
import { recordedVersions } from './history';

const home = tempDir('forge-rl-recovery-');
const q = queues('test-rl-recovery');
const STEPS = 12;
const JOB = '3b9f2a10-5c4d-4e6f-8a7b-9c0d1e2f3a4b';

let client: Client;
let connection: Connection;
const served: Served[] = [];
const inProcess: InProcess<unknown>[] = [];
const procs: ChildProcess[] = [];
let proxy: http.Server | undefined;

/** An HTTP proxy in front of an inference server that calls `onCompletion` at the first completion request and holds it. */
async function holdingProxy(target: string, onCompletion: () => void): Promise<string> {
  let fired = false;
  proxy = http.createServer((req, res) => {
    if (req.url?.startsWith('/v1/completions')) {
      if (!fired) {
        fired = true;
        onCompletion();
      }
      return; // never answered: the worker that sent it dies with it
    }
    const upstream = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy!.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return (async () => {
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
}

function policyProcesses(): string[] {
  try {
    return execFileSync('pgrep', ['-f', `grpo-server.*${JOB}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

beforeAll(async () => {
  ({ client, connection } = await testClient());
  const model = await tinyModel();
  served.push(...(await Promise.all([serveModel(model, path.join(home, 'serve-a.log')), serveModel(model, path.join(home, 'serve-b.log'))])));
  inProcess.push(await startRunWorker(q, home));
}, 60_000);

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  for (const s of inProcess.reverse()) await s.stop();
  for (const s of served) await s.stop();
  proxy?.close();
  await connection?.close();
});

test('a killed rollout worker and a killed trainer host cost only a retry and a resume', async () => {
  // Rollout worker A alone at first, behind a proxy that holds its first completion request and kills A there.
  let killedRollout = false;
  const proxied = await holdingProxy(served[0]!.url, () => {
    rolloutA.kill('SIGKILL');
    killedRollout = true;
  });
  const rolloutA = spawnRole('rollout', rolloutEnv(q, proxied, home, 'rA'), path.join(home, 'rollout-a.log'));
  procs.push(rolloutA);
  const hosts = new Map<string, ChildProcess>();
  for (const id of ['g1', 'g2']) {
    const p = spawnRole('grpo', { ...grpoEnv(q, home, id), FORGE_HOME: home }, path.join(home, `grpo-${id}.log`));
    procs.push(p);
    hosts.set(id, p);
  }

  const input = runInput({ jobId: JOB, maxSteps: STEPS, model: await tinyModel(), settings: testSettings(q), checkpointInterval: 3 });
  const handle = await startRun(client, q, input);

  // A dies holding rollouts; B comes up and gets them when their heartbeats time out.
  await until('the rollout worker to be killed mid-activity', async () => (killedRollout ? true : undefined));
  await exited(rolloutA);
  inProcess.push(await startRollout(rolloutEnv(q, served[1]!.url, home, 'rB')));

  // Once a few steps are done, the host that holds the policy dies.
  const holder = await until('step 5', async () => {
    const s = await handle.query<RlProgress>('status');
    return s.latest && s.latest.step >= 5 ? s.host! : undefined;
  });
  hosts.get(holder)!.kill('SIGKILL');
  await exited(hosts.get(holder)!);

  const result = (await handle.result()) as GrpoRunResult;
  expect(result.steps).toBe(STEPS);
  expect(result.hostLosses).toBe(1);
  expect(result.hostId).not.toBe(holder);

  const metrics = JSON.parse(readFileSync(path.join(result.outputDir, 'metrics.json'), 'utf8')) as { resumed_from: number | null };
  expect(metrics.resumed_from).toBeGreaterThanOrEqual(3); // a checkpoint (every 3 steps, or the one the dying policy process wrote)
  const steps = readSteps(readFileSync(path.join(result.outputDir, 'training_log.jsonl'), 'utf8'));
  expect(steps.map((s) => s.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
  expect(Math.max(...steps.map((s) => s.staleness_max))).toBeLessThanOrEqual(1);

  // The versions recorded in the history: every update within the bound, across the resume.
  const recorded = await recordedVersions(client, handle.workflowId);
  for (const u of recorded.updates) for (const v of u.versions) expect(u.step - 1 - v).toBeLessThanOrEqual(1);

  // Rollouts A held were retried and completed by B.
  const history = await handle.fetchHistory();
  const types = new Map(
    (history.events ?? [])
      .filter((e) => e.activityTaskScheduledEventAttributes)
      .map((e) => [String(e.eventId), e.activityTaskScheduledEventAttributes!.activityType?.name]),
  );
  const retried = (history.events ?? []).filter(
    (e) => e.activityTaskStartedEventAttributes && types.get(String(e.activityTaskStartedEventAttributes.scheduledEventId)) === 'rollout' && (e.activityTaskStartedEventAttributes.attempt ?? 1) > 1,
  );
  expect(retried.length).toBeGreaterThan(0);
  expect(retried.every((e) => e.activityTaskStartedEventAttributes!.identity === 'rollout@rB')).toBe(true);

  // Nothing left running: the survivor released its session, the dead host's policy process went with it.
  await until('no policy process of the job', async () => (policyProcesses().length === 0 ? true : undefined), 30_000);
});
