/**
 * Valid training-job-v1 specs for tests: a tiny local job with a fresh owner key, adjustable by deep merge.
 */
import { randomUUID } from 'node:crypto';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { specHash } from '../../jobspec/parse';
import { trainingJobSpecSchema, type TrainingJobSpecInput } from '../../jobspec/schema';
import type { SignedSpec as AcceptedSpec } from '../../jobspec/signed-spec';
import { generateKeyPair, signSpec, type KeyPair } from '../../jobspec/signing';

export type UnsignedSpec = Omit<TrainingJobSpecInput, 'signature_ed25519'>;
export type SignedSpec = TrainingJobSpecInput & { signature_ed25519: string };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Objects merge key by key; arrays and scalars replace; an `undefined` override deletes the key. */
export function deepMerge(base: Record<string, unknown>, overrides: object): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) delete merged[key];
    else if (isPlainObject(value) && isPlainObject(merged[key])) merged[key] = deepMerge(merged[key], value);
    else merged[key] = value;
  }
  return merged;
}

/** Overrides may make the spec invalid on purpose; the returned type describes the usual, valid case. */
export function makeUnsignedSpec(overrides: object = {}, keys: KeyPair = generateKeyPair()): UnsignedSpec {
  const base: UnsignedSpec = {
    $schema: 'https://chrysalis-forge.dev/schemas/training-job-v1.json',
    job_id: randomUUID(),
    owner_did: keys.did,
    created_at: Math.floor(Date.now() / 1000),
    job_type: 'finetune',
    // A hub name and an https data repo: nothing the operator's path policy (results.git.file_roots) has to allow.
    base_model: { name: 'tiny', source: 'huggingface', revision: 'main' },
    objective: { optimize_for: 'success_rate', task_types: ['file-edit'], target_metric: 0.9, max_steps: 10 },
    data: {
      source: 'git',
      repo: 'https://git.example.com/forge/datasets.git',
      branch: 'main',
      path: 'datasets/file-edit/',
      format: 'jsonl',
      validation_split: 0.1,
    },
    hyperparameters: {
      learning_rate: 1e-5,
      batch_size: 4,
      gradient_accumulation_steps: 1,
      warmup_steps: 0,
      weight_decay: 0.01,
    },
    resources: { gpus: 0, cpus: 1, ram_gb: 1, storage_gb: 1, max_hours: 1 },
    backend: { provider: 'local', region: 'any', max_cost_usd: 1 },
    artifacts: {
      output_repo: 'file:///tmp/none-models',
      output_branch: 'jobs/${job_id}',
      save_checkpoints: false,
      checkpoint_interval_steps: 1000,
    },
    trainer: { image: DEFAULT_TRAINER_IMAGE },
  };
  return deepMerge(base, overrides) as UnsignedSpec;
}

/** Signed by `keys` (pass your own pair to sign cancel requests for the job later). */
export function makeSignedSpec(overrides: object = {}, keys: KeyPair = generateKeyPair()): SignedSpec {
  return signSpec(makeUnsignedSpec(overrides, keys), keys.secretKey);
}

/** A signed spec as acceptSpec hands it on (what Backend.submit takes), without the operator's policy checks. */
export function signedOf(raw: SignedSpec | Record<string, unknown>): AcceptedSpec {
  const record = raw as Record<string, unknown>;
  return { spec: trainingJobSpecSchema.parse(raw), raw: record, sha256: specHash(record) };
}
