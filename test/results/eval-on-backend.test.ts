/**
 * Evaluation on the backends (README "Where evaluation runs"), end to end with a real Temporal dev server, the real
 * trainer and a tiny model: with `results.evaluation.where: "backend"`, an eval job runs `forge-trainer eval` as an
 * attempt on the local backend, on Prime Intellect (the fake API, its pods local processes with the agent) and on
 * Akash (the fake Console and provider, the lease's container a local process with the agent), and a
 * finetune's EVALUATING step runs as a second attempt that fetches the committed model from the output repository;
 * the rows land in evals.jsonl, each naming the job and the model's sha256. Rows a backend forges (another job's) or
 * mangles end the job ABANDONED with EVAL_ROWS_REFUSED, and nothing is appended.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { parseConfig } from '../../common/config';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import type { JobStatus } from '../../workflows/messages';
import { FakeAkashConsole } from '../fakes/akash-console';
import { FakeAkashProvider } from '../fakes/akash-provider';
import { FakePrimeIntellect } from '../fakes/prime-intellect';
import { makeSignedSpec } from '../jobspec/fixtures';
import { runJob, startWorker, states, tempDir, testClient, type RunningWorker } from '../helpers/forge';
import { makeBareRepo } from '../helpers/results';
import { TRAINER, TRAINER_ENV, initTinyModel, makeDataRepo, requireTrainer, reverseExamples } from '../trainer/helpers';

const TQ = 'test-eval-on-backend';
const PI_KEY = 'pit_eval-key-SECRET-5c1e';
const home = tempDir('forge-eval-backend-');
const evalsFile = path.join(home, 'evals.jsonl');
const OTHER_JOB = '99999999-2222-4333-8444-555555555555';
const AKASH_KEY = 'akash-eval-key-SECRET-93d0';
const AKASH_PROVIDER = 'akash1prov00000000000000000000000000000000000';

const pi = new FakePrimeIntellect({
  apiKey: PI_KEY,
  offers: [{ cloudId: 'c1', gpuType: 'CPU_NODE', gpuCount: 1, price: 1.5 }],
  templates: { 'tpl-trainer': { programs: { 'forge-trainer': [TRAINER, 'run'] } } },
  provisionMs: 100,
});
const akashProvider = new FakeAkashProvider(AKASH_PROVIDER, { 'forge/trainer': { programs: { 'forge-trainer': [TRAINER, 'run'] } } });
const akash = new FakeAkashConsole({
  apiKey: AKASH_KEY,
  owner: 'akash1owner000000000000000000000000000000000',
  providers: [akashProvider],
  bids: [{ provider: AKASH_PROVIDER, amount: 500 }],
});

/** A "backend" whose trainer writes the rows file it was given, whatever it was asked. */
function forger(rows: string) {
  return { kind: 'local', hourly_usd: 0, poll_interval_ms: 100, trainers: { [DEFAULT_TRAINER_IMAGE]: { command: ['/bin/sh', '-c', 'cp "$FORGED_ROWS" "$FORGE_OUTPUT_DIR/evals.jsonl"'], env: { FORGED_ROWS: rows } } } };
}

let worker: RunningWorker;
let client: Client;
let connection: Connection;
let model: string;
let dataRepo: string;
let outputRepo: string;
let jobs: Record<'local' | 'pi' | 'akash' | 'finetune' | 'forged' | 'mangled', Promise<JobStatus>>;

const evalSpec = (provider: string) =>
  makeSignedSpec({
    job_type: 'eval',
    base_model: { name: model, source: 'local', revision: 'main' },
    objective: { task_types: ['toy', 'vcs'], target_metric: 0 },
    backend: { provider, region: 'any', max_cost_usd: 5, max_retries: 0 },
    resources: { max_hours: 0.25 },
  });

beforeAll(async () => {
  requireTrainer();
  await Promise.all([pi.start(), akashProvider.start()]);
  await akash.start();
  model = initTinyModel(path.join(home, 'tiny-base'));
  dataRepo = makeDataRepo(path.join(home, 'data'), { 'datasets/reverse/train.jsonl': reverseExamples(100) });
  outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
  const toy = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'evals', 'toy.json'), 'utf8')) as { tasks: { id: string }[] };
  const forged = toy.tasks.map((t) => JSON.stringify({
    ts: '2026-12-05T07:00:00.000Z', model_ref: 'x', model_sha256: 'a'.repeat(64), job_id: OTHER_JOB, task_type: 'toy', task_id: t.id,
    success: true, latency_ms: 1, eval_id: 'x', suite_sha256: 'b'.repeat(64), detail: 'exact match', completion: '',
  }));
  writeFileSync(path.join(home, 'forged.jsonl'), `${forged.join('\n')}\n`);
  writeFileSync(path.join(home, 'mangled.jsonl'), '{"ts": "yesterday", "success": "yes"}\n');
  const local = { kind: 'local', hourly_usd: 0, poll_interval_ms: 100, trainers: { [DEFAULT_TRAINER_IMAGE]: { command: [TRAINER, 'run'], env: TRAINER_ENV } } };
  const config = parseConfig({
    backends: {
      local,
      'prime-intellect': {
        kind: 'prime-intellect',
        api_url: pi.url,
        api_key: PI_KEY,
        hourly_usd: 3,
        poll_interval_ms: 100,
        request_timeout_ms: 5000,
        trainers: { [DEFAULT_TRAINER_IMAGE]: { template_id: 'tpl-trainer', env: TRAINER_ENV } },
      },
      akash: {
        kind: 'akash',
        mode: 'console',
        hourly_usd: 2,
        akt_usd: 3,
        poll_interval_ms: 100,
        request_timeout_ms: 5000,
        bid_timeout_seconds: 30,
        console: { url: akash.url, api_key: AKASH_KEY },
        trainers: { [DEFAULT_TRAINER_IMAGE]: { image: 'forge/trainer', env: TRAINER_ENV } },
      },
      forged: forger(path.join(home, 'forged.jsonl')),
      mangled: forger(path.join(home, 'mangled.jsonl')),
    },
    retry_backoff: { initial_seconds: 0.2, max_seconds: 1 },
    follow_heartbeat_seconds: 3,
    admission_poll_seconds: 0.5,
    results: { max_minutes: 5, git: { file_roots: [home] }, evals: { serve_env: TRAINER_ENV }, evaluation: { where: 'backend' } },
  });
  worker = await startWorker(config, home, TQ);
  ({ client, connection } = await testClient());
  jobs = {
    local: runJob(client, TQ, evalSpec('local')),
    pi: runJob(client, TQ, evalSpec('prime-intellect')),
    akash: runJob(client, TQ, evalSpec('akash')),
    forged: runJob(client, TQ, evalSpec('forged')),
    mangled: runJob(client, TQ, evalSpec('mangled')),
    finetune: runJob(
      client,
      TQ,
      makeSignedSpec({
        base_model: { name: model, source: 'local', revision: 'main' },
        objective: { task_types: ['toy'], target_metric: 0, max_steps: 20 },
        data: { repo: dataRepo, branch: 'main', path: 'datasets/reverse/', validation_split: 0.1 },
        artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: false },
        resources: { max_hours: 0.25 },
      }),
    ),
  };
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(Object.values(jobs ?? {}));
  await worker?.stop();
  await connection?.close();
  await pi.stop();
  await akash.stop();
  await akashProvider.stop();
  await fs.rm(home, { recursive: true, force: true });
});

