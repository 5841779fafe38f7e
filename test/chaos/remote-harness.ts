/**
 * Chaos for remote backends (issue 13 point 6): a world of the project's fakes (Prime Intellect API, Akash Console +
 * provider gateway), an HTTPS webhook receiver as every job's notification target, orchestrator worker processes
 * that can be SIGKILLed, and the invariants every scenario checks (`verifyRemote`):
 * - exactly one Forge terminal state per job (COMPLETED, ABANDONED or CANCELLED, once, last);
 * - no Temporal execution FAILED, TERMINATED or TIMED_OUT (a Temporal cancel ends Canceled, which is fine);
 * - at most one deployment per (job, attempt), from the fakes' own record of what was created;
 * - no deployment open on the fakes at the end, after at most one reaper pass (forgeReaper);
 * - the owner notified: a signed webhook per job, whatever its terminal state (a CANCELLED job's `job.cancelled`
 *   goes to its on_failure target when it names no on_cancel).
 */
import { parsePodName } from '../../activities/backends/prime-intellect/pi-api';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { ReapReport } from '../../activities/reaper';
import { parseConfig, type ForgeConfig } from '../../common/config';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import type { JobStatus } from '../../workflows/messages';
import { REAPER_SCHEDULE_ID, WORKFLOW_TYPE_REAPER } from '../../common/names';
import { FakeAkashConsole } from '../fakes/akash-console';
import { FakeAkashProvider } from '../fakes/akash-provider';
import { FAKE_TRAINER_SH } from '../fakes/container';
import { FakePrimeIntellect } from '../fakes/prime-intellect';
import { tempDir } from '../helpers/forge';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/results';
import { makeSignedSpec, type SignedSpec } from '../jobspec/fixtures';
import { killHard, spawnWorker } from './harness';

export const PI_KEY = 'pit_chaos-remote-key-0123456789';
export const AKASH_KEY = 'akash-console-chaos-key-0123456789';
export const OWNER = 'akash1owner000000000000000000000000000000000';
export const PROVIDER = 'akash1prov00000000000000000000000000000000000';
const WEBHOOK_SECRET = 'chaos-webhook-secret-0123456789';
const TERMINAL = new Set(['COMPLETED', 'ABANDONED', 'CANCELLED']);

export interface WorldOptions {
  taskQueue: string;
  /** The backends' status interval (poll_interval_ms). */
  statusMs: number;
  /** The backends' request_timeout_ms. */
  requestTimeoutMs: number;
  /** How long the fake trainer runs, seconds. */
  trainerSeconds: number;
  /** Extra operator config (merged over the defaults). */
  extra?: object;
  /** Prime Intellect backends served by fakes that run elsewhere (the netns partition): name → API URL. */
  remotePi?: Record<string, string>;
}

/** One chaos world: fakes, webhook receiver, operator config file, worker processes. */
export class RemoteWorld {
  readonly home = tempDir('forge-chaos-remote-');
  readonly provider: FakeAkashProvider;
  readonly akash: FakeAkashConsole;
  readonly pi: FakePrimeIntellect;
  webhook!: WebhookReceiver;
  config!: ForgeConfig;
  readonly configFile = path.join(this.home, 'forge-config.json');
  readonly workers: ChildProcess[] = [];

