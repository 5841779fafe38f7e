/**
 * bench/api (issue 3): run with `npm run bench:api`.
 * POST /jobs latency against `client.workflow.start` called directly, in the same run on the same dev server: an
 * open-loop schedule at a fixed request rate, rotating between the paths request by request so all see the same
 * load (a third, diagnostic path starts directly with the API's start options: memo, search attributes, id policies).
 * The API runs as its own process, as `npm start` runs it. Target: API p99 ≤ 2 × direct p99.
 * No worker polls the bench's task queue: this measures admission (validation, signature, idempotent start), not
 * training. Prints a Markdown section for BENCHMARKS.md.
 *   BENCH_RATE   requests per second, both paths together (default 40)
 *   BENCH_SECONDS  length of the measured run (default 30)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { z } from 'zod';
import type { ListeningMessage } from '../../client/api/server';
import { parseEnv } from '../../common/temporal';
import { startDevServer } from '../../infra/dev-server';
import { specHash } from '../../jobspec/parse';
import { generateKeyPair, signSpec } from '../../jobspec/signing';
import { ForgeBaseModel, ForgeJobState, ForgeJobType, ForgeOwner } from '../../workflows/search-attributes';
import { benchSpec, freePort, percentile } from '../lifecycle/util';

const env = parseEnv(
  z.object({
    BENCH_RATE: z.coerce.number().positive().max(1000).default(40),
    BENCH_SECONDS: z.coerce.number().positive().max(3600).default(30),
  }),
);
const TASK_QUEUE = 'bench-api';
const WARMUP = 20;

interface Sample {
  ms: number;
  ok: boolean;
}

function startApi(dir: string, temporal: string, port: number): Promise<ChildProcess> {
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ backends: { local: { kind: 'local', trainers: { noop: { command: ['/bin/true'] } } } }, results: { enabled: false } }));
  const child = spawn(process.execPath, [path.join(__dirname, '..', '..', 'client', 'api', 'server.js')], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: temporal,
      FORGE_API_PORT: String(port),
      FORGE_API_LOG_LEVEL: 'warn',
      FORGE_ORCHESTRATOR_TASK_QUEUE: TASK_QUEUE,
      FORGE_HOME: dir,
      FORGE_CONFIG: path.join(dir, 'config.json'),
    },
  });
  return new Promise((resolve, reject) => {
    child.on('message', (m: Partial<ListeningMessage>) => m.type === 'forge-api-listening' && resolve(child));
    child.on('exit', (code) => reject(new Error(`API exited (code ${code}) before listening`)));
  });
}

function stats(samples: Sample[]) {
  const ms = samples.filter((s) => s.ok).map((s) => s.ms);
  return {
    n: samples.length,
    errors: samples.filter((s) => !s.ok).length,
    p50: percentile(ms, 50),
    p90: percentile(ms, 90),
    p99: percentile(ms, 99),
    max: Math.max(...ms),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-bench-api-'));
  const server = await startDevServer({ port: await freePort(), logFile: path.join(dir, 'temporal.log') });
  const apiPort = await freePort();
  const api = await startApi(dir, server.address, apiPort);
  const url = `http://127.0.0.1:${apiPort}/jobs`;
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const keys = generateKeyPair();
  const total = Math.round(env.BENCH_RATE * env.BENCH_SECONDS);
  // Signing is the submitter's cost, not the API's: sign everything before the clock starts.
  const specs = Array.from({ length: total + 2 * WARMUP }, () => signSpec(benchSpec(keys.did, 'noop'), keys.secretKey));

  const viaApi = async (spec: Record<string, unknown>): Promise<Sample> => {
    const t = performance.now();
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
    await res.arrayBuffer();
    return { ms: performance.now() - t, ok: res.status === 201 };
  };
  const direct = async (spec: Record<string, unknown>, withApiOptions = false): Promise<Sample> => {
    const t = performance.now();
    // With the API's start options (memo, search attributes, id policies): how much of the gap is Temporal's.
    const extra = withApiOptions
      ? {
          workflowIdReusePolicy: 'REJECT_DUPLICATE' as const,
          workflowIdConflictPolicy: 'FAIL' as const,
          memo: { submitted_spec_sha256: specHash(spec) },
          typedSearchAttributes: [
            { key: ForgeJobState, value: 'CREATED' },
            { key: ForgeJobType, value: String(spec.job_type) },
            { key: ForgeOwner, value: String(spec.owner_did) },
            { key: ForgeBaseModel, value: 'tiny' },
          ],
        }
      : {};
    try {
      await client.workflow.start('trainingJob', { taskQueue: TASK_QUEUE, workflowId: `job-${String(spec.job_id)}`, args: [spec], ...extra });
      return { ms: performance.now() - t, ok: true };
    } catch {
      return { ms: performance.now() - t, ok: false };
    }
  };

  try {
    for (let i = 0; i < WARMUP; i++) {
      await viaApi(specs[2 * i]!);
      await direct(specs[2 * i + 1]!);
    }
    // Open loop: request i leaves at t0 + i/rate whatever earlier ones are doing; i mod 3 picks the path.
    const apiSamples: Promise<Sample>[] = [];
    const directSamples: Promise<Sample>[] = [];
    const optionSamples: Promise<Sample>[] = [];
    const t0 = performance.now();
    let lateMs = 0;
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / env.BENCH_RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else lateMs = Math.max(lateMs, -wait);
      const spec = specs[2 * WARMUP + i]!;
      if (i % 3 === 0) apiSamples.push(viaApi(spec));
      else if (i % 3 === 1) directSamples.push(direct(spec));
      else optionSamples.push(direct(spec, true));
    }
    const a = stats(await Promise.all(apiSamples));
    const d = stats(await Promise.all(directSamples));
    const o = stats(await Promise.all(optionSamples));
    const ratio = a.p99 / d.p99;
    const fmt = (x: number): string => x.toFixed(1);
    const row = (name: string, s: ReturnType<typeof stats>): string => `| ${name} | ${s.n} | ${s.errors} | ${fmt(s.p50)} | ${fmt(s.p90)} | ${fmt(s.p99)} | ${fmt(s.max)} |`;
    console.log(`## API latency

Command: \`BENCH_RATE=${env.BENCH_RATE} BENCH_SECONDS=${env.BENCH_SECONDS} npm run bench:api\`; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, Temporal CLI dev server (in memory), API as its own process (as \`npm start\` runs it), no worker on the task queue (admission only).
Open loop at ${env.BENCH_RATE} requests/s for ${env.BENCH_SECONDS} s, rotating request by request between POST /jobs, a direct \`client.workflow.start\` and (diagnostic) a direct start with the API's start options (memo, search attributes, id policies), ${fmt(env.BENCH_RATE / 3)}/s each; the scheduler ran at most ${fmt(lateMs)} ms late.

| path | requests | errors | p50 ms | p90 ms | p99 ms | max ms |
|---|---|---|---|---|---|---|
${row('POST /jobs (HTTP, zod, Ed25519 verify, idempotent start)', a)}
${row('client.workflow.start directly', d)}
${row('(diagnostic) client.workflow.start with the API\'s start options', o)}

p99 ratio API / direct: **${ratio.toFixed(2)}** (target ≤ 2: ${ratio <= 2 ? 'met' : 'NOT met'}).
`);
  } finally {
    await connection.close();
    api.kill('SIGTERM');
    await new Promise((r) => api.once('exit', r));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