interface Row {
  job_id: string;
  model_ref: string;
  model_sha256: string;
  task_type: string;
  task_id: string;
  eval_id: string;
}
const rowsOf = (jobId: string): Row[] =>
  existsSync(evalsFile) ? readFileSync(evalsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Row).filter((r) => r.job_id === jobId) : [];
const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const suiteSize = (t: string): number => (JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'evals', `${t}.json`), 'utf8')) as { tasks: unknown[] }).tasks.length;

test.each([
  ['local', 'local'],
  ['pi', 'prime-intellect'],
  ['akash', 'akash'],
] as const)('an eval job runs forge-trainer eval as an attempt on %s: COMPLETED, rows in evals.jsonl naming the job and the model', async (key, backend) => {
  const s = await jobs[key];
  expect({ state: s.state, last_error: s.last_error }).toEqual({ state: 'COMPLETED', last_error: null });
  expect(states(s)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
  expect(s).toMatchObject({ attempt: 1, backend });
  expect(s.deployments).toHaveLength(1);
  expect(s.deployments[0]!.closed).toBeTruthy();
  expect(s.evals.map((e) => [e.task_type, e.tasks, e.promoted])).toEqual([
    ['toy', suiteSize('toy'), null],
    ['vcs', suiteSize('vcs'), null],
  ]);
  const rows = rowsOf(s.job_id);
  expect(rows).toHaveLength(suiteSize('toy') + suiteSize('vcs'));
  const weights = sha256(path.join(model, 'model.safetensors'));
  for (const r of rows) {
    expect(r).toMatchObject({ model_sha256: weights, model_ref: `local:${model}@main` });
    expect(r.eval_id).toBe(`job-${s.job_id}/${backend}/${s.deployments[0]!.ref.id}`);
  }
  expect(s.transitions.at(-1)!.reason).toMatch(new RegExp(`^evaluated on ${backend}: toy \\d+\\.\\d%, vcs`));
}, 600_000);

test('a finetune whose EVALUATING runs on the backend: a second attempt evaluates the committed model, then promotion as usual', async () => {
  const s = await jobs.finetune;
  expect({ state: s.state, last_error: s.last_error }).toEqual({ state: 'COMPLETED', last_error: null });
  expect(states(s)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);
  // Attempt 1 trained, attempt 2 evaluated (its deployment closed once the rows were read).
  expect(s.attempt).toBe(2);
  expect(s.deployments.map((d) => [d.ref.attempt, d.ref.backend, Boolean(d.closed)])).toEqual([
    [1, 'local', true],
    [2, 'local', true],
  ]);
  const a = s.artifacts!;
  const rows = rowsOf(s.job_id);
  expect(rows).toHaveLength(suiteSize('toy'));
  const weights = a.files.find((f) => f.path === 'model.safetensors')!.sha256;
  for (const r of rows) expect(r).toMatchObject({ model_sha256: weights, model_ref: `git:${a.repo}@${a.commit}:${a.path}` });
  expect(s.evals[0]).toMatchObject({ task_type: 'toy', tasks: suiteSize('toy') });
  expect(s.evals[0]!.promoted).not.toBeNull(); // offered to the registry (the child promotes)
}, 600_000);

test.each([
  ['forged', /line 1: job_id is 99999999-2222-4333-8444-555555555555, not this job/],
  ['mangled', /line 1: ts: Invalid ISO datetime/],
] as const)('rows a backend %s are refused: ABANDONED with EVAL_ROWS_REFUSED, nothing appended', async (key, detail) => {
  const s = await jobs[key];
  expect(s.state).toBe('ABANDONED');
  expect(states(s)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'FAILED', 'ABANDONED']);
  expect(s.last_error!.class).toBe('EVAL_ROWS_REFUSED');
  expect(s.last_error!.detail).toMatch(detail);
  expect(s.transitions.at(-1)!.reason).toMatch(/^EVAL_ROWS_REFUSED: /);
  expect(rowsOf(s.job_id)).toEqual([]);
  expect(rowsOf(OTHER_JOB)).toEqual([]);
}, 600_000);
