/**
 * GET /jobs/:id/curves.svg with the real trainer and a tiny model, through the API: while the job runs the SVG
 * already holds the steps trained so far; once it is done its points are exactly the training log's (step, loss)
 * and (step, val_loss), and the commit holds training_curves.svg with the same points, listed in the manifest. An
 * API whose backend lost the logs draws the same curve from the committed training log.
 */
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { createBackends } from '../../activities/backends/registry';
import type { Backend } from '../../activities/backends/types';
import { GitArtifactSource } from '../../client/api/git-artifacts';
import type { CurvePoint } from '../../common/curves';
import { orchestratorKey } from '../../common/orchestrator-key';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { makeSignedSpec } from '../jobspec/fixtures';
import { tempDir, testConfig } from '../helpers/forge';
import { parseCurvesSvg } from '../helpers/curves-svg';
import { git, makeBareRepo } from '../helpers/results';
import { TRAINER, TRAINER_ENV, initTinyModel, makeDataRepo, requireTrainer, reverseExamples } from '../trainer/helpers';
import { http, startApi, type ApiHarness } from './harness';

const TQ = 'test-api-curves';
const home = tempDir('forge-api-curves-');
const config = testConfig({ local: { trainers: { [DEFAULT_TRAINER_IMAGE]: [TRAINER, 'run'] } } }, undefined, {
  results: { max_minutes: 5, git: { file_roots: [home] } },
});
config.backends.local!.trainers[DEFAULT_TRAINER_IMAGE]!.env = TRAINER_ENV;

let api: ApiHarness;
let model: string;
let dataRepo: string;
let outputRepo: string;

beforeAll(async () => {
  requireTrainer();
  model = initTinyModel(path.join(home, 'tiny-base'));
  dataRepo = makeDataRepo(path.join(home, 'data'), { 'datasets/reverse/train.jsonl': reverseExamples(120) });
  outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
  api = await startApi({ taskQueue: TQ, config, home, logPollMs: 200 });
}, 120_000);
afterAll(async () => {
  await api?.stop();
  await fs.rm(home, { recursive: true, force: true });
});

const pointsOf = (events: Record<string, unknown>[], event: string, key: string): CurvePoint[] =>
  events.filter((e) => e.event === event && typeof e[key] === 'number').map((e) => ({ step: e.step as number, value: e[key] as number }));

test('a finetune: live curves while it runs, then exactly the training log, and training_curves.svg in the commit', async () => {
  const spec = makeSignedSpec({
    base_model: { name: model, source: 'local', revision: 'main' },
    objective: { task_types: ['no-such-task-type'], target_metric: 0, max_steps: 40 },
    data: { repo: dataRepo, branch: 'main', path: 'datasets/reverse/', validation_split: 0.1 },
    hyperparameters: { learning_rate: 3e-3, batch_size: 8, gradient_accumulation_steps: 1, warmup_steps: 2, weight_decay: 0.01 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: false },
    resources: { max_hours: 0.25 },
  });
  expect((await http(api.url, 'POST', '/jobs', spec)).status).toBe(201);
  const id = spec.job_id;

  // Poll the SVG while the job runs: the points grow, each a point of the final log.
  const seenRunning: Map<string, CurvePoint[]>[] = [];
  const deadline = Date.now() + 240_000;
  let state = '';
  for (;;) {
    const s = await http(api.url, 'GET', `/jobs/${id}`);
    state = (s.json as { state: string }).state;
    if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(state)) break;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${state}`);
    const r = await http(api.url, 'GET', `/jobs/${id}/curves.svg`);
    expect(r.status).toBe(200);
    if (state === 'RUNNING') seenRunning.push(parseCurvesSvg(r.text).series);
    await new Promise((res) => setTimeout(res, 150));
  }
  expect(state).toBe('COMPLETED');
  const live = seenRunning.map((m) => m.get('train_loss')?.length ?? 0);
  expect(Math.max(...live)).toBeGreaterThan(0);
  expect(Math.min(...live)).toBeLessThan(40); // seen before the last step

  // The committed training log, read from the output repo.
  const status = (await http(api.url, 'GET', `/jobs/${id}`)).json as { artifacts: { repo: string; commit: string; path: string; files: { path: string }[] } };
  const repoDir = outputRepo.slice('file://'.length);
  const show = (file: string): string => git(repoDir, 'show', `${status.artifacts.commit}:${status.artifacts.path}/${file}`);
  const events = show('training_log.jsonl')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const train = pointsOf(events, 'progress', 'loss');
  const val = pointsOf(events, 'eval', 'val_loss');
  expect(train.map((p) => p.step)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  expect(val.length).toBeGreaterThan(1);

  const r = await http(api.url, 'GET', `/jobs/${id}/curves.svg`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^image\/svg\+xml/);
  const served = parseCurvesSvg(r.text);
  expect(served.series.get('train_loss')).toEqual(train);
  expect(served.series.get('val_loss')).toEqual(val);
  // Each live point was a point of the final curve.
  for (const m of seenRunning) for (const p of m.get('train_loss') ?? []) expect(train).toContainEqual(p);

  const data = (await http(api.url, 'GET', `/jobs/${id}/curves`)).json as { source: string; series: { name: string; points: CurvePoint[] }[]; svg_url: string };
  expect(data.source).toBe('logs');
  expect(data.series.map((s) => [s.name, s.points])).toEqual([
    ['train_loss', train],
    ['val_loss', val],
  ]);
  expect(data.svg_url).toBe(`/jobs/${id}/curves.svg`);

  // Committed with the model, in the signed manifest, and not a weight file.
  expect(status.artifacts.files.map((f) => f.path)).toContain('training_curves.svg');
  const committed = parseCurvesSvg(show('training_curves.svg'));
  expect(committed.series.get('train_loss')).toEqual(train);
  expect(committed.series.get('val_loss')).toEqual(val);
  expect(committed.title).toBe(`job ${id} (finetune of ${model})`);

  // An API whose backend has lost the logs (a remote provider after its lease closed): the committed log stands in.
  const real = createBackends(config, home).get('local')!;
  const gone: Backend = new Proxy(real, {
    get: (target, key, receiver) =>
      key === 'logs'
        ? async () => {
            throw new Error('the provider no longer has this lease');
          }
        : Reflect.get(target, key, receiver),
  });
  const other = await startApi({
    taskQueue: TQ,
    config,
    home,
    worker: false,
    backends: new Map([['local', gone]]),
    artifacts: new GitArtifactSource({ home, git: config.results.git, signerDid: () => orchestratorKey(home).did }),
  });
  try {
    const fallback = (await http(other.url, 'GET', `/jobs/${id}/curves`)).json as { source: string; series: { name: string; points: CurvePoint[] }[]; unreadable: { detail: string }[] };
    expect(fallback.source).toBe('artifacts');
    expect(fallback.series.find((s) => s.name === 'train_loss')?.points).toEqual(train);
    expect(fallback.unreadable).toEqual([expect.objectContaining({ detail: 'the provider no longer has this lease' })]);
    expect(parseCurvesSvg((await http(other.url, 'GET', `/jobs/${id}/curves.svg`)).text).series.get('val_loss')).toEqual(val);
  } finally {
    await other.stop();
  }
}, 300_000);
