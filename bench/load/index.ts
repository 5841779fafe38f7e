/**
 * bench/load (issue 8): `npm run bench:load`. Prints a Markdown section for BENCHMARKS.md (## Load).
 *
 * Part 1, running (LOAD_JOBS, default 1000): that many jobs running at once on ONE orchestrator worker process (the
 * image's entrypoint, dist/workers/main.js orchestrator), each a local trainer that sleeps LOAD_SLEEP_SECONDS (a
 * twentieth of them sleep LOAD_SHORT_SECONDS instead, to show that history does not grow with duration). Measures the
 * worker's RSS (sampled every second from /proc), the time until all run at once, history events and Temporal
 * actions per job, and actions per job-hour.
 *
 * Part 2, queued (LOAD_QUEUED, default 10000): that many jobs submitted at once against a backend capped at
 * LOAD_CAP concurrent attempts, from LOAD_OWNERS owners of which the first floods half of the queue before the others
 * submit. Measures admission order per owner: the wait until each owner's first admission and its share of the
 * first admissions — whether any owner is starved.
 *
 * Part 3, replicas (bench/load/replicas.ts): one queue under a cap, run by 1 and by 3 orchestrator processes side by side.
 *
 * LOAD_PARTS=running,queued,replicas chooses the parts (default running,queued). The Temporal CLI dev server runs in memory, headless.
 * LOAD_WORKER_NODE_ARGS: extra node flags for the worker process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see
 * where its CPU goes (Node refuses --cpu-prof in NODE_OPTIONS).
 */
import { jobPriority } from '../../common/job-priority';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { startDevServer, type DevServer } from '../../infra/dev-server';
import { generateKeyPair, signSpec, type KeyPair } from '../../jobspec/signing';
import type { JobStatus } from '../../workflows/messages';
import { benchSpec, freePort, median, percentile } from '../lifecycle/util';
import { replicasPart } from './replicas';

const num = (name: string, d: number): number => (process.env[name] ? Number(process.env[name]) : d);
const PARTS = (process.env.LOAD_PARTS ?? 'running,queued').split(',');
const JOBS = num('LOAD_JOBS', 1000);
const SLEEP = num('LOAD_SLEEP_SECONDS', 240);
const SHORT = num('LOAD_SHORT_SECONDS', 30);
const QUEUED = num('LOAD_QUEUED', 10_000);
const CAP = num('LOAD_CAP', 50);
const OWNERS = num('LOAD_OWNERS', 10);
const QUEUED_SLEEP = num('LOAD_QUEUED_SLEEP_SECONDS', 1);
const QUEUED_POLL = num('LOAD_QUEUED_POLL_SECONDS', 60);
/** Workflow-task (and local-activity) slots of the worker: how many workflows it activates at once. */
const WORKFLOW_TASKS = process.env.LOAD_WORKFLOW_TASKS ?? '50';
const HEARTBEAT_SECONDS = 60;
const MAIN = path.resolve(__dirname, '..', '..', 'workers', 'main.js');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (msg: string): void => console.error(`[bench:load] ${msg}`);

/** VmRSS and VmHWM (peak) of a process, in MiB. */
function rss(pid: number): { rss: number; peak: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** The worker's own view of its memory (prom-client on its health port): V8 heap, external, array buffers (MiB). */
async function workerMemory(healthPort: number): Promise<string> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
    const pick = (name: string): string => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
      return m ? `${(Number(m[1]) / 2 ** 20).toFixed(0)}` : '?';
    };
    return `heap used ${pick('forge_worker_nodejs_heap_size_used_bytes')} of ${pick('forge_worker_nodejs_heap_size_total_bytes')}, external ${pick('forge_worker_nodejs_external_memory_bytes')} MiB`;
  } catch {
    return 'unknown';
  }
}

function spawnWorker(dir: string, address: string, taskQueue: string, configFile: string, extra: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...(process.env.LOAD_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? []), MAIN, 'orchestrator'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: address,
      FORGE_HOME: dir,
      FORGE_EMBEDDED: '1', // one machine, one FORGE_HOME: the embedded stack (makes its orchestrator key)
      FORGE_CONFIG: configFile,
      FORGE_ORCHESTRATOR_TASK_QUEUE: taskQueue,
      FORGE_WORKER_LOG_LEVEL: 'WARN',
      ...extra,
    },
  });
}

