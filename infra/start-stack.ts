/**
 * `npm start`: the whole stack on the embedded default — the Temporal dev server (persisted in
 * $FORGE_HOME/temporal.db, Web UI on, Forge* search attributes registered), the orchestrator worker and the HTTP
 * API (client/api, on FORGE_API_PORT), and the RL roles (workers/local-rl.ts: forge-rollout and forge-grpo on this
 * machine's CPU, their model processes started on first use; FORGE_LOCAL_RL=0 leaves them out).
 * With TEMPORAL_ADDRESS set, no dev server: the worker connects there. Ctrl-C stops everything.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../common/config';
import { localRlEnabled } from '../common/local-rl';
import { forgeHome } from '../common/paths';
import { requireReplicaProvisioning } from '../common/provisioning';
import { connectClient, readTemporalEnv, temporalAddress } from '../common/temporal';
import type { ListeningMessage } from '../client/api/server';
import { readApiSettings } from '../client/api/env';
import { startDevServer, type DevServer } from './dev-server';
import { ensureReaperScheduleFor } from './reaper-schedule';

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

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

async function main(): Promise<void> {
  const temporal = readTemporalEnv();
  const home = forgeHome();
  const config = loadConfig(); // fail fast, before anything starts, on a bad FORGE_CONFIG
  readApiSettings(); // and on a bad FORGE_API_* variable
  mkdirSync(path.join(home, 'logs'), { recursive: true });
  // The embedded stack makes its orchestrator key here, once, before any child starts: the banner's "ready" then
  // means the key exists (the worker, the API and the RL roles each made it on first use, racing the banner).
  requireReplicaProvisioning(config, home, { ...process.env, FORGE_EMBEDDED: '1' });

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
  // The reaper's schedule (idempotent: created once, updated when reaper.* in the config changed).
  try {
    const connection = await connectClient(temporal);
    try {
      log(await ensureReaperScheduleFor(connection, temporal.TEMPORAL_NAMESPACE, config));
    } finally {
      await connection.close();
    }
  } catch (err) {
    log(`the reaper schedule could not be made (${(err as Error).message}); nothing reaps orphaned deployments until it is: restart npm start, or run the setup role`);
  }

  let stopping = false;
  let worker: ChildProcess | undefined;
  const startWorker = (): void => {
    worker = spawn(process.execPath, [path.join(__dirname, '..', 'workers', 'orchestrator.js')], {
      stdio: 'inherit',
      env: { ...process.env, FORGE_HOME: home, FORGE_EMBEDDED: '1' },
    });
    worker.on('exit', (code, signal) => {
      if (stopping) return;
      log(`orchestrator worker exited (code ${code}, signal ${signal}); restarting in 2 s`);
      setTimeout(startWorker, 2000);
    });
  };
  startWorker();

  // The RL roles: Temporal workers only until an rl job comes (workers/local-rl.ts); on the config's RL queues.
  let localRl: ChildProcess | undefined;
  const rlEnabled = localRlEnabled();
  const startLocalRl = (): void => {
    // A small young generation and two malloc arenas: ≈ 100 MiB instead of ≈ 130 while idle (BENCHMARKS.md).
    localRl = spawn(process.execPath, ['--max-semi-space-size=1', path.join(__dirname, '..', 'workers', 'local-rl.js')], {
      stdio: 'inherit',
      env: {
        MALLOC_ARENA_MAX: '2',
        ...process.env,
        FORGE_HOME: home,
        FORGE_EMBEDDED: '1',
        FORGE_ROLLOUT_TASK_QUEUE: config.rl.rollout_task_queue,
        FORGE_GRPO_TASK_QUEUE: config.rl.grpo_task_queue,
      },
    });
    localRl.on('exit', (code, signal) => {
      if (stopping) return;
      // Exit 0: idle after a job, the process hands its memory back and starts afresh (workers/local-rl.ts).
      if (code === 0) return startLocalRl();
      log(`RL roles exited (code ${code}, signal ${signal}); restarting in 2 s`);
      setTimeout(startLocalRl, 2000);
    });
  };
  if (rlEnabled) startLocalRl();

  // The API reports its URL over IPC once it listens; the banner waits for it (a taken port fails the start).
  let api: ChildProcess | undefined;
  const startApi = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(__dirname, '..', 'client', 'api', 'server.js')], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        env: { ...process.env, FORGE_HOME: home, FORGE_EMBEDDED: '1' },
      });
      api = child;
      let listening = false;
      child.on('message', (m: Partial<ListeningMessage>) => {
        if (m.type !== 'forge-api-listening' || typeof m.url !== 'string') return;
        listening = true;
        resolve(m.url);
      });
      child.on('exit', (code, signal) => {
        if (!listening) return reject(new Error(`the HTTP API exited before listening (code ${code}, signal ${signal}); see above`));
        if (stopping) return;
        log(`HTTP API exited (code ${code}, signal ${signal}); restarting in 2 s`);
        setTimeout(() => {
          if (!stopping) startApi().catch((err: Error) => log(err.message));
        }, 2000);
      });
    });
  let apiUrl: string;
  try {
    apiUrl = await startApi();
  } catch (err) {
    stopping = true;
    worker?.kill('SIGTERM');
    localRl?.kill('SIGTERM');
    await server?.stop();
    rmSync(pidFile, { force: true });
    throw err;
  }

  log(`Temporal:   ${address} (namespace ${temporal.TEMPORAL_NAMESPACE})`);
  if (server?.uiUrl) log(`Web UI:     ${server.uiUrl}/namespaces/${temporal.TEMPORAL_NAMESPACE}/workflows`);
  log(`API:        ${apiUrl} (OpenAPI at ${apiUrl}/openapi.json)`);
  log(`FORGE_HOME: ${home}`);
  log(`backends:   ${Object.keys(config.backends).join(', ')}`);
  log(
    rlEnabled
      ? `RL:         ${config.rl.rollout_task_queue} and ${config.rl.grpo_task_queue} on this machine (CPU; pid ${localRl?.pid}; the model processes start with the first rl job) — FORGE_LOCAL_RL=0 turns them off`
      : `RL:         off (FORGE_LOCAL_RL=0): rl jobs wait for a host running \`node dist/workers/main.js grpo\` and \`… rollout\``,
  );
  log('ready — Ctrl-C stops everything');

  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping the API and the workers, then the dev server`);
    await Promise.all([api, worker, localRl].map((child) => stopChild(child)));
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
