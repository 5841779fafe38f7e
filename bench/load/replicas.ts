/**
 * bench/load part 3 (issue 15), `LOAD_PARTS=replicas`: the same queue of LOAD_REPLICA_JOBS jobs against a local backend
 * with max_concurrent LOAD_REPLICA_CAP, run by 1 and then by 3 orchestrator processes (each its own FORGE_HOME, one task
 * queue): admissions per second, and the most trainers alive at once (from the trainers' own start/end lines), which
 * must never exceed the cap whatever the number of replicas (the backend's admission entity counts for all of them).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { DevServer } from '../../infra/dev-server';
import type { KeyPair } from '../../jobspec/signing';
import { signSpec } from '../../jobspec/signing';
import type { JobStatus } from '../../workflows/messages';
import { benchSpec, median } from '../lifecycle/util';

const num = (name: string, d: number): number => (process.env[name] ? Number(process.env[name]) : d);
const JOBS = num('LOAD_REPLICA_JOBS', 200);
const CAP = num('LOAD_REPLICA_CAP', 5);
const SLEEP = num('LOAD_REPLICA_SLEEP_SECONDS', 1);
const OWNERS = num('LOAD_OWNERS', 10);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ReplicaBenchEnv {
  dir: string;
  server: DevServer;
  client: Client;
  keys: KeyPair[];
  log: (msg: string) => void;
  spawnWorker(dir: string, address: string, taskQueue: string, configFile: string, extra: Record<string, string>): ChildProcess;
  startAll(client: Client, taskQueue: string, specs: Record<string, unknown>[], parallel?: number): Promise<WorkflowHandle[]>;
}

/** Most trainers alive at once, from `start|end <ns>` lines. */
function maxOverlap(file: string): number {
  const events = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [kind, ns] = l.split(' ');
      return { delta: kind === 'start' ? 1 : -1, at: BigInt(ns!) };
    })
    .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.delta - b.delta));
  let live = 0;
  let most = 0;
  for (const e of events) most = Math.max(most, (live += e.delta));
  return most;
}

async function pollers(client: Client, taskQueue: string): Promise<number> {
  const { pollers: p } = await client.workflowService.describeTaskQueue({
    namespace: 'default',
    taskQueue: { name: taskQueue },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  return new Set((p ?? []).map((x) => x.identity)).size;
}

async function run(env: ReplicaBenchEnv, replicas: number): Promise<string> {
  const base = path.join(env.dir, `replicas-${replicas}`);
  mkdirSync(base, { recursive: true });
  const TQ = `load-replicas-${replicas}`;
  const log = path.join(base, 'trainers.log');
  const configFile = path.join(base, 'config.json');
  const trainer = ['/bin/sh', '-c', 'echo "start $(date +%s%N)" >> "$BENCH_LOG"; sleep "$1"; echo "end $(date +%s%N)" >> "$BENCH_LOG"', 'trainer', String(SLEEP)];
  writeFileSync(
    configFile,
    JSON.stringify({
      backends: { local: { kind: 'local', max_concurrent: CAP, poll_interval_ms: 200, trainers: { quick: { command: trainer, env: { BENCH_LOG: log } } } } },
      follow_heartbeat_seconds: 30,
      admission_poll_seconds: 5,
      results: { enabled: false },
    }),
  );
  const homes = Array.from({ length: replicas }, (_, i) => path.join(base, `replica-${i}`));
  const workers = homes.map((home) => {
    mkdirSync(home, { recursive: true });
    return env.spawnWorker(home, env.server.address, TQ, configFile, { FORGE_ORCHESTRATOR_MAX_ACTIVITIES: String(JOBS + 100) });
  });
  try {
    while ((await pollers(env.client, TQ)) < replicas) await sleep(500);
    const specs = Array.from({ length: JOBS }, (_, i) => {
      const k = env.keys[i % OWNERS]!;
      return signSpec(benchSpec(k.did, 'quick') as never, k.secretKey) as unknown as Record<string, unknown>;
    });
    env.log(`part 3: ${JOBS} jobs, max_concurrent ${CAP}, ${replicas} replica(s)`);
    const t0 = Date.now();
    const handles = await env.startAll(env.client, TQ, specs);
    const statuses = (await Promise.all(handles.map((h) => h.result()))) as JobStatus[];
    const wall = (Date.now() - t0) / 1000;
    const admitted = statuses.map((s) => Date.parse(s.transitions.find((x) => x.state === 'SUBMITTED')?.at ?? '')).filter(Number.isFinite).sort((a, b) => a - b);
    const gaps = admitted.slice(1).map((t, i) => (t - admitted[i]!) / 1000);
    const span = (admitted[admitted.length - 1]! - admitted[0]!) / 1000;
    const perReplica = homes.map((h) => {
      try {
        return readdirSync(path.join(h, 'jobs')).length;
      } catch {
        return 0;
      }
    });
    const completed = statuses.filter((s) => s.state === 'COMPLETED').length;
    return `| ${replicas} | ${completed} of ${JOBS} | ${((admitted.length - 1) / span).toFixed(2)} | ${median(gaps).toFixed(2)} | ${maxOverlap(log)} (cap ${CAP}) | ${perReplica.join(' / ')} | ${wall.toFixed(0)} |`;
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null ? r(undefined) : w.once('exit', r)))));
  }
}

export async function replicasPart(env: ReplicaBenchEnv): Promise<string[]> {
  const rows = [await run(env, 1), await run(env, 3)];
  return [
    `### Part 3: max_concurrent ${CAP} with 1 and 3 orchestrator replicas`,
    '',
    `Command: \`LOAD_PARTS=replicas LOAD_REPLICA_JOBS=${JOBS} LOAD_REPLICA_CAP=${CAP} LOAD_REPLICA_SLEEP_SECONDS=${SLEEP} npm run bench:load\`; each replica \`dist/workers/main.js orchestrator\` with its own FORGE_HOME, one task queue; local backend, ${SLEEP} s trainers, ${OWNERS} owners; admission_poll_seconds 5. Admissions are the jobs' SUBMITTED transitions; "at once" counts trainers from their own start/end lines.`,
    '',
    '| replicas | completed | admissions/s (first to last) | median s between admissions | most trainers at once | jobs per replica | wall s |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ];
}
