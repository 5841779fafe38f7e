/**
 * Recovery latency (issue 13 point 7): from a deployment's death — a local trainer SIGKILLed, a lease closed on the
 * fake Akash — to the job's next attempt RUNNING, against the floor the configuration sets (the status interval in
 * which the death is seen + the retry backoff before the next submit). Used by `npm run bench:recovery`
 * (bench/recovery/index.ts, full size) and by test/bench/recovery.test.ts (smoke size, in `npm test`).
 *
 * Each job's trainer waits for a release file, so it runs until it is killed; after its last death the file is made
 * and the job completes. The times come from the job's own record: the RUNNING transition of the next attempt (and
 * the error of the dead one, "detected") against the moment the bench killed it.
 */
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { parseConfig } from '../../common/config';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { generateKeyPair, signSpec } from '../../jobspec/signing';
import type { JobStatus } from '../../workflows/messages';
import { FakeAkashConsole } from '../../test/fakes/akash-console';
import { FakeAkashProvider } from '../../test/fakes/akash-provider';
import { benchSpec, median, percentile } from '../lifecycle/util';

export interface RecoveryOptions {
  client: Client;
  /** Runs an orchestrator worker with `config` on `taskQueue` until the returned stop is called. */
  startWorker(config: ReturnType<typeof parseConfig>, home: string, taskQueue: string): Promise<() => Promise<void>>;
  /** Deaths per kind (local, akash): jobs × deathsPerJob. */
  jobs: number;
  deathsPerJob: number;
  /** The backends' status interval (poll_interval_ms) and the retry backoff (initial = max, so the floor is constant). */
  statusMs: number;
  backoffSeconds: number;
  /** Which kinds to measure (default both). */
  kinds?: ('local' | 'akash')[];
}

