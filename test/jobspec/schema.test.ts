import { base58 } from '@scure/base';
import { DEFAULT_MAX_RETRIES, DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { formatSpecIssues, parseTrainingJobSpec, specHash } from '../../jobspec/parse';
import { resolveOutputBranch, type TrainingJobSpec } from '../../jobspec/schema';
import { generateKeyPair, signSpec, verifySpecSignature } from '../../jobspec/signing';
import { deepMerge, makeSignedSpec } from './fixtures';

function parseOk(input: unknown): TrainingJobSpec {
  const result = parseTrainingJobSpec(input);
  if (!result.ok) throw new Error(`expected a valid spec:\n${formatSpecIssues(result.issues)}`);
  return result.spec;
}

/** The project brief's example spec, with the placeholders filled in by real values. */
function seedExample(): Record<string, unknown> {
  const keys = generateKeyPair();
  const unsigned = {
    $schema: 'https://chrysalis-forge.dev/schemas/training-job-v1.json',
    job_id: '9b2f6a4e-3c1d-4e8f-a7b6-5d4c3b2a1f0e',
    owner_did: keys.did,
    created_at: 1712345678,
    job_type: 'finetune',
    base_model: { name: 'llama3-8b-instruct', source: 'huggingface', revision: 'main' },
    objective: { optimize_for: 'success_rate', task_types: ['file-edit', 'vcs'], target_metric: 0.9, max_steps: 10000 },
    data: {
      source: 'git',
      repo: 'git@github.com:user/chrysalis-traces.git',
      branch: 'main',
      path: 'datasets/file-edit/',
      format: 'jsonl',
      validation_split: 0.1,
    },
    hyperparameters: { learning_rate: 1e-5, batch_size: 4, gradient_accumulation_steps: 8, warmup_steps: 100, weight_decay: 0.01 },
    resources: { gpus: 1, gpu_type: 'a100', gpu_mem_gb: 80, cpus: 8, ram_gb: 64, storage_gb: 100, max_hours: 8 },
    backend: { provider: 'akash', region: 'any', max_cost_usd: 50.0 },
    artifacts: {
      output_repo: 'git@github.com:user/chrysalis-models.git',
      output_branch: 'jobs/${job_id}',
      save_checkpoints: true,
      checkpoint_interval_steps: 1000,
    },
    notifications: { on_complete: 'nostr:npub1abc', on_failure: 'nostr:npub1abc' },
  };
  return signSpec(unsigned, keys.secretKey);
}

describe('valid specs', () => {
  it('accepts the example spec of the brief, signed for real', () => {
    const raw = seedExample();
    expect(verifySpecSignature(raw)).toEqual({ ok: true });
    const spec = parseOk(raw);
    expect(spec.artifacts.output_branch).toBe('jobs/9b2f6a4e-3c1d-4e8f-a7b6-5d4c3b2a1f0e');
    expect(spec.resources.gpu_type).toBe('a100');
    expect(spec.backend).toEqual({ provider: 'akash', region: 'any', max_cost_usd: 50, max_retries: DEFAULT_MAX_RETRIES });
    expect(spec.trainer).toEqual({ image: DEFAULT_TRAINER_IMAGE });
  });

  it('accepts the fixture, fallbacks and all extensions', () => {
    const spec = parseOk(
      makeSignedSpec({ backend: { fallbacks: ['akash', 'prime-intellect'], max_retries: 0 }, trainer: { image: 'my/trainer:1' }, base_model: { name: '/srv/models/tiny', source: 'local' } }),
    );
    expect(spec.backend.fallbacks).toEqual(['akash', 'prime-intellect']);
    expect(spec.backend.max_retries).toBe(0);
    expect(spec.trainer.image).toBe('my/trainer:1');
    expect(spec.base_model.source).toBe('local');
  });

  it('fills in the defaults', () => {
    const spec = parseOk(
      makeSignedSpec({
        base_model: { revision: undefined },
        backend: { region: undefined },
        artifacts: { save_checkpoints: undefined, checkpoint_interval_steps: undefined },
        trainer: undefined,
      }),
    );
    expect(spec.base_model.revision).toBe('main');
    expect(spec.backend.region).toBe('any');
    expect(spec.backend.max_retries).toBe(DEFAULT_MAX_RETRIES);
    expect(spec.artifacts.save_checkpoints).toBe(false);
    expect(spec.artifacts.checkpoint_interval_steps).toBe(1000);
    expect(spec.trainer.image).toBe(DEFAULT_TRAINER_IMAGE);
    expect(spec.trainer.image).toBe('chrysalis/trainer:latest');
    expect(spec.notifications).toBeUndefined();
  });

  it('substitutes ${job_id} in output_branch, every occurrence, and resolveOutputBranch is idempotent', () => {
    const raw = makeSignedSpec({ artifacts: { output_branch: 'jobs/${job_id}/run-${job_id}' } });
    const spec = parseOk(raw);
    const expected = `jobs/${raw.job_id}/run-${raw.job_id}`;
    expect(spec.artifacts.output_branch).toBe(expected);
    expect(resolveOutputBranch(spec)).toBe(expected);
  });

  it.each([
    ['scp-like ssh', 'git@github.com:user/repo.git'],
    ['ssh://', 'ssh://git@example.com:2222/srv/repo.git'],
    ['https://', 'https://github.com/user/repo.git'],
    ['file:///', 'file:///var/lib/forge/data.git'],
  ])('accepts a %s repo URL', (_name, repo) => {
    expect(parseOk(makeSignedSpec({ data: { repo } })).data.repo).toBe(repo);
  });

  it.each(['main', 'feature/x', 'release-1.2', 'jobs/a_b', 'v1@2'])('accepts the branch %s', (branch) => {
    parseOk(makeSignedSpec({ data: { branch } }));
  });

  it('accepts 0 as validation_split, gpus, warmup and weight decay, and a GPU job with its type', () => {
    parseOk(makeSignedSpec({ data: { validation_split: 0 }, hyperparameters: { warmup_steps: 0, weight_decay: 0 } }));
    parseOk(makeSignedSpec({ resources: { gpus: 2, gpu_type: 'h100', gpu_mem_gb: 80 } }));
  });

  it('leaves the raw spec untouched', () => {
    const raw = makeSignedSpec();
    const copy = JSON.parse(JSON.stringify(raw));
    parseOk(raw);
    expect(raw).toEqual(copy);
  });
});

const secp256k1Did = `did:key:z${base58.encode(Uint8Array.of(0xe7, 0x01, 2, ...new Uint8Array(32).fill(7)))}`;

/** [what is wrong, overrides deep-merged into a valid signed spec, the exact issue paths expected] */
const INVALID: Array<[string, object, string[]]> = [
  ['learning_rate 0', { hyperparameters: { learning_rate: 0 } }, ['hyperparameters.learning_rate']],
  ['negative learning_rate', { hyperparameters: { learning_rate: -1e-5 } }, ['hyperparameters.learning_rate']],
  ['validation_split 1', { data: { validation_split: 1 } }, ['data.validation_split']],
  ['negative validation_split', { data: { validation_split: -0.1 } }, ['data.validation_split']],
  ['negative batch_size', { hyperparameters: { batch_size: -4 } }, ['hyperparameters.batch_size']],
  ['fractional batch_size', { hyperparameters: { batch_size: 2.5 } }, ['hyperparameters.batch_size']],
  ['batch_size as a string', { hyperparameters: { batch_size: '4' } }, ['hyperparameters.batch_size']],
  ['gradient_accumulation_steps 0', { hyperparameters: { gradient_accumulation_steps: 0 } }, ['hyperparameters.gradient_accumulation_steps']],
  ['negative warmup_steps', { hyperparameters: { warmup_steps: -1 } }, ['hyperparameters.warmup_steps']],
  ['negative weight_decay', { hyperparameters: { weight_decay: -0.01 } }, ['hyperparameters.weight_decay']],
  ['a job_id that is no UUID', { job_id: 'job-1' }, ['job_id']],
  ['an upper-case job_id', { job_id: '9B2F6A4E-3C1D-4E8F-A7B6-5D4C3B2A1F0E' }, ['job_id']],
  ['a did:key of another multicodec', { owner_did: secp256k1Did }, ['owner_did']],
  ['a did of another method', { owner_did: 'did:web:example.com' }, ['owner_did']],
  ['a missing owner_did', { owner_did: undefined }, ['owner_did']],
  ['negative created_at', { created_at: -1 }, ['created_at']],
  ['fractional created_at', { created_at: 1712345678.5 }, ['created_at']],
  ['job_type "train"', { job_type: 'train' }, ['job_type']],
  ['base_model.source "hub"', { base_model: { source: 'hub' } }, ['base_model.source']],
  ['empty base_model.name', { base_model: { name: '' } }, ['base_model.name']],
  ['no task_types', { objective: { task_types: [] } }, ['objective.task_types']],
  ['an empty task type', { objective: { task_types: ['vcs', ''] } }, ['objective.task_types.1']],
  ['max_steps 0', { objective: { max_steps: 0 } }, ['objective.max_steps']],
  ['negative target_metric', { objective: { target_metric: -0.5 } }, ['objective.target_metric']],
  ['an http:// repo', { data: { repo: 'http://example.com/repo.git' } }, ['data.repo']],
  ['an ext:: remote helper', { data: { repo: 'ext::git-remote-evil%Sx' } }, ['data.repo']],
  ['an ext:: helper with arguments', { data: { repo: 'ext::sh -c touch% /tmp/pwned' } }, ['data.repo']],
  ['a repo that reads as an option', { data: { repo: '--upload-pack=touch /tmp/x' } }, ['data.repo']],
  ['an ssh host that reads as an option', { data: { repo: 'ssh://-oProxyCommand=x/repo' } }, ['data.repo']],
  ['credentials in an https repo', { data: { repo: 'https://user:token@github.com/u/r.git' } }, ['data.repo']],
  ['a bare path as repo', { data: { repo: '/srv/repo.git' } }, ['data.repo']],
  ['branch "-x"', { data: { branch: '-x' } }, ['data.branch']],
  ['branch "a..b"', { data: { branch: 'a..b' } }, ['data.branch']],
  ['branch with a space', { data: { branch: 'a b' } }, ['data.branch']],
  ['branch ending in .lock', { data: { branch: 'feature/x.lock' } }, ['data.branch']],
  ['branch with @{', { data: { branch: 'main@{1}' } }, ['data.branch']],
  ['branch with "//"', { data: { branch: 'a//b' } }, ['data.branch']],
  ['branch ending in "/"', { data: { branch: 'a/' } }, ['data.branch']],
  ['branch with a "~"', { data: { branch: 'main~1' } }, ['data.branch']],
  ['data.path "../x"', { data: { path: '../x' } }, ['data.path']],
  ['data.path climbing out midway', { data: { path: 'a/../../x' } }, ['data.path']],
  ['an absolute data.path', { data: { path: '/abs' } }, ['data.path']],
  ['a backslash in data.path', { data: { path: 'a\\b' } }, ['data.path']],
  ['an empty data.path', { data: { path: '' } }, ['data.path']],
  ['data.source "http"', { data: { source: 'http' } }, ['data.source']],
  ['data.format "csv"', { data: { format: 'csv' } }, ['data.format']],
  ['an unknown top-level key', { priority: 5 }, ['priority']],
  ['a misspelt nested key', { hyperparameters: { learning_rate: undefined, learnig_rate: 1e-5 } }, ['hyperparameters.learning_rate', 'hyperparameters.learnig_rate']],
  ['two unknown keys in one object', { resources: { gpu: 1, disk_gb: 3 } }, ['resources.gpu', 'resources.disk_gb']],
  ['max_hours 0', { resources: { max_hours: 0 } }, ['resources.max_hours']],
  ['cpus 0', { resources: { cpus: 0 } }, ['resources.cpus']],
  ['fractional gpus', { resources: { gpus: 0.5 } }, ['resources.gpus']],
  ['gpus without a gpu_type', { resources: { gpus: 1 } }, ['resources.gpu_type']],
  ['negative gpu_mem_gb', { resources: { gpu_mem_gb: -1 } }, ['resources.gpu_mem_gb']],
  ['max_cost_usd -1', { backend: { max_cost_usd: -1 } }, ['backend.max_cost_usd']],
  ['an upper-case provider', { backend: { provider: 'Akash' } }, ['backend.provider']],
  ['fallbacks containing the provider', { backend: { fallbacks: ['akash', 'local'] } }, ['backend.fallbacks.1']],
  ['duplicate fallbacks', { backend: { fallbacks: ['akash', 'akash'] } }, ['backend.fallbacks.1']],
  ['a fallback that is no backend name', { backend: { fallbacks: ['akash', 'Prime Intellect'] } }, ['backend.fallbacks.1']],
  ['negative max_retries', { backend: { max_retries: -1 } }, ['backend.max_retries']],
  ['an http:// output_repo', { artifacts: { output_repo: 'http://example.com/models.git' } }, ['artifacts.output_repo']],
  ['an output_branch ending in .lock after substitution', { artifacts: { output_branch: 'jobs/${job_id}.lock' } }, ['artifacts.output_branch']],
  ['an output_branch starting with "-"', { artifacts: { output_branch: '-${job_id}' } }, ['artifacts.output_branch']],
  ['checkpoint_interval_steps 0', { artifacts: { checkpoint_interval_steps: 0 } }, ['artifacts.checkpoint_interval_steps']],
  ['save_checkpoints "yes"', { artifacts: { save_checkpoints: 'yes' } }, ['artifacts.save_checkpoints']],
  ['an empty notification target', { notifications: { on_complete: '' } }, ['notifications.on_complete']],
  ['an empty on_cancel target', { notifications: { on_cancel: '' } }, ['notifications.on_cancel']],
  ['an unknown notification', { notifications: { on_start: 'nostr:npub1x' } }, ['notifications.on_start']],
  ['a trainer image with a space', { trainer: { image: 'my trainer' } }, ['trainer.image']],
  ['a trainer command (specs must not carry commands)', { trainer: { command: 'rm -rf /' } }, ['trainer.command']],
  ['a signature that is not base64url', { signature_ed25519: 'abc+/=' }, ['signature_ed25519']],
  ['a missing signature', { signature_ed25519: undefined }, ['signature_ed25519']],
  ['a missing section', { hyperparameters: undefined }, ['hyperparameters']],
  ['$schema not a string', { $schema: 5 }, ['$schema']],
];

describe('invalid specs', () => {
  it(`has a table of ${INVALID.length} distinct cases`, () => {
    expect(INVALID.length).toBeGreaterThanOrEqual(30);
    expect(new Set(INVALID.map(([name]) => name)).size).toBe(INVALID.length);
  });

  it.each(INVALID)('refuses %s', (_name, overrides, paths) => {
    const result = parseTrainingJobSpec(deepMerge(makeSignedSpec(), overrides));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.issues.map((issue) => issue.path).sort()).toEqual([...paths].sort());
    for (const issue of result.issues) expect(issue.message).not.toBe('');
  });

  it.each([['a string', 'spec'], ['null', null], ['an array', []], ['a number', 1]])('refuses %s at (root)', (_name, input) => {
    const result = parseTrainingJobSpec(input);
    expect(result).toMatchObject({ ok: false, issues: [{ path: '(root)' }] });
  });

  it('reports every problem at once, with readable messages', () => {
    const result = parseTrainingJobSpec(
      deepMerge(makeSignedSpec(), {
        owner_did: undefined,
        hyperparameters: { learnig_rate: 1 },
        data: { branch: 'a..b' },
        backend: { fallbacks: ['local'] },
      }),
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(formatSpecIssues(result.issues).split('\n').sort()).toEqual(
      [
        'owner_did: required (string)',
        'hyperparameters.learnig_rate: unknown key',
        'data.branch: must not contain ".."',
        'backend.fallbacks.0: must not repeat provider',
      ].sort(),
    );
  });

  it('explains an output_branch problem in terms of the substituted value', () => {
    const result = parseTrainingJobSpec(makeSignedSpec({ artifacts: { output_branch: 'jobs/${job_id}/' } }));
    expect(result).toMatchObject({
      ok: false,
      issues: [{ path: 'artifacts.output_branch', message: 'must not start or end with "/" (after substituting ${job_id})' }],
    });
  });
});

describe('specHash', () => {
  it('is the sha256 of the canonical JSON, signature included, independent of key order', () => {
    const raw = makeSignedSpec();
    const hash = specHash(raw);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    const reordered = Object.fromEntries(Object.entries(raw).reverse());
    expect(specHash(reordered)).toBe(hash);
    expect(specHash({ ...raw, signature_ed25519: 'x' })).not.toBe(hash);
    expect(specHash({ ...raw, created_at: raw.created_at + 1 })).not.toBe(hash);
  });

  it('matches a digest computed independently', () => {
    // printf '{"a":1,"b":"x"}' | sha256sum
    expect(specHash({ b: 'x', a: 1 })).toBe('ecf9e98ec0641e23113ff3ce8bdc78d0ddd249886517fd4a7f68cc83d4e65667');
  });
});