/** Starts jobs with at most `parallel` starts in flight. */
async function startAll(client: Client, taskQueue: string, specs: Record<string, unknown>[], parallel = 32): Promise<WorkflowHandle[]> {
  const handles: WorkflowHandle[] = new Array(specs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < specs.length) {
        const i = next++;
        const s = specs[i]!;
        handles[i] = await client.workflow.start('trainingJob', { taskQueue, workflowId: `job-${String(s.job_id)}`, args: [s], priority: jobPriority(String(s.owner_did)) });
      }
    }),
  );
  return handles;
}

async function countState(client: Client, taskQueue: string, state: string): Promise<number> {
  return (await client.workflow.count(`TaskQueue = '${taskQueue}' AND ForgeJobState = '${state}'`)).count;
}

/**
 * Billable Temporal actions in one history, after Temporal Cloud's list: workflow start, activities scheduled, local
 * activities (one marker each), timers, signals, accepted updates, search-attribute upserts, memo changes, children.
 */
const ACTION_ATTRIBUTES = [
  'workflowExecutionStartedEventAttributes',
  'activityTaskScheduledEventAttributes',
  'markerRecordedEventAttributes',
  'timerStartedEventAttributes',
  'workflowExecutionSignaledEventAttributes',
  'workflowExecutionUpdateAcceptedEventAttributes',
  'upsertWorkflowSearchAttributesEventAttributes',
  'workflowPropertiesModifiedEventAttributes',
  'startChildWorkflowExecutionInitiatedEventAttributes',
] as const;

function actionsOf(events: object[]): { events: number; actions: number } {
  let actions = 0;
  for (const e of events) {
    const r = e as Record<string, unknown>;
    if (ACTION_ATTRIBUTES.some((k) => r[k] !== undefined && r[k] !== null)) actions++;
  }
  return { events: events.length, actions };
}

/** The kind of a history event: the name of its one `…EventAttributes` field. */
function kindOf(e: object): string {
  const key = Object.keys(e).find((k) => k.endsWith('EventAttributes') && (e as Record<string, unknown>)[k] != null);
  return key?.replace(/EventAttributes$/, '') ?? 'unknown';
}

async function historyStats(handles: WorkflowHandle[]): Promise<{ events: number[]; actions: number[]; kinds: Map<string, number[]> }> {
  const events: number[] = [];
  const actions: number[] = [];
  const kinds = new Map<string, number[]>();
  for (const [i, h] of handles.entries()) {
    const history = await h.fetchHistory();
    const a = actionsOf(history.events ?? []);
    events.push(a.events);
    actions.push(a.actions);
    for (const e of history.events ?? []) {
      const k = kindOf(e);
      const row = kinds.get(k) ?? new Array<number>(handles.length).fill(0);
      row[i] = (row[i] ?? 0) + 1;
      kinds.set(k, row);
    }
  }
  if (process.env.LOAD_DEBUG) for (const [k, row] of kinds) log(`${k}: ${row.join(' ')}`);
  return { events, actions, kinds };
}

interface Env {
  dir: string;
  server: DevServer;
  client: Client;
  keys: KeyPair[];
}

// ---- part 1: N jobs running at once on one worker --------------------------------------------------------------------

