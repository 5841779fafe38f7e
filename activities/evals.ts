/**
 * Runs the eval suite (activities/eval-suite.ts) against a model through an OpenAI-compatible completions endpoint:
 * a model directory is served by the reference trainer's `serve` for the run (any vLLM-style endpoint works as is).
 * Greedy decoding (temperature 0, fixed seed), one request per task; one row per task is appended to evals.jsonl
 * (`{ts, model_ref, job_id, task_type, task_id, success, latency_ms, ...}`) and a summary per task type returned.
 * Used by the `evaluateModel` activity (EVALUATING, eval jobs) and by `cf-eval`.
 */
import type { ChildProcess } from 'node:child_process';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { repoRoot } from '../common/paths';
import type { EvalSettings } from '../common/results-config';
import { spawnTrainer, trainerEnvironment } from '../common/trainer-env';
import { checkAnswer, loadSuite, renderPrompt, suiteTaskTypes, type EvalSuite } from './eval-suite';
import { OperationError } from '../common/errors';

export interface EvalRow {
  ts: string;
  model_ref: string;
  job_id: string | null;
  task_type: string;
  task_id: string;
  success: boolean;
  latency_ms: number;
  /** One run of the suite (a job's evaluation, a cf-eval invocation): rows of a retried run are not appended twice. */
  eval_id: string;
  suite_sha256: string;
  detail: string;
  /** The model's answer, cut at 500 characters. */
  completion: string;
}

/** Per task type: what the `status` query shows under `evals`, and what promotion compares. */
export interface EvalSummary {
  task_type: string;
  tasks: number;
  successes: number;
  success_rate: number;
  /** sha256 of the task file; null when the suite has no tasks for this type. */
  suite_sha256: string | null;
  mean_latency_ms: number;
}

export type EvalTarget = { kind: 'dir'; dir: string } | { kind: 'endpoint'; url: string };

export class EvalRunError extends OperationError {
  override name = 'EvalRunError';
}

export function defaultServeCommand(): string[] {
  return [path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer'), 'serve'];
}

// ---- the model server --------------------------------------------------------------------------------------------

const servingSchema = z.looseObject({ event: z.literal('serving'), url: z.url({ protocol: /^https?$/ }) });

export interface ModelServer {
  url: string;
  stop(): Promise<void>;
}

/** Serves a model directory on a free loopback port until stop(); its own process group, so nothing outlives it. */
/** `envPassthrough`: names of the worker's environment the server also gets (the operator's trainer_env_passthrough). */
export async function serveModel(
  dir: string,
  settings: Pick<EvalSettings, 'serve_command' | 'serve_env' | 'serve_timeout_ms'>,
  envPassthrough: readonly string[] = [],
): Promise<ModelServer> {
  const command = settings.serve_command ?? defaultServeCommand();
  const [program] = command;
  const env = trainerEnvironment({ base: process.env, passthrough: envPassthrough, operator: { OMP_NUM_THREADS: '1', ...settings.serve_env } });
  const child: ChildProcess = spawnTrainer([...command, '--model', dir, '--host', '127.0.0.1', '--port', '0'], env, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  };
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new EvalRunError(`the model server for ${dir} did not start within ${settings.serve_timeout_ms} ms`)), settings.serve_timeout_ms);
    child.once('error', (err) => reject(new EvalRunError(`cannot start the model server (${program}): ${err.message}`, true)));
    void exited.then((code) =>
      reject(new EvalRunError(`the model server for ${dir} exited with ${code} before serving: ${stderr.trim().split('\n').slice(-3).join(' | ')}`, code === 1)),
    );
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      try {
        const ev = servingSchema.safeParse(JSON.parse(line));
        if (ev.success) {
          clearTimeout(timer);
          resolve(ev.data.url);
        }
      } catch {
        // not an event line
      }
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  return { url, stop };
}

// ---- the endpoint ------------------------------------------------------------------------------------------------

const modelsSchema = z.looseObject({ data: z.array(z.looseObject({ id: z.string() })).min(1) });
const completionSchema = z.looseObject({ choices: z.array(z.looseObject({ text: z.string() })).min(1) });
const errorSchema = z.looseObject({ error: z.looseObject({ message: z.string() }) });

class CompletionsClient {
  constructor(
    private readonly base: string,
    private readonly timeoutMs: number,
    private model?: string,
  ) {}

