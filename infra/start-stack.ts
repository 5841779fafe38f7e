/**
 * `npm start`: the whole stack on the embedded default — the Temporal dev server (persisted in
 * $FORGE_HOME/temporal.db, Web UI on, Forge* search attributes registered) and the orchestrator worker.
 * With TEMPORAL_ADDRESS set, no dev server: the worker connects there. Ctrl-C stops everything.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../common/config';
import { forgeHome } from '../common/paths';
import { readTemporalEnv, temporalAddress } from '../common/temporal';
import { startDevServer, type DevServer } from './dev-server';

const log = (msg: string): void => console.log(`[forge] ${msg}`);

/** A dev server left behind by a stack that was killed (SIGKILL) would hold the port and the database. */
function killStale(pidFile: string): void {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline.includes('start-dev')) {
      log(`stopping a Temporal dev server left over from an earlier run (pid ${pid})`);
      process.kill(pid, 'SIGKILL');
    }
  } catch {
    // gone already
  }
  rmSync(pidFile, { force: true });
}

async function main(): Promise<void> {
  const temporal = readTemporalEnv();
  const home = forgeHome();
  const config = loadConfig(); // fail fast, before anything starts, on a bad FORGE_CONFIG
  mkdirSync(path.join(home, 'logs'), { recursive: true });

  let server: DevServer | undefined;
  const pidFile = path.join(home, 'temporal.pid');
  if (!temporal.TEMPORAL_ADDRESS) {
    killStale(pidFile);
    log('starting the Temporal dev server …');
    server = await startDevServer({
      port: temporal.FORGE_TEMPORAL_PORT,
      uiPort: temporal.FORGE_UI_PORT,
      dbFile: path.join(home, 'temporal.db'),
      logFile: path.join(home, 'logs', 'temporal.log'),
    });
    writeFileSync(pidFile, String(server.process.pid));
  }
  const address = temporalAddress(temporal);

  let stopping = false;
  let worker: ChildProcess | undefined;
  const startWorker = (): void => {
    worker = spawn(process.execPath, [path.join(__dirname, '..', 'workers', 'orchestrator.js')], {
      stdio: 'inherit',
      env: { ...process.env, FORGE_HOME: home },
    });
    worker.on('exit', (code, signal) => {
      if (stopping) return;
      log(`orchestrator worker exited (code ${code}, signal ${signal}); restarting in 2 s`);
      setTimeout(startWorker, 2000);
    });
  };
  startWorker();

  log(`Temporal:   ${address} (namespace ${temporal.TEMPORAL_NAMESPACE})`);
  if (server?.uiUrl) log(`Web UI:     ${server.uiUrl}/namespaces/${temporal.TEMPORAL_NAMESPACE}/workflows`);
  log(`FORGE_HOME: ${home}`);
  log(`backends:   ${Object.keys(config.backends).join(', ')}`);
  log('ready — Ctrl-C stops everything');

  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping the worker, then the dev server`);
    if (worker && worker.exitCode === null && worker.signalCode === null) {
      const exited = new Promise<void>((resolve) => worker?.once('exit', () => resolve()));
      worker.kill('SIGTERM');
      await exited;
    }
    await server?.stop();
    rmSync(pidFile, { force: true });
    log('stopped');
    process.exit(0);
  };
  process.on('SIGINT', (s) => void stop(s));
  process.on('SIGTERM', (s) => void stop(s));
}

main().catch((err: unknown) => {
  console.error(`[forge] cannot start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
