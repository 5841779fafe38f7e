/**
 * Chaos: trainer processes killed from outside while they run — SIGKILL of the trainer (as the OOM killer does),
 * SIGTERM of a trainer that does not trap it, SIGKILL of its whole process group (wrapper included, as a reclaimed
 * host would). Each is a failed attempt the job survives: a retry on a fresh attempt completes it, nothing of the
 * killed attempt keeps running (its left-over children are stopped when the deployment is closed).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Client, Connection } from '@temporalio/client';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, readStarts, startJob, tempDir, testClient, testConfig, waitForStatus } from '../helpers/forge';
import { FULL, killHard, report, sleep, spawnWorker, verifyJobs, type Expectation } from './harness';

const TQ = 'test-chaos-trainer-kill';
const ROUNDS = FULL ? 5 : 1;
const home = tempDir('forge-chaos-trainer-');
const starts = path.join(home, 'starts.log');
const configFile = path.join(home, 'config.json');
writeFileSync(configFile, JSON.stringify(testConfig({ local: { trainers: { slow: fakeTrainer('ok', 5) } } }, starts)));

let client: Client;
let connection: Connection;
let worker: ChildProcess | undefined;
beforeAll(async () => {
  ({ client, connection } = await testClient());
  worker = spawnWorker({ home, configFile, taskQueue: TQ });
});
afterAll(async () => {
  await killHard(worker);
  await connection?.close();
});

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

test(`trainers killed mid-run (${ROUNDS * 3} kills): each job retries once and completes, no orphan, nothing open`, async () => {
  const started = Date.now();
  const how = [
    { name: 'SIGKILL trainer', act: (pid: number) => kill(pid, 'SIGKILL'), lastError: 'PREEMPTED' },
    { name: 'SIGTERM trainer', act: (pid: number) => kill(pid, 'SIGTERM'), lastError: 'PREEMPTED' },
    // The wrapper leads the group: its pid is the group id (the trainer's parent).
    { name: 'SIGKILL group', act: (pid: number) => kill(-Number(readParent(pid)), 'SIGKILL'), lastError: 'LOST' },
  ];
  const expected: Expectation[] = [];
  const errors: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const specs = how.map(() => makeSignedSpec({ trainer: { image: 'slow' } }));
    const handles = await Promise.all(specs.map((s) => startJob(client, TQ, s)));
    await Promise.all(handles.map((h) => waitForStatus(h, (s) => s.state === 'RUNNING')));
    // Wait for each trainer's first line (its pid is in the starts log), then kill it the scenario's way.
    for (const [i, spec] of specs.entries()) {
      const deadline = Date.now() + 10_000;
      let pid: number | undefined;
      while (!(pid = readStarts(starts).find((s) => s.job === spec.job_id && s.attempt === 1)?.pid)) {
        if (Date.now() > deadline) throw new Error(`trainer of ${spec.job_id} never started`);
        await sleep(50);
      }
      how[i]!.act(pid);
      expected.push({ jobId: spec.job_id, state: 'COMPLETED', attempts: 2 });
    }
    const results = await Promise.all(handles.map((h) => h.result() as Promise<{ errors: { class: string }[] }>));
    results.forEach((r, i) => {
      if (r.errors[0]?.class !== how[i]!.lastError) errors.push(`${how[i]!.name}: first error ${r.errors[0]?.class}, expected ${how[i]!.lastError}`);
    });
  }
  const verdict = await verifyJobs(client, home, expected);
  report('trainer-kill', { kills: expected.length, seconds: (Date.now() - started) / 1000, ...verdict, errors });
  expect(errors).toEqual([]);
  expect(verdict.problems).toEqual([]);
}, 300_000);

/** The parent pid of a process (the wrapper, for a trainer). */
function readParent(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]!;
}