  private async call(method: 'GET' | 'POST', route: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${route}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
      throw new EvalRunError(`cannot reach ${this.base}${route}${cause || `: ${(err as Error).message}`}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    if (res.status >= 500) throw new EvalRunError(`${this.base}${route} answered ${res.status}: ${text.slice(0, 300)}`);
    return { status: res.status, json };
  }

  /** The served model's id (vLLM requires it in every request). */
  async resolveModel(): Promise<string> {
    if (this.model) return this.model;
    const r = await this.call('GET', '/v1/models');
    const models = modelsSchema.safeParse(r.json);
    if (r.status !== 200 || !models.success) throw new EvalRunError(`${this.base}/v1/models did not list a model (HTTP ${r.status})`);
    this.model = models.data.data[0]!.id;
    return this.model;
  }

  /** The completion text, or the endpoint's refusal of this request (too long a prompt...) as a failed task. */
  async complete(prompt: string, maxTokens: number, stop: string[] | undefined): Promise<{ text: string } | { refused: string }> {
    const model = await this.resolveModel();
    const r = await this.call('POST', '/v1/completions', { model, prompt, max_tokens: maxTokens, temperature: 0, seed: 0, n: 1, ...(stop ? { stop } : {}) });
    if (r.status !== 200) {
      const err = errorSchema.safeParse(r.json);
      return { refused: `HTTP ${r.status}: ${err.success ? err.data.error.message : JSON.stringify(r.json).slice(0, 200)}` };
    }
    const c = completionSchema.safeParse(r.json);
    if (!c.success) throw new EvalRunError(`${this.base}/v1/completions answered without choices`);
    return { text: c.data.choices[0]!.text };
  }
}

// ---- the run -----------------------------------------------------------------------------------------------------

export interface EvalRunOptions {
  target: EvalTarget;
  /** Task types to run; 'all' = every task file of the suite. */
  taskTypes: string[] | 'all';
  suiteDir: string;
  /** How rows name the model: a path, an endpoint, `git:<repo>@<commit>:models/job-<id>`... */
  modelRef: string;
  jobId: string | null;
  evalId: string;
  settings: Pick<EvalSettings, 'serve_command' | 'serve_env' | 'serve_timeout_ms' | 'request_timeout_ms'>;
  /** Names of the worker's environment the model server also gets (trainer_env_passthrough). */
  envPassthrough?: readonly string[];
  /** Model id to send to an endpoint (default: the first of its /v1/models). */
  modelName?: string;
  /** After each task (heartbeats, progress). */
  onTask?: (row: EvalRow) => void;
}

export interface EvalRunResult {
  rows: EvalRow[];
  summaries: EvalSummary[];
}

export function summarize(taskType: string, suite: EvalSuite | undefined, rows: EvalRow[]): EvalSummary {
  const mine = rows.filter((r) => r.task_type === taskType);
  const successes = mine.filter((r) => r.success).length;
  return {
    task_type: taskType,
    tasks: mine.length,
    successes,
    success_rate: mine.length ? successes / mine.length : 0,
    suite_sha256: suite?.sha256 ?? null,
    mean_latency_ms: mine.length ? Math.round(mine.reduce((s, r) => s + r.latency_ms, 0) / mine.length) : 0,
  };
}

export async function runEvalSuite(o: EvalRunOptions): Promise<EvalRunResult> {
  const types = o.taskTypes === 'all' ? suiteTaskTypes(o.suiteDir) : o.taskTypes;
  const suites = new Map(types.map((t) => [t, loadSuite(o.suiteDir, t)] as const));
  const runnable = [...suites.values()].filter((s): s is EvalSuite => s !== undefined);
  const rows: EvalRow[] = [];
  if (runnable.length) {
    const server = o.target.kind === 'dir' ? await serveModel(o.target.dir, o.settings, o.envPassthrough) : undefined;
    try {
      const base = o.target.kind === 'endpoint' ? o.target.url : server!.url;
      const client = new CompletionsClient(base.replace(/\/+$/, ''), o.settings.request_timeout_ms, o.modelName);
      for (const suite of runnable) {
        for (const task of suite.tasks) {
          const started = performance.now();
          const answer = await client.complete(renderPrompt(task), task.max_tokens, task.stop);
          const latency = Math.round(performance.now() - started);
          const verdict = 'text' in answer ? checkAnswer(task.check, answer.text) : { success: false, detail: `refused: ${answer.refused}` };
          const row: EvalRow = {
            ts: new Date().toISOString(),
            model_ref: o.modelRef,
            job_id: o.jobId,
            task_type: suite.task_type,
            task_id: task.id,
            success: verdict.success,
            latency_ms: latency,
            eval_id: o.evalId,
            suite_sha256: suite.sha256,
            detail: verdict.detail,
            completion: 'text' in answer ? answer.text.slice(0, 500) : '',
          };
          rows.push(row);
          o.onTask?.(row);
        }
      }
    } finally {
      await server?.stop();
    }
  }
  return { rows, summaries: types.map((t) => summarize(t, suites.get(t), rows)) };
}

/**
 * Appends rows to an evals.jsonl in one write (O_APPEND: concurrent writers never interleave inside it). With
 * `dedupe`, rows of an eval_id already in the file are not appended again (a retried activity).
 */
export async function appendEvalRows(file: string, rows: EvalRow[], dedupe: boolean): Promise<number> {
  if (rows.length === 0) return 0;
  const evalId = rows[0]!.eval_id;
  if (dedupe && (await fileHasEvalId(file, evalId))) return 0;
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.appendFile(file, rows.map((r) => `${JSON.stringify(r)}\n`).join(''), { flag: 'a' });
  return rows.length;
}

async function fileHasEvalId(file: string, evalId: string): Promise<boolean> {
  const needle = `"eval_id":${JSON.stringify(evalId)}`;
  try {
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    for await (const line of lines) if (line.includes(needle)) return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  return false;
}

/** The table cf-eval prints. */
export function summaryTable(summaries: EvalSummary[]): string {
  const rows = [
    ['TASK TYPE', 'TASKS', 'PASSED', 'SUCCESS', 'MEAN LATENCY'],
    ...summaries.map((s) => [
      s.task_type,
      String(s.tasks),
      String(s.successes),
      s.tasks ? `${(s.success_rate * 100).toFixed(1)}%` : 'no tasks',
      s.tasks ? `${s.mean_latency_ms} ms` : '-',
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}
