/**
 * The RL roles of the embedded stack (`npm start`; FORGE_LOCAL_RL=0 leaves them out): one process that polls
 * `forge-rollout` (a rollout worker) and `forge-grpo` (a trainer host with one slot), on this machine's CPU. Idle, it
 * is only these Temporal workers: the heavy parts start on first use — the trainer host's `forge-trainer
 * grpo-server` when an rl job acquires it (stopped at the job's release, as on any host), and the inference server
 * (`forge-trainer serve`, loopback, weight updates on) at the first rollout, stopped after
 * FORGE_LOCAL_RL_IDLE_SECONDS without a request (workers/lazy-inference.ts).
 *
 * The inference server starts with FORGE_LOCAL_RL_MODEL (default FORGE_HOME/models/tiny-base, the demos' tiny model,
 * made when missing): rl jobs on this stack must use a base model of that architecture and tokenizer. A GPU host
 * joins the same queues with `node dist/workers/main.js rollout` (FORGE_INFERENCE_URL: vLLM/SGLang) and `… grpo`.
 *
 * Settings: workers/config/local-rl.ts (every variable in docs/configuration.md): its own, and those of the rollout
 * and grpo roles except FORGE_INFERENCE_URL, which is the lazy server's.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { NativeConnection } from '@temporalio/worker';
import { demoPaths } from '../client/demo/prepare';
import { readLocalRlConfig, type LocalRlConfig } from './config/local-rl';
import { createGrpoWorker, type GrpoWorker } from './grpo';
import { LazyInference } from './lazy-inference';
import { createRolloutWorker, type RolloutWorker } from './rollout';
import { runMain } from './run-main';
import { runRole } from './run-role';

const run = promisify(execFile);

/** The tiny model (forge-trainer init-tiny) at `dir`, made when missing (in a temporary folder first: never half-made). */
export async function ensureTinyModelAsync(dir: string, trainer: string): Promise<string> {
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  await run(trainer, ['init-tiny', '--out', tmp]);
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // made meanwhile by the demo
  }
  return dir;
}

export interface LocalRl {
  inference: LazyInference;
  rollout: RolloutWorker;
  grpo: GrpoWorker;
  /** Resolves when both workers stopped; true when they stopped to recycle the process (see recycleWhenIdle). */
  run(): Promise<boolean>;
  shutdown(): void;
}

export interface LocalRlOptions {
  connection: NativeConnection;
  namespace: string;
  /** The embedded roles' settings (workers/config/local-rl.ts), read once at start. */
  config: Pick<LocalRlConfig, 'home' | 'localRl' | 'trainer' | 'rollout' | 'grpo' | 'childEnv' | 'recycleWhenIdle'>;
  log?: (line: string) => void;
}

export async function createLocalRl(o: LocalRlOptions): Promise<LocalRl> {
  const { home, trainer, localRl: env } = o.config;
  mkdirSync(path.join(home, 'logs'), { recursive: true });
  const adminToken = randomBytes(24).toString('base64url'); // the inference server's weight loading: this process only
  const inference = new LazyInference({
    command: [trainer, 'serve'],
    model: () => (env.FORGE_LOCAL_RL_MODEL ? Promise.resolve(env.FORGE_LOCAL_RL_MODEL) : ensureTinyModelAsync(demoPaths(home).model, trainer)),
    adminToken,
    idleMs: env.FORGE_LOCAL_RL_IDLE_SECONDS * 1000,
    logFile: path.join(home, 'logs', 'rl-inference.log'),
    env: o.config.childEnv,
    ...(o.log ? { log: o.log } : {}),
    onIdleStop: () => recycle(),
  });
  const url = await inference.listen();
  const rollout = await createRolloutWorker({ connection: o.connection, namespace: o.namespace, settings: o.config.rollout({ url, adminToken }) });
  const grpo = await createGrpoWorker({ connection: o.connection, namespace: o.namespace, settings: o.config.grpo });
  let stopping = false;
  let recycled = false;
  // Idle again after a job: the process has grown (V8 keeps its heap); it ends, and `npm start` starts a fresh one.
  const recycle = (): void => {
    if (!o.config.recycleWhenIdle || stopping || grpo.host.held > 0) return;
    o.log?.('idle: restarting the RL roles to give their memory back');
    recycled = true;
    shutdown();
  };
  const shutdown = (): void => {
    if (stopping) return;
    stopping = true;
    grpo.shutdown();
    if (rollout.worker.getState() === 'RUNNING') rollout.worker.shutdown();
  };
  return {
    inference,
    rollout,
    grpo,
    shutdown,
    async run() {
      try {
        await Promise.all([rollout.worker.run(), grpo.run()]);
      } finally {
        await rollout.close();
        await inference.close();
      }
      return recycled;
    },
  };
}

/** Runs the embedded RL roles until SIGTERM/SIGINT (both workers drain; the inference server is stopped). */
export async function main(): Promise<void> {
  const config = readLocalRlConfig();
  let rl: LocalRl | undefined;
  await runRole({
    role: 'local-rl',
    config,
    onSignal: () => rl?.shutdown(),
    async start({ connection, namespace }) {
      rl = await createLocalRl({ connection, namespace, config, log: (l) => console.log(`[local-rl] ${l}`) });
      const started = rl;
      return {
        probe: started.rollout.worker,
        shutdown: () => started.shutdown(),
        run: async () => ((await started.run()) ? 'stopped to start afresh' : 'stopped'),
        banner: () =>
          `polling ${started.rollout.worker.options.taskQueue} and ${started.grpo.shared.options.taskQueue} on ${namespace}` +
          ` (pid ${process.pid}); the inference server starts at the first rollout`,
      };
    },
  });
}

if (require.main === module) runMain('local-rl', main);