  constructor(readonly o: WorldOptions) {
    const image = { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', String(o.trainerSeconds)] } };
    this.provider = new FakeAkashProvider(PROVIDER, { 'forge/trainer': image });
    this.akash = new FakeAkashConsole({ apiKey: AKASH_KEY, owner: OWNER, providers: [this.provider], bids: [{ provider: PROVIDER, amount: 500 }] });
    this.pi = new FakePrimeIntellect({ apiKey: PI_KEY, offers: [{ cloudId: 'c1', gpuType: 'CPU_NODE', gpuCount: 1, price: 1.5 }], templates: { 'tpl-trainer': image }, provisionMs: 100 });
  }

  async start(): Promise<void> {
    await this.provider.start();
    await Promise.all([this.akash.start(), this.pi.start()]);
    this.webhook = await startWebhookReceiver(path.join(this.home, 'tls'), WEBHOOK_SECRET);
    const o = this.o;
    const common = { hourly_usd: 2, poll_interval_ms: o.statusMs, request_timeout_ms: o.requestTimeoutMs };
    const piBackend = (url: string) => ({ kind: 'prime-intellect', api_url: url, api_key: PI_KEY, ...common, trainers: { [DEFAULT_TRAINER_IMAGE]: { template_id: 'tpl-trainer' } } });
    this.config = parseConfig({
      backends: {
        pi: piBackend(this.pi.url),
        akash: {
          kind: 'akash',
          mode: 'console',
          akt_usd: 3,
          bid_timeout_seconds: 10,
          ...common,
          // The fake Console makes a certificate (key generation) in about a second on a busy machine.
          request_timeout_ms: Math.max(o.requestTimeoutMs, 5000),
          console: { url: this.akash.url, api_key: AKASH_KEY },
          trainers: { [DEFAULT_TRAINER_IMAGE]: { image: 'forge/trainer' } },
        },
        ...Object.fromEntries(Object.entries(o.remotePi ?? {}).map(([name, url]) => [name, piBackend(url)])),
      },
      retry_backoff: { initial_seconds: 0.2, max_seconds: 1 },
      follow_heartbeat_seconds: 3,
      admission_poll_seconds: 0.5,
      reaper: { grace_seconds: 0 },
      results: {
        enabled: false,
        notifications: {
          webhook: { secret: WEBHOOK_SECRET, ca_file: this.webhook.caFile, timeout_ms: 2000 },
          retry: { maximum_attempts: 20, initial_interval_seconds: 0.2, maximum_interval_seconds: 1 },
        },
      },
      ...o.extra,
    });
    writeFileSync(this.configFile, JSON.stringify(this.config));
  }

  /** One more orchestrator worker process on the world's queue. */
  spawnWorker(): ChildProcess {
    const w = spawnWorker({ home: this.home, configFile: this.configFile, taskQueue: this.o.taskQueue, env: { FORGE_WORKER_LOG_LEVEL: process.env.FORGE_CHAOS_WORKER_LOG_LEVEL ?? 'ERROR' } });
    this.workers.push(w);
    return w;
  }

  async killWorkers(): Promise<void> {
    for (const w of this.workers.splice(0)) await killHard(w);
  }

  async stop(): Promise<void> {
    await this.killWorkers();
    await Promise.all([this.akash.stop(), this.pi.stop(), this.webhook?.close()]);
    await this.provider.stop();
  }

  /**
   * A signed spec on `provider` (and `fallbacks`) whose end is notified to the world's webhook receiver. It names a
   * region, so the provider goes first (with region "any" the cheapest candidate would).
   */
  spec(provider: string, fallbacks: string[] = []): SignedSpec {
    const hook = `${this.webhook.url}/hooks/chaos`;
    return makeSignedSpec({ backend: { provider, region: 'us-east', max_cost_usd: 5, ...(fallbacks.length ? { fallbacks } : {}) }, notifications: { on_complete: hook, on_failure: hook } });
  }

  /**
   * Every deployment the fakes ever created, as job id → attempt → count; and those still open, of the given jobs
   * only (other scenarios' jobs may still run).
   */
  creations(jobIds: ReadonlySet<string>, extra: FakeRecord[] = []): { created: Map<string, Map<number, number>>; open: string[] } {
    const records: FakeRecord[] = [
      ...[...this.pi.pods.values()].map((p) => ({ name: piName(p.name), open: p.status !== 'TERMINATED' && p.status !== 'GONE' || p.container?.running === true, id: `pi:${p.id}` })),
      ...[...this.akash.deployments.values()].map((d) => ({ name: akashName(d.sdl), open: d.state === 'active' || this.provider.container(d.dseq)?.running === true, id: `akash:${d.dseq}` })),
      ...extra,
    ];
    const created = new Map<string, Map<number, number>>();
    const open: string[] = [];
    for (const r of records) {
      const m = r.name ? /^forge-(.+)-(\d+)$/.exec(r.name) : null;
      if (!m || !jobIds.has(m[1]!)) continue;
      const perAttempt = created.get(m[1]!) ?? new Map<number, number>();
      perAttempt.set(Number(m[2]), (perAttempt.get(Number(m[2])) ?? 0) + 1);
      created.set(m[1]!, perAttempt);
      if (r.open) open.push(`${r.id} (${r.name})`);
    }
    return { created, open };
  }
}

/** A deployment as a fake recorded it: a forge attempt's name (forge-<job>-<attempt>) and whether it is open. */
export interface FakeRecord {
  id: string;
  name: string | undefined;
  open: boolean;
}

/** A pod's forge attempt, without the installation tag its name carries (pi-api.ts podName). */
function piName(name: string | undefined): string | undefined {
  const m = name === undefined ? undefined : parsePodName(name);
  return m ? `forge-${m.jobId}-${m.attempt}` : undefined;
}

/** An Akash deployment's forge attempt, from the JOB_ID and FORGE_ATTEMPT its SDL hands the container. */
function akashName(sdl: string): string | undefined {
  const job = /JOB_ID=([^\s"']+)/.exec(sdl)?.[1];
  const attempt = /FORGE_ATTEMPT=(\d+)/.exec(sdl)?.[1];
  return job && attempt ? `forge-${job}-${attempt}` : undefined;
}

export interface RemoteVerdict {
  jobs: number;
  byState: Record<string, number>;
  attempts: Record<string, number>;
  temporal: Record<string, number>;
  /** Deployments still open when the jobs ended, closed by the one reaper pass. */
  reaped: number;
  notified: number;
  /** Each failed attempt, "<class>: <detail>" (a retried attempt is not a violation, but the report shows why). */
  attemptErrors: string[];
  problems: string[];
}

export interface RemoteExpectation {
  handle: WorkflowHandle;
  jobId: string;
  /** Acceptable end states (default COMPLETED). */
  states?: string[];
  /** The most attempts the job may take. */
  maxAttempts?: number;
  /** No failure or retry may be recorded (a cancelled job: a Temporal cancel is not a failure). */
  noErrors?: boolean;
}

/** Waits for every job to end (or `timeoutMs`), then checks the invariants; runs one reaper pass if anything is open. */
export async function verifyRemote(
  client: Client,
  world: RemoteWorld,
  expected: RemoteExpectation[],
  opts: { timeoutMs?: number; extraRecords?: () => Promise<FakeRecord[]> } = {},
): Promise<RemoteVerdict> {
  const problems: string[] = [];
  const byState: Record<string, number> = {};
  const attempts: Record<string, number> = {};
  const temporal: Record<string, number> = {};
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const statuses = new Map<string, JobStatus>();
  const attemptErrors: string[] = [];
  for (const e of expected) {
    const left = Math.max(1000, deadline - Date.now());
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      e.handle.result().then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), left))),
    ]);
    clearTimeout(timer);
    const desc = await e.handle.describe();
    temporal[desc.status.name] = (temporal[desc.status.name] ?? 0) + 1;
    if (!ended) problems.push(`job ${e.jobId}: workflow still ${desc.status.name} after the deadline`);
    if (['FAILED', 'TERMINATED', 'TIMED_OUT'].includes(desc.status.name)) problems.push(`job ${e.jobId}: Temporal execution ${desc.status.name}`);
    let status: JobStatus;
    try {
      status = await e.handle.query<JobStatus>('status');
    } catch (err) {
      problems.push(`job ${e.jobId}: status query failed: ${(err as Error).message}`);
      continue;
    }
    statuses.set(e.jobId, status);
    attemptErrors.push(...status.errors.map((x) => `${x.class} (${x.backend}, attempt ${x.attempt}): ${x.detail}`));
    byState[status.state] = (byState[status.state] ?? 0) + 1;
    attempts[String(status.attempt)] = (attempts[String(status.attempt)] ?? 0) + 1;
    const terminals = status.transitions.filter((t) => TERMINAL.has(t.state));
    if (terminals.length !== 1 || !TERMINAL.has(status.transitions.at(-1)?.state ?? '')) {
      problems.push(`job ${e.jobId}: ${terminals.length} Forge terminal states (${status.transitions.map((t) => t.state).join(' → ')})`);
    }
    const allowed = e.states ?? ['COMPLETED'];
    if (!allowed.includes(status.state))
      problems.push(
        `job ${e.jobId}: ${status.state}, expected ${allowed.join(' or ')} (${status.last_error?.class ?? ''} ${status.last_error?.detail ?? ''})`,
      );
    if (e.noErrors && (status.errors.length || status.transitions.some((t) => t.state === 'FAILED' || t.state === 'RETRY'))) {
      problems.push(
        `job ${e.jobId}: a failure recorded on its way to ${status.state}: ${status.errors.map((x) => `${x.class}: ${x.detail}`).join('; ')}`,
      );
    }
    if (e.maxAttempts !== undefined && status.attempt > e.maxAttempts)
      problems.push(
        `job ${e.jobId}: ${status.attempt} attempts, at most ${e.maxAttempts} expected; errors: ${JSON.stringify(status.errors.map((x) => `${x.class}: ${x.detail}`))}`,
      );
  }
  // At most one deployment per attempt, from the fakes' own records.
  const ids = new Set(expected.map((e) => e.jobId));
  const extra = opts.extraRecords ? await opts.extraRecords() : [];
  let { created, open } = world.creations(ids, extra);
  for (const e of expected) {
    for (const [attempt, n] of created.get(e.jobId) ?? []) if (n > 1) problems.push(`job ${e.jobId}: attempt ${attempt} created ${n} deployments`);
  }
  // Nothing open on the fakes, after at most one reaper pass.
  let reaped = 0;
  if (open.length) {
    const report: ReapReport = await client.workflow.execute(WORKFLOW_TYPE_REAPER, {
      taskQueue: world.o.taskQueue,
      workflowId: `${REAPER_SCHEDULE_ID}-chaos-${Date.now()}`,
      args: [{}],
    });
    reaped = report.items.filter((i) => i.closed).length;
    await new Promise((r) => setTimeout(r, 500)); // containers of closed deployments exit
    ({ open } = world.creations(ids, opts.extraRecords ? await opts.extraRecords() : []));
    for (const o of open) problems.push(`still open after one reaper pass: ${o}`);
  }
  // The owner notified of every job, CANCELLED ones included, with the event of its end.
  let notified = 0;
  const eventOf: Record<string, string> = { COMPLETED: 'job.completed', ABANDONED: 'job.failed', CANCELLED: 'job.cancelled' };
  for (const [jobId, s] of statuses) {
    const got = await waitFor(() => world.webhook.deliveries.some((d) => d.signed && d.body.includes(jobId) && d.headers['x-forge-event'] === eventOf[s.state]), 15_000);
    if (got) notified++;
    else
      problems.push(
        `job ${jobId}: ${s.state} but no signed webhook reached the owner's receiver (notifications: ${JSON.stringify(s.notifications ?? null)})`,
      );
  }
  return { jobs: expected.length, byState, attempts, temporal, reaped, notified, attemptErrors, problems };
}

async function waitFor(probe: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (probe()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return probe();
}

/** Waits until every handle's job is RUNNING (its attempt's deployment up); the statuses. */
export async function allRunning(handles: WorkflowHandle[], timeoutMs = 60_000): Promise<JobStatus[]> {
  const deadline = Date.now() + timeoutMs;
  const out: JobStatus[] = [];
  for (const h of handles) {
    for (;;) {
      const s = await h.query<JobStatus>('status');
      if (s.state === 'RUNNING') {
        out.push(s);
        break;
      }
      if (TERMINAL.has(s.state) || Date.now() > deadline) {
        throw new Error(`job ${h.workflowId} never RUNNING: ${s.state} [${s.transitions.map((t) => t.state).join(' → ')}] ${s.last_error?.class ?? ''} ${s.last_error?.detail ?? ''}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return out;
}
