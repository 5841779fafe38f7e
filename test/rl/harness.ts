/**
 * RL test plumbing: a tiny model, the reference trainer's inference server in front of it, rollout and GRPO workers
 * (in this process, or as separate processes through the image entrypoint so that a test can SIGKILL them), and a
 * worker on the test's own task queue that runs grpoRun (and collectPolicy) from the run's workflow bundle.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createRlCollectActivities } from '../../activities/rl/collect';
import type { StepLine } from '../../activities/rl/types';
import type { RolloutHooks } from '../../activities/rl/rollout';
import { rlSettings, type RlSettings } from '../../common/rl-config';
import { repoRoot } from '../../common/paths';
import { loadSessionKey, sessionToken } from '../../common/rl-session';
import { historyJson, payloadsOf, registerTestSecret, scanHistory } from '../helpers/history-secrets';
import { resolveRl, type RlParams } from '../../jobspec/rl';
import type { GrpoRunInput, GrpoRunResult } from '../../workflows/grpo-run';
import { grpoSettings } from '../../workers/config/grpo';
import { rolloutSettings } from '../../workers/config/rollout';
import { createGrpoWorker, type GrpoWorker } from '../../workers/grpo';
import { createRolloutWorker, type RolloutWorker } from '../../workers/rollout';
import { findTemporalCli } from '../../infra/dev-server';
import { temporalAddress } from '../helpers/forge';
import { MAIN } from '../helpers/processes';
import { makeSignedSpec } from '../jobspec/fixtures';
export { exited } from '../helpers/processes';

export const FORGE_TRAINER = path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer');

export function quietRuntime(): void {
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // installed already (by another helper of this test file)
  }
}

/** Runs a command to its end; rejects with its stderr when it fails. */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`))));
  });
}

/** Where tinyModel() makes its model: a directory the operator config must list in results.git.file_roots. */
export function tinyModelRoot(): string {
  return process.env.FORGE_TEST_DIR ?? os.tmpdir();
}

/**
 * A tiny random model (forge-trainer init-tiny, seed 0), made once per jest run (under the run's FORGE_TEST_DIR) and
 * shared by the RL test files.
 */
export async function tinyModel(): Promise<string> {
  const dir = path.join(tinyModelRoot(), 'rl-tiny-model');
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  await run(FORGE_TRAINER, ['init-tiny', '--out', tmp, '--seed', '0'], { ...process.env, OMP_NUM_THREADS: '1' });
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another test file made it first
  }
  return dir;
}

export interface Served {
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** The reference trainer's OpenAI-compatible server with weight loading on, on a free port. */
export async function serveModel(model: string, log: string): Promise<Served> {
  const proc = spawn(FORGE_TRAINER, ['serve', '--model', model, '--port', '0', '--allow-weight-updates'], {
    env: { ...process.env, OMP_NUM_THREADS: '1' },
    stdio: ['ignore', 'pipe', openSync(log, 'a')],
  });
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`serve exited ${code} (see ${log})`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        const ev = JSON.parse(line) as { event?: string; url?: string };
        if (ev.event === 'serving' && ev.url) resolve(ev.url);
      } catch {
        // not JSON
      }
    });
  });
  return {
    url,
    proc,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

export interface Queues {
  orchestrator: string;
  rollout: string;
  grpo: string;
}

export function queues(prefix: string): Queues {
  return { orchestrator: `${prefix}-orch`, rollout: `${prefix}-rollout`, grpo: `${prefix}-grpo` };
}

/** Short timeouts: a dead host or rollout worker is noticed within seconds. */
export function testSettings(q: Queues, extra: Partial<RlSettings> = {}): RlSettings {
  return {
    ...rlSettings(),
    grpoTaskQueue: q.grpo,
    rolloutTaskQueue: q.rollout,
    acquireTimeoutSeconds: 120,
    loadTimeoutSeconds: 120,
    hostStartTimeoutSeconds: 10,
    hostHeartbeatSeconds: 4,
    rolloutHeartbeatSeconds: 4,
    rolloutTimeoutSeconds: 120,
    updateTimeoutSeconds: 120,
    statusIntervalSeconds: 0,
    // TOPLOC verification is the subject of grpo-verify.test.ts (which sets it); elsewhere it would only slow the
    // learning and recovery runs (a prefill per checked completion, BENCHMARKS.md "Rollout verification").
    verifyFraction: 0,
    ...extra,
  };
}

/** The RL session key of a test's FORGE_HOME (made here if missing), registered as a secret no history may hold. */
export function testSessionKey(home: string): Buffer {
  const key = loadSessionKey({}, home);
  registerTestSecret(key.toString('utf8'));
  return key;
}

/** Every session id named in a history's payloads. */
function sessionIdsOf(history: string): string[] {
  const ids = new Set<string>();
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(visit);
    if (v === null || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (k === 'sessionId' && typeof x === 'string') ids.add(x);
      else visit(x);
    }
  };
  payloadsOf(history).forEach(visit);
  return [...ids];
}

/** The histories of these workflows hold neither the RL session key nor the token of any session they name. */
export async function expectNoRlSecrets(client: Client, workflowIds: string[], home: string): Promise<void> {
  const key = testSessionKey(home);
  for (const id of workflowIds) {
    const text = historyJson(await client.workflow.getHandle(id).fetchHistory());
    const sessions = sessionIdsOf(text);
    const known = [key.toString('utf8'), ...sessions.map((s) => sessionToken(key, s))];
    expect({ id, findings: scanHistory(text, known) }).toEqual({ id, findings: [] });
  }
}

export function rolloutEnv(q: Queues, inferenceUrl: string, home: string, hostId: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  testSessionKey(home);
  return {
    FORGE_INFERENCE_URL: inferenceUrl,
    FORGE_HOME: home, // the RL session key: FORGE_HOME/secrets/rl-session.key, shared with the run's orchestrator
    FORGE_ROLLOUT_TASK_QUEUE: q.rollout,
    FORGE_HOST_ID: hostId,
    FORGE_ROLLOUT_CACHE_DIR: path.join(home, `cache-${hostId}`),
    FORGE_ROLLOUT_HEARTBEAT_MS: '500',
    FORGE_ROLLOUT_SHUTDOWN_GRACE_SECONDS: '1',
    ...extra,
  };
}

export function grpoEnv(q: Queues, home: string, hostId: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  testSessionKey(home);
  return {
    FORGE_HOST_ID: hostId,
    FORGE_HOME: home, // the RL session key, as rolloutEnv
    FORGE_GRPO_TASK_QUEUE: q.grpo,
    FORGE_GRPO_STATE_DIR: path.join(home, 'grpo-state'),
    FORGE_GRPO_WORK_DIR: path.join(home, `grpo-work-${hostId}`),
    FORGE_GRPO_TRAINER_COMMAND: JSON.stringify([FORGE_TRAINER, 'grpo-server']),
    FORGE_GRPO_SHUTDOWN_GRACE_SECONDS: '5',
    FORGE_GRPO_LEASE_SECONDS: '60',
    ...extra,
  };
}

export interface InProcess<T> {
  value: T;
  stop(): Promise<void>;
}

export async function startRollout(env: NodeJS.ProcessEnv, address = temporalAddress(), hooks?: RolloutHooks): Promise<InProcess<RolloutWorker>> {
  quietRuntime();
  const connection = await NativeConnection.connect({ address });
  const r = await createRolloutWorker({ connection, namespace: 'default', settings: rolloutSettings(env), ...(hooks ? { hooks } : {}) });
  const running = r.worker.run();
  return {
    value: r,
    async stop() {
      if (r.worker.getState() === 'RUNNING') r.worker.shutdown();
      await running;
      await r.close();
      await connection.close();
    },
  };
}

export async function startGrpo(env: NodeJS.ProcessEnv, address = temporalAddress()): Promise<InProcess<GrpoWorker>> {
  quietRuntime();
  const connection = await NativeConnection.connect({ address });
  const g = await createGrpoWorker({ connection, namespace: 'default', settings: grpoSettings(env) });
  const running = g.run();
  let stopped: Promise<void> | undefined;
  return {
    value: g,
    stop() {
      stopped ??= (async () => {
        g.shutdown(); // what SIGTERM does: drain (updates finish, sessions checkpoint and stop)
        await running;
        await connection.close();
      })();
      return stopped;
    },
  };
}

/** The grpoRun workflows of the test (and collectPolicy) on the test's orchestrator queue. */
export async function startRunWorker(q: Queues, home: string, address = temporalAddress()): Promise<InProcess<Worker>> {
  quietRuntime();
  const connection = await NativeConnection.connect({ address });
  const worker = await Worker.create({
    connection,
    namespace: 'default',
    taskQueue: q.orchestrator,
    workflowBundle: { codePath: process.env.FORGE_TEST_WORKFLOW_BUNDLE! },
    // The RL session key of `home`, as rolloutEnv / grpoEnv (not a FORGE_RL_SESSION_KEY of the developer's shell).
    activities: createRlCollectActivities({ home, env: {} }),
    shutdownGraceTime: '1 second',
  });
  const running = worker.run();
  return {
    value: worker,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}

/** A worker process through the image's entrypoint (dist/workers/main.js <role>), to be killed by the test. */
export function spawnRole(role: 'rollout' | 'grpo', env: NodeJS.ProcessEnv, log: string): ChildProcess {
  return spawn(process.execPath, [MAIN, role], {
    stdio: ['ignore', openSync(log, 'a'), openSync(log, 'a')],
    env: { ...process.env, TEMPORAL_ADDRESS: temporalAddress(), FORGE_WORKER_LOG_LEVEL: 'WARN', ...env },
  });
}


export async function testClient(address = temporalAddress()): Promise<{ client: Client; connection: Connection }> {
  const connection = await Connection.connect({ address });
  return { client: new Client({ connection }), connection };
}

export interface RunOptions {
  jobId: string;
  maxSteps: number;
  model: string;
  rl?: Partial<RlParams>;
  settings: RlSettings;
  checkpointInterval?: number;
  learningRate?: number;
  taskTypes?: string[];
}

/** A signed rl job spec of 8 steps on `toy` with the given base model (a local path) and output repo. */
export function rlJobSpec(model: string, outputRepo: string, overrides: object = {}) {
  return makeSignedSpec({
    job_type: 'rl',
    base_model: { name: model, source: 'local', revision: 'main' },
    objective: { optimize_for: 'success_rate', task_types: ['toy'], target_metric: 0.5, max_steps: 8 },
    hyperparameters: { learning_rate: 3e-3, batch_size: 8, gradient_accumulation_steps: 1, warmup_steps: 0, weight_decay: 0 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: false, checkpoint_interval_steps: 4 },
    backend: { provider: 'local', region: 'any', max_cost_usd: 1, max_retries: 1 },
    resources: { max_hours: 0.25 },
    rl: { group_size: 8, prompts_per_step: 8, max_completion_tokens: 8 },
    ...overrides,
  });
}

export function runInput(o: RunOptions): GrpoRunInput {
  const rl = { ...resolveRl(undefined), group_size: 8, prompts_per_step: 8, max_completion_tokens: 8, ...o.rl };
  return {
    jobId: o.jobId,
    attempt: 1,
    parentWorkflowId: null,
    taskTypes: o.taskTypes ?? ['toy'],
    maxSteps: o.maxSteps,
    rl,
    trainer: {
      base_model: { name: o.model, source: 'local', revision: 'main' },
      learning_rate: o.learningRate ?? 3e-3,
      weight_decay: 0,
      warmup_steps: 0,
      clip_epsilon: rl.clip_epsilon,
      kl_beta: rl.kl_beta,
      max_off_policy_steps: rl.max_off_policy_steps,
      checkpoint_interval_steps: o.checkpointInterval ?? 1000,
      max_steps: o.maxSteps,
      seed: 1234,
    },
    settings: o.settings,
    deadline: null,
    budgetUsd: null,
  };
}

export async function startRun(client: Client, q: Queues, input: GrpoRunInput): Promise<WorkflowHandle> {
  return client.workflow.start('grpoRun', { taskQueue: q.orchestrator, workflowId: `job-${input.jobId}-grpo-${input.attempt}`, args: [input] });
}

export function readSteps(text: string): StepLine[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as StepLine & { event?: string })
    .filter((l) => l.event === 'step');
}

export type { GrpoRunResult };

/** RECORD_HISTORIES=1 (see test/workflows/replay.test.ts): keep a workflow's history for replay, once. */
export function recordHistory(file: string, workflowId: string, address = temporalAddress()): void {
  const mode = process.env.RECORD_HISTORIES;
  if (mode !== '1' && mode !== 'all') return;
  const to = path.resolve(__dirname, '..', 'histories', file);
  if (mode === '1' && existsSync(to)) return;
  writeFileSync(to, execFileSync(findTemporalCli(), ['workflow', 'show', '--address', address, '-w', workflowId, '-o', 'json']));
}
