/**
 * bench/rl (issue 6): run with `npm run bench:rl`.
 * GRPO steps per hour with max_off_policy_steps 0 (synchronous), 1 and 2, in the same run on the same workers, through
 * the real pieces: grpoRun on a Temporal dev server started here, a rollout worker in front of the reference trainer's
 * inference server, a trainer host running `forge-trainer grpo-server` on the tiny model.
 *
 *  - simulated: rollout time ≈ update time = BENCH_RL_SECONDS. Every completion request is held by a proxy until it
 *    is BENCH_RL_SECONDS old (the prompts of a step run side by side, as on a GPU inference server), and every update
 *    is padded to BENCH_RL_SECONDS (FORGE_GRPO_MIN_UPDATE_SECONDS). The work itself is the real tiny model's.
 *  - real: the tiny model as is, both sides on this machine's CPUs (no padding).
 *
 * Steady state: the first BENCH_RL_WARMUP steps are left out (the pipeline fills). Steps/hour from the trainer's log
 * times; trainer idle = Σ idle ÷ Σ step time over the steady steps (idle: from the end of one update to the start of
 * the next). Prints a Markdown section for BENCHMARKS.md and the raw numbers as JSON.
 *
 * Rollouts and updates overlap only if they do not share hardware: with BENCH_RL_PIN=1 (the default where `taskset`
 * exists and there are 2+ CPUs) the inference server runs on CPU 0 and the trainer's policy process on CPU 1, as an
 * inference GPU and a trainer GPU would. This process (workers, workflows) and the Temporal server go on CPU 0 too
 * (BENCH_RL_PIN_ORCHESTRATOR, default 1 with BENCH_RL_PIN), so that CPU 1 is the trainer's alone, as a trainer GPU
 * is: left to float, they took turns on the trainer's CPU and stretched its updates by 10–40 % at random.
 *
 * The real mode is short and shares the machine with everything else: it runs BENCH_RL_REPEATS rounds of k = 0, 1, 2
 * (BENCH_RL_REAL_STEPS steps each) and reports medians, the ratio being the median of each round's own ratio.
 *
 * Env: BENCH_RL_STEPS (default 14), BENCH_RL_WARMUP (3), BENCH_RL_SECONDS (2), BENCH_RL_MODES ("simulated,real"),
 * BENCH_RL_PROMPTS (prompts per step, 4), BENCH_RL_GROUP (group size, 8; the real mode uses BENCH_RL_REAL_GROUP, 80,
 * so that an update costs about what the step's rollouts cost: the "step − update s" column of k = 0 shows it),
 * BENCH_RL_REAL_STEPS (30), BENCH_RL_REPEATS (5),
 * BENCH_RL_PIN, BENCH_RL_PIN_ORCHESTRATOR (see above), BENCH_RL_PIPELINE_DEPTH (the trainer host's
 * FORGE_GRPO_PIPELINE_DEPTH, 2; 1 shows what pipelined updates buy).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createRlCollectActivities } from '../../activities/rl/collect';
import type { StepLine } from '../../activities/rl/types';
import { repoRoot } from '../../common/paths';
import { rlSettings } from '../../common/rl-config';
import { startDevServer, type DevServer } from '../../infra/dev-server';
import { resolveRl } from '../../jobspec/rl';
import type { GrpoRunInput, GrpoRunResult } from '../../workflows/grpo-run';
import { grpoSettings } from '../../workers/config/grpo';
import { rolloutSettings } from '../../workers/config/rollout';
import { createGrpoWorker } from '../../workers/grpo';
import { defaultWorkflowBundle } from '../../workers/orchestrator';
import { createRolloutWorker } from '../../workers/rollout';
import { freePort, median } from '../lifecycle/util';

const STEPS = Number(process.env.BENCH_RL_STEPS ?? 14);
const WARMUP = Number(process.env.BENCH_RL_WARMUP ?? 3);
const SECONDS = Number(process.env.BENCH_RL_SECONDS ?? 2);
const MODES = (process.env.BENCH_RL_MODES ?? 'simulated,real').split(',').filter(Boolean) as ('simulated' | 'real')[];
const PROMPTS = Number(process.env.BENCH_RL_PROMPTS ?? 4);
const GROUP = Number(process.env.BENCH_RL_GROUP ?? 8);
const REAL_GROUP = Number(process.env.BENCH_RL_REAL_GROUP ?? 80);
const REAL_STEPS = Number(process.env.BENCH_RL_REAL_STEPS ?? 30);
const REPEATS = Number(process.env.BENCH_RL_REPEATS ?? 5);
const TRAINER = path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer');
const KS = [0, 1, 2];
const PIN = (process.env.BENCH_RL_PIN ?? (os.cpus().length >= 2 && hasTaskset() ? '1' : '0')) === '1';
const PIPELINE_DEPTH = Number(process.env.BENCH_RL_PIPELINE_DEPTH ?? 2);
const PIN_ORCHESTRATOR = PIN && (process.env.BENCH_RL_PIN_ORCHESTRATOR ?? '1') === '1';

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** argv pinned to one CPU when BENCH_RL_PIN is on. */
function pinned(cpu: number, argv: string[]): string[] {
  return PIN ? ['taskset', '-c', String(cpu), ...argv] : argv;
}

