/** Worker processes as the image runs them (dist/workers/main.js <role>), for tests that kill them for real. */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import path from 'node:path';
import { temporalAddress } from './forge';

export const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'workers', 'main.js');

export function exited(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve() : p.once('exit', () => resolve())));
}

export interface WorkerProcessOptions {
  home: string;
  configFile: string;
  taskQueue: string;
  address?: string;
  env?: Record<string, string>;
}

/** The orchestrator role on the test's task queue, stderr to FORGE_HOME/worker.log. */
export function spawnWorker(o: WorkerProcessOptions): ChildProcess {
  return spawn(process.execPath, [MAIN, 'orchestrator'], {
    stdio: ['ignore', 'ignore', openSync(path.join(o.home, 'worker.log'), 'a')],
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: o.address ?? temporalAddress(),
      FORGE_HOME: o.home,
      FORGE_CONFIG: o.configFile,
      FORGE_ORCHESTRATOR_TASK_QUEUE: o.taskQueue,
      FORGE_WORKFLOW_BUNDLE: process.env.FORGE_TEST_WORKFLOW_BUNDLE,
      FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS: '1',
      FORGE_WORKER_LOG_LEVEL: 'ERROR',
      ...o.env,
    },
  });
}