async function running(env: Env): Promise<string[]> {
  const { dir, server, client } = env;
  const TQ = 'load-running';
  const home = path.join(dir, 'running');
  const configFile = path.join(dir, 'running.json');
  const trainer = (s: number): { command: string[] } => ({ command: ['/bin/sh', '-c', 'echo \'{"event":"progress","step":1,"max_steps":1}\'; exec sleep "$1"', 'trainer', String(s)] });
  writeFileSync(
    configFile,
    JSON.stringify({
      backends: { local: { kind: 'local', poll_interval_ms: 10_000, trainers: { long: trainer(SLEEP), short: trainer(SHORT) } } },
      follow_heartbeat_seconds: HEARTBEAT_SECONDS,
      admission_poll_seconds: 5,
      results: { enabled: false },
    }),
  );
  const healthPort = await freePort();
  const worker = spawnWorker(home, server.address, TQ, configFile, {
    FORGE_HEALTH_ADDRESS: `127.0.0.1:${healthPort}`,
    FORGE_ORCHESTRATOR_MAX_ACTIVITIES: String(JOBS + 100),
    ...(process.env.LOAD_CACHE ? { FORGE_ORCHESTRATOR_MAX_CACHED_WORKFLOWS: process.env.LOAD_CACHE } : {}),
    FORGE_ORCHESTRATOR_MAX_WORKFLOW_TASKS: WORKFLOW_TASKS,
    FORGE_ORCHESTRATOR_MAX_LOCAL_ACTIVITIES: WORKFLOW_TASKS,
  });
  await sleep(3000);
  const idle = rss(worker.pid!);
  const shortEvery = 20;
  const specs = Array.from({ length: JOBS }, (_, i) => signSpec(benchSpec(env.keys[i % env.keys.length]!.did, i % shortEvery === 0 ? 'short' : 'long') as never, env.keys[i % env.keys.length]!.secretKey) as unknown as Record<string, unknown>);
  const t0 = Date.now();
  let peakRss = idle.rss;
  let rssAtAll = 0;
  let memoryAtAll = '';
  let maxRunning = 0;
  let allRunningAt: number | undefined;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        peakRss = Math.max(peakRss, rss(worker.pid!).rss);
      } catch {
        // worker gone
      }
      await sleep(1000);
    }
  })();
  log(`part 1: starting ${JOBS} jobs (${JOBS - Math.ceil(JOBS / shortEvery)} × ${SLEEP} s, ${Math.ceil(JOBS / shortEvery)} × ${SHORT} s) on one worker`);
  const handles = await startAll(client, TQ, specs);
  log(`part 1: ${JOBS} started in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const longOnes = JOBS - Math.ceil(JOBS / shortEvery);
  for (;;) {
    const [runningNow, completed] = await Promise.all([countState(client, TQ, 'RUNNING'), countState(client, TQ, 'COMPLETED')]);
    maxRunning = Math.max(maxRunning, runningNow);
    if (allRunningAt === undefined && runningNow + completed >= JOBS && runningNow >= longOnes) {
      allRunningAt = Date.now();
      rssAtAll = rss(worker.pid!).rss;
      memoryAtAll = await workerMemory(healthPort);
      log(`part 1: all ${runningNow} long jobs RUNNING at once after ${((allRunningAt - t0) / 1000).toFixed(1)} s; worker RSS ${rssAtAll.toFixed(0)} MiB (${memoryAtAll})`);
    }
    if (completed >= JOBS) break;
    if (Date.now() - t0 > (SLEEP + 900) * 1000) throw new Error(`part 1: only ${completed} of ${JOBS} completed`);
    await sleep(5000);
  }
  const wall = (Date.now() - t0) / 1000;
  sampling = false;
  await sampler;
  const finalRss = rss(worker.pid!);
  const results = (await Promise.all(handles.map((h) => h.result()))) as JobStatus[];
  const notCompleted = results.filter((r) => r.state !== 'COMPLETED').length;
  const sample = (from: number, step: number, n: number): WorkflowHandle[] => handles.filter((_, i) => i % step === from).slice(0, n);
  const shortStats = await historyStats(sample(0, shortEvery, 25));
  const longStats = await historyStats(handles.filter((_, i) => i % shortEvery !== 0).slice(0, 50));
  worker.kill('SIGTERM');
  await new Promise((r) => worker.once('exit', r));

  // Actions per job-hour: the history's actions (independent of duration) plus the follow activity's heartbeats,
  // which the SDK sends at most once per 0.8 × heartbeat timeout and only while the trainer runs.
  const perHourHeartbeats = 3600 / (0.8 * HEARTBEAT_SECONDS);
  const actionsLong = median(longStats.actions);
  const hours = SLEEP / 3600;
  return [
    `### Part 1: ${JOBS} jobs running at once on one orchestrator worker`,
    '',
    `Command: \`${process.env.LOAD_CACHE ? `LOAD_CACHE=${process.env.LOAD_CACHE} ` : ''}${process.env.LOAD_WORKFLOW_TASKS ? `LOAD_WORKFLOW_TASKS=${WORKFLOW_TASKS} ` : ''}LOAD_PARTS=running LOAD_JOBS=${JOBS} LOAD_SLEEP_SECONDS=${SLEEP} LOAD_SHORT_SECONDS=${SHORT} npm run bench:load\`; ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, Temporal CLI dev server in memory, worker = \`dist/workers/main.js orchestrator\` with FORGE_ORCHESTRATOR_MAX_ACTIVITIES=${JOBS + 100}, MAX_CACHED_WORKFLOWS=${process.env.LOAD_CACHE ?? '100 (default)'}, MAX_WORKFLOW_TASKS=MAX_LOCAL_ACTIVITIES=${WORKFLOW_TASKS}; local backend, trainer = \`sh -c 'sleep N'\`, poll_interval_ms 10000, follow_heartbeat_seconds ${HEARTBEAT_SECONDS}.`,
    '',
    '| measure | value | target |',
    '|---|---|---|',
    `| jobs, all COMPLETED | ${JOBS - notCompleted} of ${JOBS} | all |`,
    `| most jobs RUNNING at once | ${maxRunning} | ${longOnes} (every long job) |`,
    `| time until every long job ran at once | ${allRunningAt ? ((allRunningAt - t0) / 1000).toFixed(0) : 'never'} s | |`,
    `| worker RSS idle / with all running / peak (sampled 1/s) / VmHWM | ${idle.rss.toFixed(0)} / ${rssAtAll.toFixed(0)} / ${peakRss.toFixed(0)} / ${finalRss.peak.toFixed(0)} MiB | ≤ 1024 MiB (${finalRss.peak <= 1024 ? 'met' : 'NOT met'}) |`,
    `| the worker's V8 view with all running | ${memoryAtAll} | |`,
    `| history events per job, ${SHORT} s trainer (median, min–max of ${shortStats.events.length}) | ${median(shortStats.events)} (${Math.min(...shortStats.events)}–${Math.max(...shortStats.events)}) | |`,
    `| history events per job, ${SLEEP} s trainer (median, min–max of ${longStats.events.length}) | ${median(longStats.events)} (${Math.min(...longStats.events)}–${Math.max(...longStats.events)}) | independent of duration: the same range for ${(SLEEP / SHORT).toFixed(0)}× the duration (${Math.max(...longStats.events) <= Math.max(...shortStats.events) ? 'met' : 'NOT met'}; a job has 20 or 26 events depending on whether its trainer's first progress line came before the submit returned) |`,
    `| Temporal actions per job in history (median; start, activities, local activities, timers, upserts) | ${actionsLong} | |`,
    `| + follow heartbeats per job-hour (≤ 1 per 0.8 × ${HEARTBEAT_SECONDS} s) | ≤ ${perHourHeartbeats.toFixed(0)} | |`,
    `| Temporal actions per job-hour for ${SLEEP} s jobs: (history + heartbeats) ÷ ${hours.toFixed(3)} h | ≤ ${((actionsLong + perHourHeartbeats * hours) / hours).toFixed(0)} | |`,
    `| Temporal actions per job-hour, long jobs (history amortized → heartbeats only) | → ${perHourHeartbeats.toFixed(0)} | |`,
    `| wall time of the run | ${wall.toFixed(0)} s | |`,
    '',
  ];
}

