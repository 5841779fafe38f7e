/**
 * bench/lifecycle (issue 2): run with `npm run bench:lifecycle`.
 *  1. History events of one successful job must not grow with its duration: a 5 s and a 60 s trainer
 *     (BENCH_SHORT_SECONDS, BENCH_LONG_SECONDS).
 *  2. Wall-clock of a no-op job through trainingJob against a minimal workflow running one activity that spawns
 *     the same process, measured in the same run on the same dev server.
 * Prints a Markdown section for BENCHMARKS.md.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { parseConfig } from '../../common/config';
import { startDevServer } from '../../infra/dev-server';
import { generateKeyPair, signSpec } from '../../jobspec/signing';
import { orchestratorSettings } from '../../workers/config/orchestrator';
import { createOrchestratorWorker } from '../../workers/orchestrator';
import type { JobStatus } from '../../workflows/messages';
import { baselineActivities } from './baseline-activities';
import { benchSpec, freePort, median, percentile, taskTimeline } from './util';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
/** The short and the long trainer of part 1 (smaller in test/bench/smoke.test.ts). */
const SHORT_S = Number(process.env.BENCH_SHORT_SECONDS ?? 5);
const LONG_S = Number(process.env.BENCH_LONG_SECONDS ?? 60);
const SLEEP = ['/bin/sh', '-c', 'echo \'{"event":"progress","step":1,"max_steps":1}\'; sleep "$1"', 'trainer'];

async function main(): Promise<void> {
  process.env.FORGE_EMBEDDED = '1'; // the embedded stack: its orchestrator key is made on first use
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-bench-'));
  const server = await startDevServer({ port: await freePort(), logFile: path.join(dir, 'temporal.log') });
  const config = parseConfig({
    backends: {
      local: {
        kind: 'local',
        trainers: {
          noop: { command: ['/bin/true'] },
          'sleep-short': { command: [...SLEEP, String(SHORT_S)] },
          'sleep-long': { command: [...SLEEP, String(LONG_S)] },
        },
      },
    },
    // The lifecycle alone: a process that makes no model has nothing to integrate (artifacts, evals).
    results: { enabled: false },
  });
  const native = await NativeConnection.connect({ address: server.address });
  const forge = await createOrchestratorWorker({ connection: native, namespace: 'default', config, home: dir, taskQueue: 'bench-forge', settings: orchestratorSettings(process.env) });
  const baseline = await Worker.create({
    connection: native,
    taskQueue: 'bench-baseline',
    workflowsPath: require.resolve('./baseline-workflows'),
    activities: baselineActivities,
  });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const keys = generateKeyPair();
  const spec = (image: string) => signSpec(benchSpec(keys.did, image), keys.secretKey);
  const runs = Promise.all([forge.run(), baseline.run()]);

  try {
    // 1. history size against duration (both at once: LONG_S in all; BENCH_SKIP_HISTORY=1 skips it).
    const durations = process.env.BENCH_SKIP_HISTORY === '1' ? [] : ['sleep-short', 'sleep-long'];
    const [short = NaN, long = NaN] = await Promise.all(
      durations.map(async (image) => {
        const s = spec(image);
        const handle = await client.workflow.start('trainingJob', { taskQueue: 'bench-forge', workflowId: `job-${s.job_id}`, args: [s] });
        const status = (await handle.result()) as JobStatus;
        if (status.state !== 'COMPLETED') throw new Error(`${image} ended ${status.state}`);
        const history = await handle.fetchHistory();
        return history.events?.length ?? 0;
      }),
    );

    // 2. wall-clock of a no-op job, interleaved so both see the same machine load.
    const forgeMs: number[] = [];
    const baseMs: number[] = [];
    for (let i = 0; i < RUNS + 2; i++) {
      const s = spec('noop');
      let t = performance.now();
      await client.workflow.execute('trainingJob', { taskQueue: 'bench-forge', workflowId: `job-${s.job_id}`, args: [s] });
      const f = performance.now() - t;
      t = performance.now();
      await client.workflow.execute('baselineJob', { taskQueue: 'bench-baseline', workflowId: `baseline-${s.job_id}`, args: [['/bin/true']] });
      const b = performance.now() - t;
      if (process.env.BENCH_VERBOSE === '1') console.error(`run ${i}: trainingJob ${f.toFixed(1)} ms, baseline ${b.toFixed(1)} ms`);
      if (process.env.BENCH_TRACE === '1') {
        const [job, base] = await Promise.all([taskTimeline(client, `job-${s.job_id}`), taskTimeline(client, `baseline-${s.job_id}`)]);
        console.error(`run ${i}: trainingJob ${f.toFixed(0)} ms: ${job} | baseline ${b.toFixed(0)} ms: ${base}`);
      }
      if (i >= 2) {
        // the first two are warm-up
        forgeMs.push(f);
        baseMs.push(b);
      }
    }
    const ratio = median(forgeMs) / median(baseMs);
    const fmt = (x: number) => x.toFixed(1);
    console.log(`## Lifecycle (issue 2)

Command: \`npm run bench:lifecycle\` (BENCH_RUNS=${RUNS}${SHORT_S !== 5 || LONG_S !== 60 ? ` BENCH_SHORT_SECONDS=${SHORT_S} BENCH_LONG_SECONDS=${LONG_S}` : ''}); ${os.cpus().length} CPUs, Node ${process.version}, Temporal CLI dev server (in memory).

| measure | value | target |
|---|---|---|
| history events, job with a ${SHORT_S} s trainer | ${short} | |
| history events, job with a ${LONG_S} s trainer | ${long} | same ±2 (${Math.abs(long - short) <= 2 ? 'met' : 'NOT met'}) |
| no-op job via trainingJob, median / p90 ms | ${fmt(median(forgeMs))} / ${fmt(percentile(forgeMs, 90))} | |
| baseline (one activity spawning /bin/true), median / p90 ms | ${fmt(median(baseMs))} / ${fmt(percentile(baseMs, 90))} | |
| ratio of medians | ${ratio.toFixed(2)} | ≤ 1.5 (${ratio <= 1.5 ? 'met' : 'NOT met'}) |
`);
  } finally {
    forge.shutdown();
    baseline.shutdown();
    await runs;
    await connection.close();
    await native.close();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
