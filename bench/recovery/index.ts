/**
 * bench/recovery (issue 13 point 7): run with `npm run bench:recovery`. From a deployment's death (a local trainer
 * SIGKILLed; a lease closed on the fake Akash) to the next attempt RUNNING, median and p99 over ≥ 30 deaths each,
 * against the floor (status interval + retry backoff). Target: p99 ≤ floor + 2 s. Prints a Markdown section for
 * BENCHMARKS.md. BENCH_RECOVERY_JOBS × BENCH_RECOVERY_DEATHS deaths per kind (default 6 × 5).
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { startDevServer } from '../../infra/dev-server';
import { orchestratorSettings } from '../../workers/config/orchestrator';
import { createOrchestratorWorker } from '../../workers/orchestrator';
import { freePort } from '../lifecycle/util';
import { measureRecovery, recoveryTable } from './run';

const JOBS = Number(process.env.BENCH_RECOVERY_JOBS ?? 6);
const DEATHS = Number(process.env.BENCH_RECOVERY_DEATHS ?? 5);
const STATUS_MS = Number(process.env.BENCH_RECOVERY_STATUS_MS ?? 1000);
const BACKOFF_S = Number(process.env.BENCH_RECOVERY_BACKOFF_SECONDS ?? 1);

async function main(): Promise<void> {
  process.env.FORGE_EMBEDDED = '1'; // the embedded stack: its orchestrator key is made on first use
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-bench-recovery-'));
  const server = await startDevServer({ port: await freePort(), logFile: path.join(dir, 'temporal.log') });
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  try {
    const figures = await measureRecovery({
      client: new Client({ connection }),
      jobs: JOBS,
      deathsPerJob: DEATHS,
      statusMs: STATUS_MS,
      backoffSeconds: BACKOFF_S,
      async startWorker(config, home, taskQueue) {
        const worker = await createOrchestratorWorker({ connection: native, namespace: 'default', config, home, taskQueue, settings: orchestratorSettings(process.env) });
        const running = worker.run();
        return async () => {
          worker.shutdown();
          await running;
        };
      },
    });
    console.log(`## Recovery latency (issue 13)

Command: \`npm run bench:recovery\` (${JOBS} jobs × ${DEATHS} deaths per kind; status interval ${STATUS_MS} ms, retry backoff ${BACKOFF_S} s); ${os.cpus().length} CPUs, Node ${process.version}, Temporal CLI dev server (in memory).

${recoveryTable(figures)}
`);
    const problems = figures.flatMap((f) => f.problems);
    if (problems.length) {
      console.error(problems.join('\n'));
      process.exitCode = 1;
    }
  } finally {
    await connection.close();
    await native.close();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