type LogLine = StepLine & { time: number; update_seconds: number };

interface Result {
  mode: string;
  round: number;
  k: number;
  stepsPerHour: number;
  idle: number;
  updateS: number;
  stepS: number;
  stalenessMax: number;
  rewardFirst: number;
  rewardLast: number;
  wallS: number;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${err}`))));
  });
}

async function serve(model: string): Promise<{ url: string; proc: ChildProcess }> {
  const [cmd, ...args] = pinned(0, [TRAINER, 'serve', '--model', model, '--port', '0', '--allow-weight-updates']);
  const proc = spawn(cmd!, args, {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        const ev = JSON.parse(line) as { event?: string; url?: string };
        if (ev.event === 'serving' && ev.url) resolve(ev.url);
      } catch {
        // not an event
      }
    });
  });
  return { url, proc };
}

/** Holds every completion answer until it is `seconds` old (simulated generation time); passes the rest through. */
async function slowProxy(target: string, seconds: number): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer((req, res) => {
    const started = Date.now();
    const upstream = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const wait = req.url?.startsWith('/v1/completions') ? Math.max(0, seconds * 1000 - (Date.now() - started)) : 0;
        setTimeout(() => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          res.end(Buffer.concat(chunks));
        }, wait);
      });
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  return { url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, server };
}

interface Shape {
  steps: number;
  group: number;
}

function input(jobId: string, model: string, k: number, queues: { grpo: string; rollout: string }, shape: Shape): GrpoRunInput {
  const STEPS = shape.steps;
  const rl = { ...resolveRl(undefined), group_size: shape.group, prompts_per_step: PROMPTS, max_completion_tokens: 8, max_off_policy_steps: k };
  return {
    jobId,
    attempt: 1,
    parentWorkflowId: null,
    taskTypes: ['toy'],
    maxSteps: STEPS,
    rl,
    trainer: {
      base_model: { name: model, source: 'local', revision: 'main' },
      learning_rate: 3e-3,
      weight_decay: 0,
      warmup_steps: 0,
      clip_epsilon: rl.clip_epsilon,
      kl_beta: rl.kl_beta,
      max_off_policy_steps: k,
      checkpoint_interval_steps: 1000,
      max_steps: STEPS,
      seed: 1234,
    },
    settings: { ...rlSettings(), grpoTaskQueue: queues.grpo, rolloutTaskQueue: queues.rollout, statusIntervalSeconds: 3600 },
    deadline: null,
    budgetUsd: null,
  };
}

function summarize(mode: string, round: number, k: number, lines: LogLine[], wallS: number): Result {
  const steady = lines.filter((l) => l.step > WARMUP);
  const span = steady.at(-1)!.time - lines.find((l) => l.step === WARMUP)!.time;
  const sum = (f: (l: LogLine) => number): number => steady.reduce((s, l) => s + f(l), 0);
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    mode,
    round,
    k,
    stepsPerHour: (steady.length / span) * 3600,
    idle: sum((l) => l.trainer_idle_fraction * l.step_seconds) / sum((l) => l.step_seconds),
    updateS: sum((l) => l.update_seconds) / steady.length,
    stepS: span / steady.length,
    stalenessMax: Math.max(...lines.map((l) => l.staleness_max)),
    rewardFirst: mean(lines.slice(0, 3).map((l) => l.reward_mean)),
    rewardLast: mean(lines.slice(-3).map((l) => l.reward_mean)),
    wallS,
  };
}

async function benchMode(mode: 'simulated' | 'real', address: string, client: Client, model: string, home: string): Promise<Result[]> {
  const served = await serve(model);
  const proxy = mode === 'simulated' ? await slowProxy(served.url, SECONDS) : undefined;
  const queues = { orchestrator: `bench-rl-${mode}`, grpo: `bench-rl-${mode}-grpo`, rollout: `bench-rl-${mode}-rollout` };
  const connection = await NativeConnection.connect({ address });
  const runWorker = await Worker.create({
    connection,
    taskQueue: queues.orchestrator,
    workflowBundle: { codePath: defaultWorkflowBundle() ?? (() => { throw new Error('no dist/workflow-bundle.js: run npm run build'); })() },
    // The RL session key of `home` (FORGE_HOME/secrets/rl-session.key), as the workers below read it.
    activities: createRlCollectActivities({ home, env: {} }),
  });
  const rollout = await createRolloutWorker({
    connection,
    namespace: 'default',
    settings: rolloutSettings({
      FORGE_INFERENCE_URL: proxy?.url ?? served.url,
      FORGE_ROLLOUT_TASK_QUEUE: queues.rollout,
      FORGE_HOST_ID: `bench-${mode}-r`,
      FORGE_ROLLOUT_MAX_ACTIVITIES: String(PROMPTS * 3),
      FORGE_ROLLOUT_CACHE_DIR: path.join(home, `cache-${mode}`),
    }, home),
  });
  const grpo = await createGrpoWorker({
    connection,
    namespace: 'default',
    settings: grpoSettings({
      FORGE_HOST_ID: `bench-${mode}-g`,
      FORGE_GRPO_TASK_QUEUE: queues.grpo,
      FORGE_GRPO_STATE_DIR: path.join(home, 'grpo-state'),
      FORGE_GRPO_WORK_DIR: path.join(home, `grpo-work-${mode}`),
      FORGE_GRPO_TRAINER_COMMAND: JSON.stringify(pinned(1, [TRAINER, 'grpo-server'])),
      FORGE_GRPO_MIN_UPDATE_SECONDS: mode === 'simulated' ? String(SECONDS) : '0',
      FORGE_GRPO_SHUTDOWN_GRACE_SECONDS: '5',
      FORGE_GRPO_PIPELINE_DEPTH: String(PIPELINE_DEPTH),
    }, home),
  });
  const running = Promise.all([runWorker.run(), rollout.worker.run(), grpo.run()]);
  const results: Result[] = [];
  const shape: Shape = mode === 'simulated' ? { steps: STEPS, group: GROUP } : { steps: REAL_STEPS, group: REAL_GROUP };
  const rounds = mode === 'simulated' ? 1 : REPEATS;
  try {
    for (let round = 1; round <= rounds; round++) for (const k of KS) {
      const jobId = randomUUID();
      const t0 = Date.now();
      const handle = await client.workflow.start('grpoRun', { taskQueue: queues.orchestrator, workflowId: `job-${jobId}-grpo-1`, args: [input(jobId, model, k, queues, shape)] });
      const r = (await handle.result()) as GrpoRunResult;
      const lines = readFileSync(path.join(r.outputDir, 'training_log.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LogLine);
      const s = summarize(mode, round, k, lines, (Date.now() - t0) / 1000);
      console.error(`[bench:rl] ${mode} k=${k}: ${s.stepsPerHour.toFixed(0)} steps/h, idle ${(s.idle * 100).toFixed(1)} %, update ${s.updateS.toFixed(2)} s, step ${s.stepS.toFixed(2)} s`);
      results.push(s);
    }
  } finally {
    runWorker.shutdown();
    rollout.worker.shutdown();
    grpo.shutdown();
    await running;
    await rollout.close();
    await connection.close();
    proxy?.server.close();
    served.proc.kill('SIGTERM');
  }
  return results;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const home = mkdtempSync(path.join(os.tmpdir(), 'forge-bench-rl-'));
  let server: DevServer | undefined;
  try {
    const address = process.env.TEMPORAL_ADDRESS ?? (server = await startDevServer({ port: await freePort(), logFile: path.join(home, 'temporal.log') })).address;
    if (PIN_ORCHESTRATOR) {
      for (const pid of [process.pid, server?.process.pid]) if (pid) execFileSync('taskset', ['-a', '-cp', '0', String(pid)], { stdio: 'ignore' });
    }
    const model = path.join(home, 'tiny');
    await run(TRAINER, ['init-tiny', '--out', model]);
    const connection = await Connection.connect({ address });
    const client = new Client({ connection });
    const results: Result[] = [];
    for (const mode of MODES) results.push(...(await benchMode(mode, address, client, model, home)));
    await connection.close();
    console.log(report(results));
    console.log(`\n<!-- raw: ${JSON.stringify(results)} -->`);
  } finally {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  }
}

function report(results: Result[]): string {
  const cpus = os.cpus();
  const out = [
    `Command: \`npm run bench:rl\` (BENCH_RL_STEPS=${STEPS} BENCH_RL_WARMUP=${WARMUP} BENCH_RL_SECONDS=${SECONDS} BENCH_RL_PROMPTS=${PROMPTS} BENCH_RL_GROUP=${GROUP} BENCH_RL_REAL_GROUP=${REAL_GROUP} BENCH_RL_REAL_STEPS=${REAL_STEPS} BENCH_RL_REPEATS=${REPEATS} BENCH_RL_PIN=${PIN ? 1 : 0} BENCH_RL_PIN_ORCHESTRATOR=${PIN_ORCHESTRATOR ? 1 : 0} BENCH_RL_PIPELINE_DEPTH=${PIPELINE_DEPTH}); ${cpus.length} × ${cpus[0]?.model ?? 'CPU'}, no GPU, Node ${process.version}, Temporal CLI dev server (in memory).`,
    '',
    // step − update: in a synchronous step, the rollouts and the hand-overs; with async, what the trainer waited.
    '| mode | max_off_policy_steps | rounds | steps/hour | vs synchronous (range) | trainer idle | update s | step s | step − update s | staleness max |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const mode of [...new Set(results.map((r) => r.mode))]) {
    for (const k of KS) {
      const mine = results.filter((r) => r.mode === mode && r.k === k);
      const ratios = mine.map((r) => r.stepsPerHour / results.find((x) => x.mode === mode && x.round === r.round && x.k === 0)!.stepsPerHour);
      const range = ratios.length > 1 ? ` (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})` : '';
      out.push(
        `| ${mode} | ${k} | ${mine.length} | ${median(mine.map((r) => r.stepsPerHour)).toFixed(0)} | ${median(ratios).toFixed(2)}${range} | ${(median(mine.map((r) => r.idle)) * 100).toFixed(1)} % | ${median(mine.map((r) => r.updateS)).toFixed(2)} | ${median(mine.map((r) => r.stepS)).toFixed(2)} | ${median(mine.map((r) => r.stepS - r.updateS)).toFixed(2)} | ${Math.max(...mine.map((r) => r.stalenessMax))} |`,
      );
    }
  }
  return out.join('\n');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
