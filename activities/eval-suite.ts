/**
 * The standardized eval suite: one task file per task type in evals/ (`<task_type>.json`), each task a prompt and a
 * deterministic checker. Checkers: `exact` (the trimmed answer equals a string), `regex` (over the trimmed answer),
 * `json_field` (a field of the JSON object in the answer equals a value), `edit` (the answer's SEARCH/REPLACE blocks,
 * applied to a file, give exactly the expected file). Same answer, same verdict, on every machine.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { repoRoot } from '../common/paths';

const TASK_TYPE = /^[a-z][a-z0-9-]{0,62}$/;

const checkSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('exact'), expected: z.string() }),
  z.strictObject({
    kind: z.literal('regex'),
    pattern: z.string().min(1).refine((p) => {
      try {
        new RegExp(p);
        return true;
      } catch {
        return false;
      }
    }, 'must be a valid regular expression'),
    flags: z.string().regex(/^[imsu]*$/, 'only i, m, s and u').default(''),
  }),
  z.strictObject({
    kind: z.literal('json_field'),
    /** Dotted path into the answer's JSON object. */
    field: z.string().min(1),
    equals: z.union([z.string(), z.number(), z.boolean(), z.null()]),
  }),
  z.strictObject({ kind: z.literal('edit'), file: z.string().min(1), before: z.string(), after: z.string() }),
]);
export type EvalCheck = z.infer<typeof checkSchema>;

const taskSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and "-"'),
  /** For `edit` tasks, {{file}} and {{before}} are replaced by the check's file name and contents. */
  prompt: z.string().min(1),
  max_tokens: z.int().min(1).max(4096).default(64),
  stop: z.array(z.string().min(1)).max(4).optional(),
  check: checkSchema,
});
export type EvalTask = z.infer<typeof taskSchema>;

export const evalSuiteSchema = z
  .strictObject({
    task_type: z.string().regex(TASK_TYPE, 'lower-case letters, digits and "-"'),
    version: z.int().min(1),
    description: z.string(),
    tasks: z.array(taskSchema).min(1),
  })
  .superRefine((s, ctx) => {
    const ids = new Set<string>();
    s.tasks.forEach((t, i) => {
      if (ids.has(t.id)) ctx.addIssue({ code: 'custom', message: `duplicate task id "${t.id}"`, path: ['tasks', i, 'id'] });
      ids.add(t.id);
    });
  });
export type EvalSuite = z.infer<typeof evalSuiteSchema> & {
  /** sha256 of the task file: success rates compare only between runs of the same suite. */
  sha256: string;
};

export function defaultSuiteDir(): string {
  return path.join(repoRoot(), 'evals');
}

export class EvalSuiteError extends Error {
  override name = 'EvalSuiteError';
}

/** Task types with a task file in `dir`. */
export function suiteTaskTypes(dir: string): string[] {
  if (!existsSync(dir)) throw new EvalSuiteError(`eval suite folder ${dir} does not exist`);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') && TASK_TYPE.test(f.slice(0, -5)))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** The task file of one type, validated; undefined when the suite has none for it. */
export function loadSuite(dir: string, taskType: string): EvalSuite | undefined {
  if (!TASK_TYPE.test(taskType)) return undefined;
  const file = path.join(dir, `${taskType}.json`);
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new EvalSuiteError(`${file}: not JSON (${(err as Error).message})`);
  }
  const parsed = evalSuiteSchema.safeParse(json);
  if (!parsed.success) {
    throw new EvalSuiteError(`${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  if (parsed.data.task_type !== taskType) throw new EvalSuiteError(`${file}: task_type is "${parsed.data.task_type}", the file name says "${taskType}"`);
  return { ...parsed.data, sha256: createHash('sha256').update(text, 'utf8').digest('hex') };
}

/** The prompt as sent: edit tasks get their file's name and contents filled in. */
export function renderPrompt(task: EvalTask): string {
  if (task.check.kind !== 'edit') return task.prompt;
  const { file, before } = task.check;
  return task.prompt.replaceAll('{{file}}', file).replaceAll('{{before}}', before);
}

export interface Verdict {
  success: boolean;
  /** Why it failed (or what was checked), short. */
  detail: string;
}

const BLOCK = /<<<<<<< SEARCH\n([\s\S]*?)\n?=======\n([\s\S]*?)\n?>>>>>>> REPLACE/g;

/** SEARCH/REPLACE blocks applied in order; each SEARCH must occur exactly once in the file as it is then. */
export function applyEditBlocks(before: string, answer: string): { ok: true; after: string } | { ok: false; reason: string } {
  const blocks = [...answer.matchAll(BLOCK)].map((m) => ({ search: m[1]!, replace: m[2]! }));
  if (blocks.length === 0) return { ok: false, reason: 'no SEARCH/REPLACE block in the answer' };
  let text = before;
  for (const [i, b] of blocks.entries()) {
    const at = text.indexOf(b.search);
    if (b.search === '' || at < 0) return { ok: false, reason: `block ${i + 1}: SEARCH text not found in the file` };
    if (text.indexOf(b.search, at + 1) >= 0) return { ok: false, reason: `block ${i + 1}: SEARCH text occurs more than once` };
    text = text.slice(0, at) + b.replace + text.slice(at + b.search.length);
  }
  return { ok: true, after: text };
}

function jsonObjectIn(answer: string): unknown {
  const start = answer.indexOf('{');
  const end = answer.lastIndexOf('}');
  if (start < 0 || end < start) return undefined;
  try {
    return JSON.parse(answer.slice(start, end + 1));
  } catch {
    return undefined;
  }
}

function fieldOf(value: unknown, dotted: string): unknown {
  let v: unknown = value;
  for (const key of dotted.split('.')) {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, key)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

const short = (s: string): string => JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);

export function checkAnswer(check: EvalCheck, answer: string): Verdict {
  const trimmed = answer.trim();
  switch (check.kind) {
    case 'exact':
      return trimmed === check.expected ? { success: true, detail: 'exact match' } : { success: false, detail: `expected ${short(check.expected)}, got ${short(trimmed)}` };
    case 'regex':
      return new RegExp(check.pattern, check.flags).test(trimmed)
        ? { success: true, detail: 'matches' }
        : { success: false, detail: `${short(trimmed)} does not match /${check.pattern}/${check.flags}` };
    case 'json_field': {
      const obj = jsonObjectIn(trimmed);
      if (obj === undefined) return { success: false, detail: 'no JSON object in the answer' };
      const got = fieldOf(obj, check.field);
      return got === check.equals
        ? { success: true, detail: `${check.field} = ${JSON.stringify(got)}` }
        : { success: false, detail: `${check.field} is ${JSON.stringify(got) ?? 'missing'}, expected ${JSON.stringify(check.equals)}` };
    }
    case 'edit': {
      const edited = applyEditBlocks(check.before, answer);
      if (!edited.ok) return { success: false, detail: edited.reason };
      return edited.after === check.after ? { success: true, detail: `${check.file} as expected` } : { success: false, detail: `${check.file} differs from the expected result` };
    }
  }
}
