/**
 * Evaluation on the backends, the pure parts: where evaluation runs (operator config), what an eval attempt is shipped,
 * and the checks on the rows an untrusted backend sends back (activities/backend-evals.ts).
 */
import { checkBackendRows, evalRunInputs, EvalRowsError, type RowExpectations } from '../../activities/backend-evals';
import { defaultSuiteDir, loadSuite, type EvalSuite } from '../../activities/eval-suite';
import { evalContractEnv } from '../../activities/backends/trainer-contract';
import { parseConfig } from '../../common/config';
import { evaluatesOnBackend } from '../../workflows/lifecycle/eval-placement';

const JOB = '11111111-2222-4333-8444-555555555555';
const SHA = 'a'.repeat(64);
const LOCAL = { local: { kind: 'local', trainers: { 'chrysalis/trainer:latest': { command: ['true'] } } } };
const toy = loadSuite(defaultSuiteDir(), 'toy')!;
const expect0: RowExpectations = { jobId: JOB, modelSha256: SHA, suites: new Map<string, EvalSuite>([['toy', toy]]), modelRef: 'local:/m@main', evalId: 'job-x/local/1' };

function goodRows(): Record<string, unknown>[] {
  return toy.tasks.map((t) => ({
    ts: '2026-12-05T07:00:00.000Z',
    model_ref: 'whatever the backend says',
    model_sha256: SHA,
    job_id: JOB,
    task_type: 'toy',
    task_id: t.id,
    success: true,
    latency_ms: 3,
    eval_id: 'job-x/backend',
    suite_sha256: toy.sha256,
    detail: 'exact match',
    completion: t.check.kind === 'exact' ? t.check.expected : '',
  }));
}
const text = (rows: Record<string, unknown>[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('where evaluation runs', () => {
  test('the default is the orchestrator; `where` and per-backend entries switch it', () => {
    expect(evaluatesOnBackend(undefined, 'local')).toBe(false);
    const d = parseConfig({ backends: LOCAL }).results.evaluation;
    expect(d).toEqual({ where: 'orchestrator', backends: {} });
    expect(evaluatesOnBackend(d, 'local')).toBe(false);
    expect(evaluatesOnBackend({ where: 'backend', backends: {} }, 'local')).toBe(true);
    expect(evaluatesOnBackend({ where: 'backend', backends: { local: 'orchestrator' } }, 'local')).toBe(false);
    expect(evaluatesOnBackend({ where: 'orchestrator', backends: { pi: 'backend' } }, 'pi')).toBe(true);
  });

  test('a bad value is refused, naming the field', () => {
    expect(() => parseConfig({ backends: LOCAL, results: { evaluation: { where: 'gpu' } } })).toThrow(/results\.evaluation\.where.*"orchestrator" or "backend"/s);
    expect(() => parseConfig({ backends: LOCAL, results: { evaluation: { backends: { local: 'there' } } } })).toThrow(/results\.evaluation\.backends\.local/);
  });
});

test('an eval attempt is shipped the suite files as the orchestrator reads them, and the model to fetch', () => {
  const inputs = evalRunInputs({ taskTypes: ['toy', 'no-such'], model: { kind: 'git', repo: 'file:///r', branch: 'b', commit: 'c'.repeat(40), path: 'models/job-x' } }, defaultSuiteDir());
  expect(Object.keys(inputs.suite)).toEqual(['toy']);
  const env = evalContractEnv(inputs);
  expect(env.FORGE_TASK).toBe('eval');
  const files = JSON.parse(Buffer.from(env.FORGE_EVAL_SUITE_B64!, 'base64').toString('utf8')) as Record<string, string>;
  expect(require('node:crypto').createHash('sha256').update(files.toy!, 'utf8').digest('hex')).toBe(toy.sha256);
  expect(JSON.parse(env.FORGE_EVAL_MODEL!)).toMatchObject({ kind: 'git', path: 'models/job-x' });
});

describe('rows from a backend', () => {
  test('well-formed rows for this job and model are taken, under the orchestrator’s names', () => {
    const rows = checkBackendRows(text(goodRows()), expect0);
    expect(rows).toHaveLength(toy.tasks.length);
    expect(rows.every((r) => r.model_ref === 'local:/m@main' && r.eval_id === 'job-x/local/1')).toBe(true);
  });

  test('a hub model (hash unknown here): the rows must still agree on one model', () => {
    const rows = goodRows();
    expect(checkBackendRows(text(rows), { ...expect0, modelSha256: null })).toHaveLength(rows.length);
    rows[1]!.model_sha256 = 'b'.repeat(64);
    expect(() => checkBackendRows(text(rows), { ...expect0, modelSha256: null })).toThrow(/line 2: model_sha256/);
  });

  const cases: [string, (rows: Record<string, unknown>[]) => string, RegExp][] = [
    ['not JSON', (r) => text(r) + '{oops\n', /line \d+: not JSON/],
    ['a field missing', (r) => text(r.map((x, i) => (i === 0 ? { ...x, success: undefined } : x))), /line 1: success/],
    ['an unknown field', (r) => text(r.map((x, i) => (i === 0 ? { ...x, extra: 1 } : x))), /line 1: row: Unrecognized key/],
    ['another job', (r) => text(r.map((x) => ({ ...x, job_id: '99999999-2222-4333-8444-555555555555' }))), /line 1: job_id .* not this job/],
    ['another model', (r) => text(r.map((x) => ({ ...x, model_sha256: 'b'.repeat(64) }))), /line 1: model_sha256 b+ is not the evaluated model's/],
    ['another suite', (r) => text(r.map((x) => ({ ...x, suite_sha256: 'c'.repeat(64) }))), /suite_sha256 is not that of the toy suite/],
    ['a task type not asked for', (r) => text(r.map((x, i) => (i === 0 ? { ...x, task_type: 'vcs' } : x))), /task_type "vcs" was not asked for/],
    ['a task not in the suite', (r) => text(r.map((x, i) => (i === 0 ? { ...x, task_id: 'made-up' } : x))), /task_id "made-up" is not in the toy suite/],
    ['a task twice', (r) => text([...r, r[0]!]), /a second row for toy\/reverse-01/],
    ['a task missing', (r) => text(r.slice(1)), /no row for toy task\(s\) reverse-01/],
    ['a verdict its completion does not support', (r) => text(r.map((x, i) => (i === 0 ? { ...x, completion: 'wrong' } : x))), /line 1: success is true, but the checker says false/],
  ];
  test.each(cases)('refused: %s', (_name, forge, message) => {
    expect(() => checkBackendRows(forge(goodRows()), expect0)).toThrow(EvalRowsError);
    expect(() => checkBackendRows(forge(goodRows()), expect0)).toThrow(message);
  });
});
