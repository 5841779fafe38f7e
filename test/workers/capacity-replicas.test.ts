/**
 * `max_concurrent` across replicas (issue 15): three orchestrator processes (the image's entrypoint,
 * dist/workers/main.js), each with its own FORGE_HOME (an emptyDir each), poll one task queue of one Temporal. The
 * local backend allows one attempt at a time. Every trainer logs when it starts and ends; the admission entity's
 * holders are sampled throughout. Before the entity each replica counted its own attempts, so up to three ran at once.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { generateKeyPair } from '../../jobspec/signing';
import { capacityQuery } from '../../workflows/capacity/messages';
import type { CapacityState } from '../../workflows/capacity/slots';
import type { JobStatus } from '../../workflows/messages';
import { capacityWorkflowId } from '../../common/names';
import { makeSignedSpec } from '../jobspec/fixtures';
import { FAKE_TRAINER, pollUntil, startJob, tempDir, testClient, testConfig, waitForStatus } from '../helpers/forge';
import { exited, spawnWorker } from '../helpers/processes';

const TQ = 'test-capacity-replicas';
const root = tempDir('forge-replicas-');
const homes = [0, 1, 2].map((i) => path.join(root, `replica-${i}`));
const starts = path.join(root, 'starts.log');
const intervals = `${starts}.intervals`;
const never = path.join(root, 'never');
/** Writes `start|end <job> <ns>` around a short sleep (the fake trainer's contract otherwise). */
const timed = ['/bin/sh', '-c', 'echo "start $JOB_ID $(date +%s%N)" >> "$FORGE_TEST_STARTS.intervals"; sleep "$1"; echo "end $JOB_ID $(date +%s%N)" >> "$FORGE_TEST_STARTS.intervals"; echo \'{"loss":0.4}\' > "$FORGE_OUTPUT_DIR/metrics.json"', 'trainer', '1'];
const configFile = path.join(root, 'config.json');
writeFileSync(
  configFile,
  JSON.stringify(
    testConfig({ local: { max_concurrent: 1, trainers: { timed, hold: ['/bin/sh', FAKE_TRAINER, 'wait-file', '0', never] } } }, starts, { admission: { reclaim_seconds: 1 } }),
  ),
);

/** Most trainers alive at once, from their start/end lines. */
function maxOverlap(): { max: number; runs: number } {
  const events = readFileSync(intervals, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [kind, , ns] = l.split(' ');
      return { delta: kind === 'start' ? 1 : -1, at: BigInt(ns!) };
    })
    // Ends before starts at the same instant.
    .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.delta - b.delta));
  let live = 0;
  let max = 0;
  for (const e of events) max = Math.max(max, (live += e.delta));
  return { max, runs: events.filter((e) => e.delta === 1).length };
}

let client: Client;
let connection: Connection;
const workers: ChildProcess[] = [];
beforeAll(async () => {
  ({ client, connection } = await testClient());
  for (const home of homes) {
    mkdirSync(home, { recursive: true });
    workers.push(spawnWorker({ home, configFile, taskQueue: TQ }));
  }
  // Every replica polls before any job starts (else the first one up takes them all).
  await pollUntil(async () => {
    const { pollers } = await client.workflowService.describeTaskQueue({
      namespace: 'default',
      taskQueue: { name: TQ },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    return new Set((pollers ?? []).map((p) => p.identity)).size >= homes.length || undefined;
  }, 'three replicas polling', 150_000); // three processes starting on a loaded 2-core machine took 60 s
}, 180_000);
afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  await Promise.all(workers.map(exited));
  await connection?.close();
});

/** Samples the entity's holders every 100 ms until stopped; returns the most seen. */
function sampleHolders(): { stop: () => Promise<number> } {
  let running = true;
  let most = 0;
  const entity = (): ReturnType<Client['workflow']['getHandle']> => client.workflow.getHandle(capacityWorkflowId('local', TQ));
  const loop = (async () => {
    while (running) {
      try {
        most = Math.max(most, (await entity().query(capacityQuery) as CapacityState).holders.length);
      } catch {
        // not started yet, or between two runs
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return most;
    },
  };
}

test('three replicas, max_concurrent 1, six jobs of two owners: never two trainers at once, all complete', async () => {
  const owners = [generateKeyPair(), generateKeyPair()];
  const specs = Array.from({ length: 6 }, (_, i) => makeSignedSpec({ trainer: { image: 'timed' } }, owners[i % 2]));
  const sampler = sampleHolders();
  const handles = await Promise.all(specs.map((s) => startJob(client, TQ, s)));
  const results = (await Promise.all(handles.map((h) => h.result()))) as JobStatus[];
  const mostHeld = await sampler.stop();
  expect(results.map((r) => r.state)).toEqual(Array(6).fill('COMPLETED'));
  const { max, runs } = maxOverlap();
  expect(runs).toBe(6);
  expect(max).toBe(1);
  expect(mostHeld).toBe(1);
  // The jobs' trainers ran on more than one replica (each replica's FORGE_HOME has its own jobs/).
  const used = homes.filter((h) => existsSync(path.join(h, 'jobs')) && readdirSync(path.join(h, 'jobs')).length > 0);
  expect(used.length).toBeGreaterThanOrEqual(2);
}, 120_000);

test('a job TERMINATED while holding the slot: the entity reclaims it and the next job runs', async () => {
  const held = makeSignedSpec({ trainer: { image: 'hold' } });
  const next = makeSignedSpec({ trainer: { image: 'timed' } });
  const h = await startJob(client, TQ, held);
  await waitForStatus(h, (s) => s.state === 'RUNNING');
  const n = await startJob(client, TQ, next);
  await waitForStatus(n, (s) => s.state === 'QUEUED');
  // Terminate skips the close (docs/operations.md: never do that to a running job); the operator then kills the
  // trainer, as the reaper would. Nobody gives the slot back: only the entity's reclaim can.
  await h.terminate('test: terminated while holding the slot');
  const launch = homes.map((home) => path.join(home, 'jobs', held.job_id, 'attempt-1', 'launch.json')).find((f) => existsSync(f))!;
  const pid = (JSON.parse(readFileSync(launch, 'utf8')) as { pid: number }).pid;
  process.kill(-pid, 'SIGKILL');
  const status = (await n.result()) as JobStatus;
  expect(status.state).toBe('COMPLETED');
  const entity = await pollUntil(async () => {
    const s = (await client.workflow.getHandle(capacityWorkflowId('local', TQ)).query(capacityQuery)) as CapacityState;
    return s.holders.length === 0 ? s : undefined;
  }, 'the entity holding nothing');
  expect(entity.waiters).toEqual([]);
}, 120_000);
