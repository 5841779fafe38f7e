/**
 * bench/trainer (issue 4): run with `npm run bench:trainer`.
 * Tokens/s of one finetune run through the orchestrator (trainingJob on the local backend, on a dev server started
 * here) against the same trainer run directly with the same contract env: same tiny model, same data, same spec,
 * same seed. Runs alternate (direct, orchestrated, orchestrated, direct, ...) so both see the same machine load.
 * Reports the trainer's own training-loop tokens/s (metrics.json) and end-to-end tokens/s (tokens ÷ wall time from
 * start to exit, or to COMPLETED). Prints a Markdown section for BENCHMARKS.md.
 *
 * Env: BENCH_RUNS (pairs, default 5), BENCH_STEPS (max_steps, default 300), BENCH_THREADS (OMP_NUM_THREADS of
 * every trainer run, default 1).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { ensureGitRepo, ensureTinyModel, reverseWordExamples } from '../../client/demo/prepare';
import { parseConfig } from '../../common/config';
import { jobAttemptDir, repoRoot } from '../../common/paths';
import { startDevServer } from '../../infra/dev-server';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { generateKeyPair, signSpec } from '../../jobspec/signing';
import { orchestratorSettings } from '../../workers/config/orchestrator';
import { createOrchestratorWorker } from '../../workers/orchestrator';
import type { JobStatus } from '../../workflows/messages';
import { freePort, median } from '../lifecycle/util';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const STEPS = Number(process.env.BENCH_STEPS ?? 300);
const THREADS = process.env.BENCH_THREADS ?? '1';
const TRAINER = path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer');
const TQ = 'bench-trainer';

interface Sample {
  /** The trainer's training-loop tokens/s (metrics.json). */
  trainTps: number;
  /** Tokens ÷ wall seconds from start to the end as the caller sees it. */
  e2eTps: number;
  /** Training tokens per CPU second of the trainer process: the work itself, whatever else the machine runs. */
  cpuTps: number;
  wallS: number;
  tokens: number;
}

interface Metrics {
  tokens: number;
  tokens_per_second: number;
  train_cpu_seconds: number;
  steps: number;
}

function readMetrics(outputDir: string): Metrics {
  return JSON.parse(readFileSync(path.join(outputDir, 'metrics.json'), 'utf8')) as Metrics;
}

function sample(outputDir: string, wallMs: number): Sample {
  const m = readMetrics(outputDir);
  if (m.steps !== STEPS) throw new Error(`${outputDir}: ${m.steps} steps, expected ${STEPS}`);
  return {
    trainTps: m.tokens_per_second,
    e2eTps: m.tokens / (wallMs / 1000),
    cpuTps: m.tokens / m.train_cpu_seconds,
    wallS: wallMs / 1000,
    tokens: m.tokens,
  };
}

/** The trainer as the local backend runs it, minus the orchestrator: same argv, same contract env. */
async function runDirect(dir: string, spec: Record<string, unknown> & { job_id: string }): Promise<Sample> {
  const work = path.join(dir, 'direct', spec.job_id);
  mkdirSync(path.join(work, 'output'), { recursive: true });
  writeFileSync(path.join(work, 'spec.json'), JSON.stringify(spec));
  const data = spec.data as Record<string, string>;
  const env = {
    ...process.env,
    OMP_NUM_THREADS: THREADS,
    JOB_ID: spec.job_id,
    JOB_TYPE: 'finetune',
    MODEL: (spec.base_model as Record<string, string>).name,
    DATA_REPO: data.repo,
    DATA_BRANCH: data.branch,
    DATA_PATH: data.path,
    FORGE_SPEC: path.join(work, 'spec.json'),
    FORGE_OUTPUT_DIR: path.join(work, 'output'),
    FORGE_ATTEMPT: '1',
  };
  const t = performance.now();
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(TRAINER, ['run'], { cwd: work, env, stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('error', reject);
    child.once('exit', resolve);
  });
  const wall = performance.now() - t;
  if (code !== 0) throw new Error(`direct trainer run exited ${code}`);
  return sample(path.join(work, 'output'), wall);
}

async function runOrchestrated(client: Client, home: string, spec: Record<string, unknown> & { job_id: string }): Promise<Sample> {
  const t = performance.now();
  const status = (await client.workflow.execute('trainingJob', { taskQueue: TQ, workflowId: `job-${spec.job_id}`, args: [spec] })) as JobStatus;
  const wall = performance.now() - t;
  if (status.state !== 'COMPLETED') throw new Error(`orchestrated run ended ${status.state}: ${status.last_error?.detail ?? ''}`);
  return sample(path.join(jobAttemptDir(home, spec.job_id, status.attempt), 'output'), wall);
}