// ---- part 2: many queued jobs under a per-backend cap, several owners ------------------------------------------------

async function queued(env: Env): Promise<string[]> {
  const { dir, server, client } = env;
  const TQ = 'load-queued';
  const home = path.join(dir, 'queued');
  const configFile = path.join(dir, 'queued.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      backends: {
        local: { kind: 'local', max_concurrent: CAP, poll_interval_ms: 1000, trainers: { quick: { command: ['/bin/sh', '-c', 'exec sleep "$1"', 'trainer', String(QUEUED_SLEEP)] } } },
      },
      follow_heartbeat_seconds: HEARTBEAT_SECONDS,
      // Waiting jobs are woken when their turn comes (fair admission); the poll is only the fallback.
      admission_poll_seconds: QUEUED_POLL,
      results: { enabled: false },
    }),
  );
  const worker = spawnWorker(home, server.address, TQ, configFile, {
    FORGE_ORCHESTRATOR_MAX_ACTIVITIES: String(QUEUED + 100),
    ...(process.env.LOAD_CACHE ? { FORGE_ORCHESTRATOR_MAX_CACHED_WORKFLOWS: process.env.LOAD_CACHE } : {}),
  });
  await sleep(3000);
  // Owner 0 floods half the queue first; then the other owners, interleaved.
  const flood = Math.floor(QUEUED / 2);
  const ownerOf: number[] = [];
  for (let i = 0; i < QUEUED; i++) ownerOf.push(i < flood ? 0 : 1 + ((i - flood) % (OWNERS - 1)));
  const specs = ownerOf.map((o) => signSpec(benchSpec(env.keys[o]!.did, 'quick') as never, env.keys[o]!.secretKey) as unknown as Record<string, unknown>);
  const t0 = Date.now();
  log(`part 2: submitting ${QUEUED} jobs from ${OWNERS} owners (owner 0 first, ${flood} jobs) against max_concurrent ${CAP}`);
  const handles = await startAll(client, TQ, specs, 64);
  const submitted = (Date.now() - t0) / 1000;
  log(`part 2: ${QUEUED} submitted in ${submitted.toFixed(1)} s`);
  let peakRss = 0;
  let done = 0;
  const deadline = t0 + num('LOAD_QUEUED_TIMEOUT_SECONDS', 7200) * 1000;
  while (done < QUEUED) {
    peakRss = Math.max(peakRss, rss(worker.pid!).rss);
    done = (await countState(client, TQ, 'COMPLETED')) + (await countState(client, TQ, 'ABANDONED'));
    if (Date.now() > deadline) break;
    await sleep(5000);
  }
  const wall = (Date.now() - t0) / 1000;
  // The result is the final status (transitions with times); it needs no worker, unlike a query.
  const statuses = (await Promise.all(handles.map((h) => (h.result() as Promise<JobStatus>).catch(() => undefined)))) as (JobStatus | undefined)[];
  worker.kill('SIGTERM');
  await new Promise((r) => worker.once('exit', r));
  // Admission time of each job = its SUBMITTED transition.
  const admitted = statuses.map((s) => {
    const t = s?.transitions.find((x) => x.state === 'SUBMITTED')?.at;
    return t ? (Date.parse(t) - t0) / 1000 : Number.POSITIVE_INFINITY;
  });
  const rows: string[] = [];
  const firstN = Math.min(QUEUED, CAP * 4);
  const order = admitted.map((t, i) => ({ t, owner: ownerOf[i]! })).sort((a, b) => a.t - b.t);
  for (let o = 0; o < OWNERS; o++) {
    const mine = admitted.filter((_, i) => ownerOf[i] === o);
    const finite = mine.filter(Number.isFinite);
    const share = order.slice(0, firstN).filter((x) => x.owner === o).length;
    rows.push(`| ${o}${o === 0 ? ' (flood)' : ''} | ${mine.length} | ${finite.length} | ${Math.min(...finite).toFixed(1)} | ${median(finite).toFixed(1)} | ${percentile(finite, 100).toFixed(1)} | ${share} |`);
  }
  const firstAdmissionWorst = Math.max(...Array.from({ length: OWNERS }, (_, o) => Math.min(...admitted.filter((_, i) => ownerOf[i] === o))));
  return [
    `### Part 2: ${QUEUED} queued jobs, max_concurrent ${CAP}, ${OWNERS} owners`,
    '',
    `Command: \`LOAD_PARTS=queued LOAD_QUEUED=${QUEUED} LOAD_CAP=${CAP} LOAD_OWNERS=${OWNERS} LOAD_QUEUED_SLEEP_SECONDS=${QUEUED_SLEEP} npm run bench:load\`; one worker (FORGE_ADMISSION_FAIRNESS=${process.env.FORGE_ADMISSION_FAIRNESS ?? 'owner'}), admission_poll_seconds ${QUEUED_POLL}. Owner 0 submitted ${flood} jobs first, then owners 1–${OWNERS - 1} the rest, interleaved. Submission took ${submitted.toFixed(0)} s; the run ${wall.toFixed(0)} s; ${done} of ${QUEUED} ended; worker peak RSS ${peakRss.toFixed(0)} MiB. Times are seconds from the first submission to the job's SUBMITTED transition.`,
    '',
    `| owner | jobs | admitted | first admission s | median s | last s | among the first ${firstN} admitted |`,
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Worst owner's first admission: ${firstAdmissionWorst.toFixed(1)} s.`,
    '',
  ];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-load-'));
  const server = await startDevServer({ port: await freePort(), logFile: path.join(dir, 'temporal.log'), readyTimeoutMs: 60_000 });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const keys = Array.from({ length: Math.max(OWNERS, 10) }, () => generateKeyPair());
  const out = ['## Load', '', `Measured on ${new Date().toISOString().slice(0, 10)} by \`bench/load\`.`, ''];
  try {
    if (PARTS.includes('running')) out.push(...(await running({ dir, server, client, keys })));
    if (PARTS.includes('queued')) out.push(...(await queued({ dir, server, client, keys })));
    if (PARTS.includes('replicas')) out.push(...(await replicasPart({ dir, server, client, keys, log, spawnWorker, startAll })));
  } finally {
    await connection.close();
    await server.stop();
  }
  console.log(out.join('\n'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
