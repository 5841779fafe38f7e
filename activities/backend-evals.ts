/**
 * Evaluation on the backends (README "Where evaluation runs"): what an eval attempt is shipped (the suite's task files,
 * the committed model) and how its rows are taken back. The compute is untrusted: a row file is refused whole unless
 * every row is well-formed (zod), names this job and the model the orchestrator expects (sha256 of model.safetensors),
 * comes from exactly the suite shipped (its sha256), covers each of its tasks once, and carries a verdict that the
 * orchestrator's own checker gives its completion.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { EvalRunInputs } from './backends/types';
import { checkAnswer, loadSuite, type EvalSuite } from './eval-suite';
import type { EvalRow } from './evals';
import type { EvalAttemptRequest } from '../workflows/lifecycle/eval-placement';

/** The file `forge-trainer eval` writes into its outputs (trainer/src/forge_trainer/evaluate.py). */
export const BACKEND_ROWS_FILE = 'evals.jsonl';
/** Rows keep the completion's first 500 characters; a shorter one is the whole answer, and is checked again. */
const COMPLETION_CHARS = 500;
/** A row file larger than this is refused before it is read. */
export const MAX_ROWS_BYTES = 8 * 1024 * 1024;

export class EvalRowsError extends Error {
  override name = 'EvalRowsError';
}

/** The suite's task files for the requested types, as the orchestrator-host path reads them (validated). */
export function evalRunInputs(request: EvalAttemptRequest, suiteDir: string): EvalRunInputs {
  const suite: Record<string, string> = {};
  for (const t of request.taskTypes) {
    if (loadSuite(suiteDir, t)) suite[t] = readFileSync(path.join(suiteDir, `${t}.json`), 'utf8');
  }
  return { suite, ...(request.model && { model: request.model }) };
}

const backendRowSchema = z.strictObject({
  ts: z.iso.datetime(),
  model_ref: z.string().max(2000),
  model_sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex sha256'),
  job_id: z.string().min(1),
  task_type: z.string().min(1),
  task_id: z.string().min(1),
  success: z.boolean(),
  latency_ms: z.int().min(0),
  eval_id: z.string().max(500),
  suite_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  detail: z.string().max(2000),
  // Python cuts at 500 code points; an astral character counts twice here.
  completion: z.string().max(COMPLETION_CHARS * 2),
});

export interface RowExpectations {
  jobId: string;
  /** null: the orchestrator cannot know the model's hash (a hub model); the rows must still agree among themselves. */
  modelSha256: string | null;
  /** The suites shipped, by task type. */
  suites: ReadonlyMap<string, EvalSuite>;
  /** What the rows appended to evals.jsonl say (the orchestrator's names, not the backend's). */
  modelRef: string;
  evalId: string;
}

/** The rows of a backend's evals.jsonl, checked (EvalRowsError naming the line and field otherwise). */
export function checkBackendRows(text: string, expect: RowExpectations): EvalRow[] {
  const rows: EvalRow[] = [];
  const seen = new Set<string>();
  let hash: string | undefined;
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  lines.forEach((line, i) => {
    const at = `${BACKEND_ROWS_FILE} line ${i + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new EvalRowsError(`${at}: not JSON`);
    }
    const parsed = backendRowSchema.safeParse(json);
    if (!parsed.success) throw new EvalRowsError(`${at}: ${parsed.error.issues.map((x) => `${x.path.join('.') || 'row'}: ${x.message}`).join('; ')}`);
    const r = parsed.data;
    if (r.job_id !== expect.jobId) throw new EvalRowsError(`${at}: job_id is ${r.job_id}, not this job (${expect.jobId})`);
    hash ??= r.model_sha256;
    if (r.model_sha256 !== (expect.modelSha256 ?? hash)) {
      throw new EvalRowsError(`${at}: model_sha256 ${r.model_sha256} is not the evaluated model's (${expect.modelSha256 ?? hash})`);
    }
    const suite = expect.suites.get(r.task_type);
    if (!suite) throw new EvalRowsError(`${at}: task_type "${r.task_type}" was not asked for`);
    if (r.suite_sha256 !== suite.sha256) throw new EvalRowsError(`${at}: suite_sha256 is not that of the ${r.task_type} suite shipped (${suite.sha256})`);
    const task = suite.tasks.find((t) => t.id === r.task_id);
    if (!task) throw new EvalRowsError(`${at}: task_id "${r.task_id}" is not in the ${r.task_type} suite`);
    const key = `${r.task_type}/${r.task_id}`;
    if (seen.has(key)) throw new EvalRowsError(`${at}: a second row for ${key}`);
    seen.add(key);
    // A whole completion (shorter than the cut) is judged again here; a refused request has none and must fail.
    if ([...r.completion].length < COMPLETION_CHARS) {
      const verdict = r.completion === '' && !r.success ? false : checkAnswer(task.check, r.completion).success;
      if (verdict !== r.success) throw new EvalRowsError(`${at}: success is ${r.success}, but the checker says ${verdict} for its completion (${key})`);
    }
    rows.push({ ...r, model_ref: expect.modelRef, eval_id: expect.evalId });
  });
  for (const suite of expect.suites.values()) {
    const missing = suite.tasks.filter((t) => !seen.has(`${suite.task_type}/${t.id}`)).map((t) => t.id);
    if (missing.length) throw new EvalRowsError(`${BACKEND_ROWS_FILE}: no row for ${suite.task_type} task(s) ${missing.join(', ')}`);
  }
  return rows;
}

/** sha256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}
