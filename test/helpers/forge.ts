/**
 * Shared test plumbing: the run's real dev server (from global setup), an orchestrator worker on the test file's
 * own task queue, operator configs with fake trainers, signed specs.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import type { ResultHooks } from '../../activities/results';
import { parseConfig, type ForgeConfig } from '../../common/config';
import { orchestratorSettings } from '../../workers/config/orchestrator';
import { createOrchestratorWorker } from '../../workers/orchestrator';
import type { JobStatus } from '../../workflows/messages';
import { jobWorkflowId } from '../../common/names';
import type { SignedSpec } from '../jobspec/fixtures';

let runtimeInstalled = false;
/** Temporal's worker logs only warnings in tests. */
function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger('WARN') });
}

export function temporalAddress(): string {
  const a = process.env.FORGE_TEST_TEMPORAL_ADDRESS;
  if (!a) throw new Error('FORGE_TEST_TEMPORAL_ADDRESS unset: run the tests through jest (global setup starts Temporal)');
  return a;
}

export function tempDir(prefix = 'forge-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export const FAKE_TRAINER = path.resolve(__dirname, '..', 'fixtures', 'fake-trainer.sh');

/** argv of the fake trainer: `mode` for `seconds`, see test/fixtures/fake-trainer.sh. */
export function fakeTrainer(mode: 'ok' | 'exit' | 'transient-until' | 'vanish' | 'model' | 'wait-file', seconds: number, arg?: number | string): string[] {
  return ['/bin/sh', FAKE_TRAINER, mode, String(seconds), ...(arg === undefined ? [] : [String(arg)])];
}

export interface TestBackend {
  trainers: Record<string, string[]>;
  hourly_usd?: number;
  max_concurrent?: number;
}

/** Operator settings that keep tests fast: short backoff, quick heartbeats and admission polls, no result integration. */
export const FAST_SETTINGS = {
  retry_backoff: { initial_seconds: 0.2, max_seconds: 1 },
  follow_heartbeat_seconds: 3,
  admission_poll_seconds: 0.5,
  results: { enabled: false },
} as const;

/**
 * A fast operator config: short backoff, quick heartbeats and polls. `starts` records every trainer start. Result
 * integration (artifacts, evals, registry) is off unless `extra.results` turns it on: fake trainers make no model.
 */
export function testConfig(backends: Record<string, TestBackend>, starts?: string, extra: object = {}): ForgeConfig {
  return parseConfig({
    backends: Object.fromEntries(
      Object.entries(backends).map(([name, b]) => [
        name,
        {
          kind: 'local',
          poll_interval_ms: 100,
          ...(b.hourly_usd !== undefined ? { hourly_usd: b.hourly_usd } : {}),
          ...(b.max_concurrent !== undefined ? { max_concurrent: b.max_concurrent } : {}),
          trainers: Object.fromEntries(
            Object.entries(b.trainers).map(([image, command]) => [image, { command, env: starts ? { FORGE_TEST_STARTS: starts } : {} }]),
          ),
        },
      ]),
    ),
    retry_backoff: { initial_seconds: 0.2, max_seconds: 1 },
    follow_heartbeat_seconds: 3,
    admission_poll_seconds: 0.5,
    results: { enabled: false },
    ...extra,
  });
}

export async function testClient(): Promise<{ client: Client; connection: Connection }> {
  const connection = await Connection.connect({ address: temporalAddress() });
  return { client: new Client({ connection }), connection };
}

export interface RunningWorker {
  worker: Worker;
  stop(): Promise<void>;
}

/** An in-process orchestrator worker on `taskQueue`, with the run's pre-built workflow bundle. */
export async function startWorker(config: ForgeConfig, home: string, taskQueue: string, resultHooks?: ResultHooks): Promise<RunningWorker> {
  quietRuntime();
  const connection = await NativeConnection.connect({ address: temporalAddress() });
  const worker = await createOrchestratorWorker({
    connection,
    namespace: 'default',
    config,
    home,
    taskQueue,
    workflowBundlePath: process.env.FORGE_TEST_WORKFLOW_BUNDLE,
    settings: orchestratorSettings({ FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS: '1' }),
    ...(resultHooks ? { resultHooks } : {}),
  });
  const running = worker.run();
  return {
    worker,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}

/**
 * A test file's orchestrator worker on its own task queue plus a client, started in beforeAll and stopped in
 * afterAll. Read `forge.client` inside tests (it is set once beforeAll ran).
 */
export function useForge(config: ForgeConfig, home: string, taskQueue: string): { readonly client: Client } {
  let worker: RunningWorker | undefined;
  let connection: Connection | undefined;
  let client: Client | undefined;
  beforeAll(async () => {
    worker = await startWorker(config, home, taskQueue);
    ({ client, connection } = await testClient());
  });
  afterAll(async () => {
    await worker?.stop();
    await connection?.close();
  });
  return {
    get client(): Client {
      if (!client) throw new Error('useForge: the client exists only inside tests (after beforeAll)');
      return client;
    },
  };
}

export async function startJob(client: Client, taskQueue: string, spec: SignedSpec | Record<string, unknown>): Promise<WorkflowHandle> {
  const jobId = String((spec as { job_id?: unknown }).job_id);
  return client.workflow.start('trainingJob', {
    taskQueue,
    workflowId: jobWorkflowId(jobId),
    args: [spec],
  });
}

export async function runJob(client: Client, taskQueue: string, spec: SignedSpec | Record<string, unknown>): Promise<JobStatus> {
  const handle = await startJob(client, taskQueue, spec);
  return (await handle.result()) as JobStatus;
}

/** Calls `probe` every 100 ms until it answers something other than undefined; fails naming `what` after the timeout. */
export async function pollUntil<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Polls the status query until `predicate` holds. */
export async function waitForStatus(handle: WorkflowHandle, predicate: (s: JobStatus) => boolean, timeoutMs = 30_000): Promise<JobStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await handle.query<JobStatus>('status');
    if (predicate(s)) return s;
    if (Date.now() > deadline) throw new Error(`status never matched; last: ${JSON.stringify(s.state)} ${JSON.stringify(s.transitions.map((t) => t.state))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function states(s: JobStatus): string[] {
  return s.transitions.map((t) => t.state);
}

/** Lines of the fake trainer's start log: `job attempt pid`. */
export function readStarts(file: string): { job: string; attempt: number; pid: number }[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [job, attempt, pid] = l.split(' ');
      return { job: job!, attempt: Number(attempt), pid: Number(pid) };
    });
}

/** Alive and not a zombie (PID 1 of a container may never reap an orphan). */
export { pidAlive as processAlive } from '../../activities/backends/local/local-process';