export interface RecoveryFigures {
  kind: 'local' | 'akash';
  deaths: number;
  floorMs: number;
  /** Death → next attempt RUNNING. */
  medianMs: number;
  p99Ms: number;
  maxMs: number;
  /** Death → the dead attempt's error recorded. */
  detectMedianMs: number;
  /** Jobs that ended other than COMPLETED, with why. */
  problems: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const OWNER = 'akash1owner000000000000000000000000000000000';
const PROVIDER = 'akash1prov00000000000000000000000000000000000';

export async function measureRecovery(o: RecoveryOptions): Promise<RecoveryFigures[]> {
  const out: RecoveryFigures[] = [];
  for (const kind of o.kinds ?? ['local', 'akash']) out.push(await measureKind(o, kind));
  return out;
}

async function measureKind(o: RecoveryOptions, kind: 'local' | 'akash'): Promise<RecoveryFigures> {
  const home = mkdtempSync(path.join(os.tmpdir(), `forge-bench-recovery-${kind}-`));
  const release = path.join(home, 'release');
  const starts = path.join(home, 'starts.log');
  // A trainer that reports progress, logs its start (job attempt pid), then runs until the release file exists.
  const trainer = ['/bin/sh', '-c', `echo "$JOB_ID $FORGE_ATTEMPT $$" >> ${starts}; echo '{"event":"progress","step":1,"max_steps":2}'; while [ ! -e ${release} ]; do sleep 0.1; done; echo '{"event":"progress","step":2,"max_steps":2}'`];
  const provider = new FakeAkashProvider(PROVIDER, { 'forge/trainer': { programs: { 'forge-trainer': trainer } } });
  const akash = new FakeAkashConsole({ apiKey: 'bench-recovery-key', owner: OWNER, providers: [provider], bids: [{ provider: PROVIDER, amount: 500 }] });
  if (kind === 'akash') {
    await provider.start();
    await akash.start();
  }
  const backend =
    kind === 'local'
      ? { kind: 'local', poll_interval_ms: o.statusMs, trainers: { [DEFAULT_TRAINER_IMAGE]: { command: trainer } } }
      : {
          kind: 'akash',
          mode: 'console',
          hourly_usd: 2,
          akt_usd: 3,
          poll_interval_ms: o.statusMs,
          request_timeout_ms: 5000,
          bid_timeout_seconds: 10,
          console: { url: akash.url, api_key: 'bench-recovery-key' },
          trainers: { [DEFAULT_TRAINER_IMAGE]: { image: 'forge/trainer' } },
        };
  const config = parseConfig({
    backends: { [kind]: backend },
    retry_backoff: { initial_seconds: o.backoffSeconds, max_seconds: o.backoffSeconds },
    follow_heartbeat_seconds: 3,
    admission_poll_seconds: 0.5,
    results: { enabled: false },
  });
  const taskQueue = `bench-recovery-${kind}-${process.pid}-${Date.now()}`;
  const stopWorker = await o.startWorker(config, home, taskQueue);
  const keys = generateKeyPair();
  const latencies: number[] = [];
  const detects: number[] = [];
  const problems: string[] = [];
  try {
    const jobs = await Promise.all(
      Array.from({ length: o.jobs }, async () => {
        const base = benchSpec(keys.did, DEFAULT_TRAINER_IMAGE);
        const jobId = String(base.job_id);
        const spec = signSpec(
          { ...base, backend: { ...(base.backend as object), provider: kind, max_retries: o.deathsPerJob + 2, max_cost_usd: 1000 } },
          keys.secretKey,
        );
        const handle = await o.client.workflow.start('trainingJob', { taskQueue, workflowId: `job-${jobId}`, args: [spec] });
        return { jobId, handle };
      }),
    );
    await Promise.all(
      jobs.map(async ({ jobId, handle }, i) => {
        await sleep(i * 150); // spread the jobs' deaths over time
        for (let attempt = 1; attempt <= o.deathsPerJob; attempt++) {
          const running = await waitStatus(handle, (s) => s.attempt === attempt && s.state === 'RUNNING');
          await sleep(300 + ((i * 7919 + attempt * 104729) % 700)); // a while into the attempt
          let killedAt: number;
          if (kind === 'local') {
            const pid = await waitFor(() => readStarts(starts).find((s) => s.job === jobId && s.attempt === attempt)?.pid);
            killedAt = Date.now();
            process.kill(pid, 'SIGKILL');
          } else {
            const dseq = String(running.deployments.find((d) => d.attempt === attempt)?.ref.data.dseq);
            killedAt = Date.now();
            akash.loseLease(dseq);
          }
          const next = await waitStatus(handle, (s) => s.transitions.some((t) => t.state === 'RUNNING' && t.attempt === attempt + 1) || isTerminal(s));
          const up = next.transitions.find((t) => t.state === 'RUNNING' && t.attempt === attempt + 1);
          if (!up) {
            problems.push(`job ${jobId}: attempt ${attempt + 1} never RUNNING (${next.state}: ${next.last_error?.detail ?? ''})`);
            return;
          }
          latencies.push(Date.parse(up.at) - killedAt);
          const err = next.errors.find((e) => e.attempt === attempt);
          if (err) detects.push(Date.parse(err.at) - killedAt);
        }
      }),
    );
    writeFileSync(release, '');
    for (const { jobId, handle } of jobs) {
      const s = (await handle.result()) as JobStatus;
      if (s.state !== 'COMPLETED') problems.push(`job ${jobId}: ${s.state} (${s.last_error?.class}: ${s.last_error?.detail})`);
    }
  } finally {
    appendFileSync(release, '');
    await stopWorker();
    if (kind === 'akash') {
      await akash.stop();
      await provider.stop();
    }
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    kind,
    deaths: latencies.length,
    floorMs: o.statusMs + o.backoffSeconds * 1000,
    medianMs: median(sorted),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.at(-1) ?? NaN,
    detectMedianMs: median([...detects].sort((a, b) => a - b)),
    problems,
  };
}

function isTerminal(s: JobStatus): boolean {
  return s.state === 'COMPLETED' || s.state === 'ABANDONED' || s.state === 'CANCELLED';
}

async function waitStatus(handle: { query<T>(name: string): Promise<T> }, ok: (s: JobStatus) => boolean, timeoutMs = 120_000): Promise<JobStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await handle.query<JobStatus>('status');
    if (ok(s)) return s;
    if (isTerminal(s) || Date.now() > deadline) throw new Error(`status never matched: ${s.state} attempt ${s.attempt} (${s.last_error?.class ?? ''} ${s.last_error?.detail ?? ''})`);
    await sleep(50);
  }
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('the trainer never logged its start');
    await sleep(20);
  }
}

function readStarts(file: string): { job: string; attempt: number; pid: number }[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [job = '', attempt = '0', pid = '0'] = l.split(' ');
      return { job, attempt: Number(attempt), pid: Number(pid) };
    });
}

/** The Markdown table for BENCHMARKS.md. */
export function recoveryTable(figures: RecoveryFigures[]): string {
  const rows = figures.map(
    (f) =>
      `| ${f.kind === 'local' ? 'local trainer SIGKILLed' : 'lease closed on the fake Akash'} | ${f.deaths} | ${f.floorMs} | ${Math.round(f.detectMedianMs)} | ${Math.round(f.medianMs)} | ${Math.round(f.p99Ms)} | ${Math.round(f.maxMs)} | ${f.p99Ms <= f.floorMs + 2000 ? 'yes' : 'no'} |`,
  );
  return ['| death | deaths | floor (ms) | detected, median (ms) | next attempt RUNNING, median (ms) | p99 (ms) | max (ms) | p99 ≤ floor + 2 s |', '|---|---:|---:|---:|---:|---:|---:|---|', ...rows].join('\n');
}
