/**
 * The real trainer (trainer/, PyTorch) on the local backend, end to end through the trainingJob workflow: a signed
 * finetune spec → COMPLETED with loadable outputs and progress in the status query; SIGTERM to the trainer mid-run →
 * exit 75 → RETRY → the next attempt resumes from the checkpoint instead of starting over.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import type { JobStatus } from '../../workflows/messages';
import { makeSignedSpec } from '../jobspec/fixtures';
import { startJob, startWorker, states, tempDir, testClient, testConfig, waitForStatus, type RunningWorker } from '../helpers/forge';
import { PYTHON, TRAINER, TRAINER_ENV, initTinyModel, makeDataRepo, readEvents, requireTrainer, reverseExamples } from './helpers';

const TQ = 'test-trainer-finetune';
const home = tempDir('forge-trainer-');
const config = testConfig({ local: { trainers: { [DEFAULT_TRAINER_IMAGE]: [TRAINER, 'run'] } } });
config.backends.local!.trainers[DEFAULT_TRAINER_IMAGE]!.env = TRAINER_ENV;

let worker: RunningWorker;
let client: Client;
let connection: Connection;
let model: string;
let dataRepo: string;

beforeAll(async () => {
  requireTrainer();
  model = initTinyModel(path.join(home, 'tiny-base'));
  dataRepo = makeDataRepo(path.join(home, 'data'), { 'datasets/reverse/train.jsonl': reverseExamples(200) });
  worker = await startWorker(config, home, TQ);
  ({ client, connection } = await testClient());
});
afterAll(async () => {
  await worker?.stop();
  await connection?.close();
  await fs.rm(home, { recursive: true, force: true });
});

function finetuneSpec(maxSteps: number, checkpointEvery: number) {
  return makeSignedSpec({
    base_model: { name: model, source: 'local', revision: 'main' },
    objective: { max_steps: maxSteps },
    data: { repo: dataRepo, branch: 'main', path: 'datasets/reverse/', validation_split: 0.1 },
    hyperparameters: { learning_rate: 3e-3, batch_size: 8, gradient_accumulation_steps: 2, warmup_steps: 5, weight_decay: 0.01 },
    artifacts: { save_checkpoints: true, checkpoint_interval_steps: checkpointEvery },
    resources: { max_hours: 0.25 },
  });
}

const attemptDir = (jobId: string, attempt: number): string => path.join(home, 'jobs', jobId, `attempt-${attempt}`);

/** Polls a trainer's stdout.log until an event matches. */
async function waitForEvent(file: string, match: (e: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readEvents(file).find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching event in ${file}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('a signed finetune runs to COMPLETED with loadable outputs, progress visible while it runs', async () => {
  const spec = finetuneSpec(100, 50);
  const handle = await startJob(client, TQ, spec);

  const running = await waitForStatus(
    handle,
    (s) => s.state === 'RUNNING' && (s.deployments[0]?.progress?.step ?? 0) > 0,
    90_000,
  );
  const seen = running.deployments[0]!.progress!;
  expect(seen.maxSteps).toBe(100);
  expect(seen.step).toBeLessThan(100); // caught mid-run
  expect(typeof seen.loss).toBe('number');

  const final = (await handle.result()) as JobStatus;
  expect(final.state).toBe('COMPLETED');
  expect(states(final)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
  expect(final.deployments[0]).toMatchObject({ exit_code: 0, progress: { step: 100, maxSteps: 100 } });

  const out = path.join(attemptDir(spec.job_id, 1), 'output');
  for (const name of ['model.safetensors', 'config.json', 'tokenizer.json', 'training_log.jsonl', 'metrics.json']) {
    expect(existsSync(path.join(out, name))).toBe(true);
  }
  const metrics = JSON.parse(readFileSync(path.join(out, 'metrics.json'), 'utf8')) as Record<string, number>;
  expect(metrics.steps).toBe(100);
  expect(metrics.val_loss!).toBeLessThan(0.7 * metrics.initial_val_loss!);
  expect(metrics.tokens_per_second).toBeGreaterThan(0);

  // Loadable by transformers, in the venv's python.
  const load = [
    'import json, sys, torch',
    'from transformers import AutoModelForCausalLM, AutoTokenizer',
    'm = AutoModelForCausalLM.from_pretrained(sys.argv[1]); t = AutoTokenizer.from_pretrained(sys.argv[1])',
    'ids = torch.tensor([t("reverse abc:")["input_ids"]])',
    'print(json.dumps({"params": sum(p.numel() for p in m.parameters()), "finite": bool(torch.isfinite(m(input_ids=ids).logits).all())}))',
  ].join('\n');
  const loaded = JSON.parse(execFileSync(PYTHON, ['-c', load, out], { env: { ...process.env, ...TRAINER_ENV }, encoding: 'utf8', stdio: 'pipe' })) as {
    params: number;
    finite: boolean;
  };
  expect(loaded).toEqual({ params: metrics.parameters, finite: true });
});

test('SIGTERM to the trainer mid-run: exit 75, RETRY, and the next attempt resumes from its checkpoint', async () => {
  const spec = finetuneSpec(100, 20);
  const handle = await startJob(client, TQ, spec);
  const stdout1 = path.join(attemptDir(spec.job_id, 1), 'stdout.log');
  const start = await waitForEvent(stdout1, (e) => e.event === 'start');
  await waitForEvent(stdout1, (e) => e.event === 'checkpoint');
  process.kill(Number(start.pid), 'SIGTERM');

  const final = (await handle.result()) as JobStatus;
  expect(final.state).toBe('COMPLETED');
  expect(states(final)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'FAILED', 'RETRY', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
  expect(final.errors.map((e) => e.class)).toEqual(['TRANSIENT']);
  expect(final.deployments.map((d) => d.exit_code)).toEqual([75, 0]);

  // Attempt 1 stopped at a checkpoint it saved on SIGTERM; attempt 2 began right after it.
  const saved = readEvents(stdout1).filter((e) => e.event === 'checkpoint').map((e) => Number(e.step));
  const stoppedAt = saved[saved.length - 1]!;
  expect(stoppedAt).toBeGreaterThanOrEqual(20);
  expect(stoppedAt).toBeLessThan(100);
  const stdout2 = path.join(attemptDir(spec.job_id, 2), 'stdout.log');
  const events2 = readEvents(stdout2);
  expect(events2.find((e) => e.event === 'resume')).toMatchObject({ from_step: stoppedAt, attempt: 2, same_data: true });
  expect(events2.find((e) => e.event === 'progress')).toMatchObject({ step: stoppedAt + 1 });

  // The final training log tells one story: every step once, and where it resumed.
  const log = readEvents(path.join(attemptDir(spec.job_id, 2), 'output', 'training_log.jsonl'));
  expect(log.filter((e) => e.event === 'progress').map((e) => e.step)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  expect(log.filter((e) => e.event === 'resume').map((e) => e.from_step)).toEqual([stoppedAt]);
  const metrics = JSON.parse(readFileSync(path.join(attemptDir(spec.job_id, 2), 'output', 'metrics.json'), 'utf8')) as Record<string, unknown>;
  expect(metrics).toMatchObject({ steps: 100, resumed_from_step: stoppedAt, steps_this_attempt: 100 - stoppedAt, attempt: 2 });
});
