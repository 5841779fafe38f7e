/**
 * A federated finetune end to end: a `p2pfl` job of the tiny base model through trainingJob — two P2PFL nodes each
 * finetuning the base model on their own share of the data, FedAvg after each of two rounds — commits a Hugging
 * Face model directory, is evaluated on the `toy` suite by the reference trainer's server like any finetune (rows
 * in evals.jsonl) and considered for the registry; the committed metrics show a held-out loss below the base
 * model's. Needs .tools/p2pfl-venv (scripts/bootstrap.sh); without it the test says why and skips.
 */
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { p2pflDefaultCommand, parseConfig } from '../../common/config';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { makeSignedSpec } from '../jobspec/fixtures';
import { runJob, startWorker, states, tempDir, testClient, testConfig, type RunningWorker } from '../helpers/forge';
import { p2pflMissing } from '../helpers/p2pfl';
import { git, makeBareRepo } from '../helpers/results';
import { TRAINER_ENV, initTinyModel, makeDataRepo, requireTrainer, reverseExamples } from '../trainer/helpers';

const why = p2pflMissing();
if (why) console.warn(`p2pfl finetune test skipped: ${why}`);
const maybe = why ? test.skip : test;

const TQ = 'test-results-p2pfl';
const home = tempDir('forge-results-p2pfl-');
const evalsFile = path.join(home, 'evals.jsonl');
const config = testConfig({ local: { trainers: {} } }, undefined, {
  results: { max_minutes: 5, git: { file_roots: [home] }, evals: { serve_env: TRAINER_ENV } },
});
const fed = parseConfig({
  backends: { fed: { kind: 'p2pfl', nodes: 2, rounds: 2, poll_interval_ms: 100, trainers: { [DEFAULT_TRAINER_IMAGE]: { command: p2pflDefaultCommand(), env: TRAINER_ENV } } } },
}).backends.fed!;
config.backends.fed = fed;

let worker: RunningWorker | undefined;
let client: Client;
let connection: Connection | undefined;

beforeAll(async () => {
  if (why) return;
  requireTrainer();
  worker = await startWorker(config, home, TQ);
  ({ client, connection } = await testClient());
}, 60_000);
afterAll(async () => {
  await worker?.stop();
  await connection?.close();
  await fs.rm(home, { recursive: true, force: true });
});

interface Metrics {
  initial_val_loss: number;
  val_loss: number;
  steps: number;
  federation: Record<string, unknown>;
  share_examples: Record<string, number>;
}

maybe('a p2pfl finetune of the tiny base model: committed as a model directory, evaluated, held-out loss below the base', async () => {
  const model = initTinyModel(path.join(home, 'tiny-base'));
  const dataRepo = makeDataRepo(path.join(home, 'data'), { 'datasets/reverse/train.jsonl': reverseExamples(200) });
  const outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
  const spec = makeSignedSpec({
    base_model: { name: model, source: 'local', revision: 'main' },
    objective: { task_types: ['toy'], target_metric: 0, max_steps: 40 },
    data: { repo: dataRepo, branch: 'main', path: 'datasets/reverse/', validation_split: 0.1 },
    hyperparameters: { learning_rate: 3e-3, batch_size: 8, gradient_accumulation_steps: 1, warmup_steps: 5, weight_decay: 0.01 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: false },
    resources: { max_hours: 0.25 },
    backend: { provider: 'fed' },
  });

  const job = await runJob(client, TQ, spec);
  expect({ state: job.state, last: job.transitions.at(-1)?.reason }).toMatchObject({ state: 'COMPLETED' });
  expect(states(job)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);
  expect(job.backend).toBe('fed');

  // A Hugging Face model directory like any finetune's: weights, config, tokenizer.
  const committed = job.artifacts!.files.map((f) => f.path);
  expect(committed).toEqual(expect.arrayContaining(['config.json', 'metrics.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'training_log.jsonl']));
  const dir = `models/job-${job.job_id}`;
  const repoDir = outputRepo.slice('file://'.length);
  const show = (file: string): string => git(repoDir, 'show', `${job.artifacts!.commit}:${dir}/${file}`);
  expect(JSON.parse(show('config.json'))).toMatchObject({ model_type: 'llama', architectures: ['LlamaForCausalLM'] });

  // The federation did what the config says, and the aggregated model beats the base on the held-out examples.
  const metrics = JSON.parse(show('metrics.json')) as Metrics;
  expect(metrics.federation).toMatchObject({ framework: 'p2pfl', nodes: 2, rounds: 2, steps_per_round: 20, protocol: 'memory', aggregator: 'FedAvg' });
  expect(Object.keys(metrics.share_examples)).toEqual(['forge-node-0', 'forge-node-1']);
  expect(Object.values(metrics.share_examples).reduce((a, b) => a + b, 0)).toBe(180);
  expect(metrics.steps).toBe(40);
  expect(metrics.val_loss).toBeLessThan(metrics.initial_val_loss);

  // Evaluated like any finetune: the toy suite through the reference trainer's server, rows in evals.jsonl.
  const [toy] = job.evals;
  expect(toy).toMatchObject({ task_type: 'toy', tasks: 20, promoted: expect.any(Boolean), promotion: expect.any(String) });
  expect(job.transitions.at(-1)!.reason).toMatch(/^evaluated: toy \d+\.\d%/);
  const rows = readFileSync(evalsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { job_id: string; model_ref: string });
  const mine = rows.filter((r) => r.job_id === job.job_id);
  expect(mine).toHaveLength(20);
  expect(mine[0]!.model_ref).toBe(`git:${outputRepo}@${job.artifacts!.commit}:${dir}`);
}, 240_000);