async function main(): Promise<void> {
  process.env.FORGE_EMBEDDED = '1'; // the embedded stack: its orchestrator key is made on first use
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-bench-trainer-'));
  const home = path.join(dir, 'home');
  const model = path.join(dir, 'tiny-base');
  ensureTinyModel(model, TRAINER);
  const data = ensureGitRepo(path.join(dir, 'data'), { 'datasets/reverse-words/train.jsonl': reverseWordExamples(2000) });

  const server = await startDevServer({ port: await freePort(), logFile: path.join(dir, 'temporal.log') });
  const config = parseConfig({
    backends: { local: { kind: 'local', trainers: { [DEFAULT_TRAINER_IMAGE]: { command: [TRAINER, 'run'], env: { OMP_NUM_THREADS: THREADS } } } } },
    // The trainer's throughput, not the results pipeline (nothing is committed); the model, the data repository and
    // the spec's output repository lie in the bench's own directory, which the operator's path policy must allow.
    results: { enabled: false, git: { file_roots: [dir] } },
  });
  const native = await NativeConnection.connect({ address: server.address });
  const worker = await createOrchestratorWorker({ connection: native, namespace: 'default', config, home, taskQueue: TQ, settings: orchestratorSettings(process.env) });
  const running = worker.run();
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const keys = generateKeyPair();
  // Never written (results are off), but checked by the operator's path policy like any output repository: it must
  // lie under results.git.file_roots, or the job ends ABANDONED before it runs.
  const outputRepo = pathToFileURL(path.join(dir, 'output-repo')).href;
  const spec = () =>
    signSpec(
      {
        job_id: randomUUID(),
        owner_did: keys.did,
        created_at: Math.floor(Date.now() / 1000),
        job_type: 'finetune',
        base_model: { name: model, source: 'local', revision: 'main' },
        objective: { optimize_for: 'validation_loss', task_types: ['reverse-words'], target_metric: 0.9, max_steps: STEPS },
        data: { source: 'git', repo: data.url, branch: 'main', path: 'datasets/reverse-words/', format: 'jsonl', validation_split: 0.05 },
        hyperparameters: { learning_rate: 0.003, batch_size: 8, gradient_accumulation_steps: 2, warmup_steps: 20, weight_decay: 0.01 },
        resources: { gpus: 0, cpus: 2, ram_gb: 2, storage_gb: 1, max_hours: 1 },
        backend: { provider: 'local', region: 'any', max_cost_usd: 1 },
        artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: true, checkpoint_interval_steps: 100 },
        trainer: { image: DEFAULT_TRAINER_IMAGE },
      },
      keys.secretKey,
    );

  const direct: Sample[] = [];
  const orchestrated: Sample[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      // ABBA order: neither side always runs first.
      const order = i % 2 === 0 ? (['direct', 'orchestrated'] as const) : (['orchestrated', 'direct'] as const);
      for (const which of order) {
        const s = which === 'direct' ? await runDirect(dir, spec()) : await runOrchestrated(client, home, spec());
        (which === 'direct' ? direct : orchestrated).push(s);
        console.error(`[bench] ${which.padEnd(12)} train ${s.trainTps.toFixed(0)} tok/s, end-to-end ${s.e2eTps.toFixed(0)} tok/s, ${s.wallS.toFixed(2)} s`);
      }
    }
  } finally {
    // A worker that failed has stopped already: `running` then rejects with its error, which is the one to see.
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running;
    await connection.close();
    await native.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const med = (xs: Sample[], key: keyof Sample): number => median(xs.map((x) => x[key]));
  const pairRatios = (key: keyof Sample): number[] => orchestrated.map((o, i) => o[key] / direct[i]![key]);
  const range = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
  const train = median(pairRatios('trainTps'));
  const e2e = median(pairRatios('e2eTps'));
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const f0 = (x: number): string => x.toFixed(0);
  console.log(`## Trainer throughput

Command: \`npm run bench:trainer\` (BENCH_RUNS=${RUNS} BENCH_STEPS=${STEPS} BENCH_THREADS=${THREADS}); ${os.cpus().length} × ${cpu}, no GPU,
Node ${process.version}, Temporal CLI dev server (in memory). The reference trainer finetunes the tiny model of
\`forge-trainer init-tiny\` for ${STEPS} steps of 8 × 2 examples on 2000 reverse-word examples with checkpoints every 100 steps,
${RUNS} pairs of runs: directly (its contract env, no orchestrator) and as a trainingJob on the local backend, each pair
back to back, alternating which goes first. ${direct[0]?.tokens ?? '?'} tokens a run. Columns: medians over the runs; ratio:
median of the ${RUNS} pairs' ratios (orchestrated ÷ direct), with their range.

| measure | direct | through the orchestrator | ratio (range) | target |
|---|---|---|---|---|
| training tokens/s (trainer's metrics.json) | ${f0(med(direct, 'trainTps'))} | ${f0(med(orchestrated, 'trainTps'))} | ${train.toFixed(3)} (${range(pairRatios('trainTps'))}) | ≥ 0.95 (${train >= 0.95 ? 'met' : 'NOT met'}) |
| end-to-end tokens/s (tokens ÷ wall, start → exit / COMPLETED) | ${f0(med(direct, 'e2eTps'))} | ${f0(med(orchestrated, 'e2eTps'))} | ${e2e.toFixed(3)} (${range(pairRatios('e2eTps'))}) | |
| training tokens per CPU-second of the trainer | ${f0(med(direct, 'cpuTps'))} | ${f0(med(orchestrated, 'cpuTps'))} | ${median(pairRatios('cpuTps')).toFixed(3)} (${range(pairRatios('cpuTps'))}) | |
| wall seconds a run | ${med(direct, 'wallS').toFixed(2)} | ${med(orchestrated, 'wallS').toFixed(2)} | | |
`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
