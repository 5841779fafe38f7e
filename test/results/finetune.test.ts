/**
 * Seed §6.5 end to end with the real trainer and a tiny model: a finetune job commits its model, is evaluated on the
 * `toy` suite through the reference trainer's server (rows in evals.jsonl) and promoted into an empty elite
 * registry; a worse second job is not promoted and leaves the registry as it was; an eval job evaluates the base
 * model without training. Then the user's side: cf-fetch-artifacts gets the committed files through the API
 * (verified against GET /identity) and refuses them when tampered with on the way; cf-eval scores the fetched model
 * as the job did; cf-export-elites signs an export and publishes the registry.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import { existsSync, promises as fs, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { base58 } from '@scure/base';
import type { Client, Connection } from '@temporalio/client';
import { GitArtifactSource } from '../../client/api/git-artifacts';
import { modelSigningKeyFrom } from '../../common/model-signing';
import { orchestratorKey } from '../../common/orchestrator-key';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { specSigningPayload, verifyBytes } from '../../jobspec/signing';
import { publicKeyFromDidKey } from '../../jobspec/did-key';
import type { JobStatus } from '../../workflows/messages';
import { makeSignedSpec } from '../jobspec/fixtures';
import { runJob, startWorker, states, tempDir, testClient, testConfig, type RunningWorker } from '../helpers/forge';
import { requireBuilt, runCommand } from '../helpers/cli';
import { git, gitBytes, makeBareRepo } from '../helpers/results';
import { startApi, type ApiHarness } from '../api/harness';
import { flipByte, independentDsseCheck, modelSigningVerify } from '../helpers/model-signing';
import { TRAINER, TRAINER_ENV, initTinyModel, makeDataRepo, requireTrainer, reverseExamples } from '../trainer/helpers';

const TQ = 'test-results-finetune';
const home = tempDir('forge-results-ft-');
const registryDir = path.join(home, 'registry');
const publishDir = path.join(home, 'repos', 'published-registry.git');
const evalsFile = path.join(home, 'evals.jsonl');
const configFile = path.join(home, 'config.json');
const config = testConfig({ local: { trainers: { [DEFAULT_TRAINER_IMAGE]: [TRAINER, 'run'] } } }, undefined, {
  results: {
    max_minutes: 5,
    git: { file_roots: [home] },
    evals: { serve_env: TRAINER_ENV },
    registry: { publish_remote: `file://${publishDir}` },
  },
});
config.backends.local!.trainers[DEFAULT_TRAINER_IMAGE]!.env = TRAINER_ENV;

let worker: RunningWorker;
let client: Client;
let connection: Connection;
let api: ApiHarness;
let model: string;
let dataRepo: string;
let outputRepo: string;
let jobA: Promise<JobStatus>;
let jobB: Promise<JobStatus>;
let evalJob: Promise<JobStatus>;
let registryAfterA: string;

function finetune(maxSteps: number) {
  return makeSignedSpec({
    base_model: { name: model, source: 'local', revision: 'main' },
    objective: { task_types: ['toy'], target_metric: 0.05, max_steps: maxSteps },
    data: { repo: dataRepo, branch: 'main', path: 'datasets/reverse/', validation_split: 0.1 },
    hyperparameters: { learning_rate: 3e-3, batch_size: 8, gradient_accumulation_steps: 2, warmup_steps: 5, weight_decay: 0.01 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: false },
    resources: { max_hours: 0.25 },
  });
}

beforeAll(async () => {
  requireTrainer();
  requireBuilt(['cf-fetch-artifacts', 'cf-eval', 'cf-export-elites', 'cf-check-training']);
  model = initTinyModel(path.join(home, 'tiny-base'));
  dataRepo = makeDataRepo(path.join(home, 'data'), { 'datasets/reverse/train.jsonl': reverseExamples(200) });
  outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
  makeBareRepo(publishDir);
  writeFileSync(configFile, JSON.stringify(config));
  worker = await startWorker(config, home, TQ);
  ({ client, connection } = await testClient());
  // A (300 steps) and the eval job run together; B (60 steps) only once A is the elite.
  jobA = runJob(client, TQ, finetune(300));
  evalJob = runJob(
    client,
    TQ,
    makeSignedSpec({ job_type: 'eval', base_model: { name: model, source: 'local', revision: 'main' }, objective: { task_types: ['toy', 'vcs'], target_metric: 0 } }),
  );
  jobB = jobA.then(() => {
    registryAfterA = git(registryDir, 'rev-parse', 'main').trim();
    return runJob(client, TQ, finetune(60));
  });
  api = await startApi({
    taskQueue: TQ,
    config,
    home,
    worker: false,
    artifacts: new GitArtifactSource({ home, git: config.results.git, signerDid: () => orchestratorKey(home).did }),
    identity: () => orchestratorKey(home).did,
    modelSigningKey: () => modelSigningKeyFrom(orchestratorKey(home).secretKey).publicKeyPem,
  });
}, 120_000);
afterAll(async () => {
  await Promise.allSettled([jobA, jobB, evalJob]);
  await api?.stop();
  await worker?.stop();
  await connection?.close();
  await fs.rm(home, { recursive: true, force: true });
});

interface Row {
  ts: string;
  model_ref: string;
  job_id: string | null;
  task_type: string;
  task_id: string;
  success: boolean;
  latency_ms: number;
}
const rows = (file = evalsFile): Row[] => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Row);

/** node:crypto alone (not our signing code): Ed25519 of `did` over `message`. */
function independentlyVerified(did: string, message: Buffer, signatureB64url: string): boolean {
  const raw = base58.decode(did.slice('did:key:z'.length)).slice(2);
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(raw)]);
  return verify(null, message, createPublicKey({ key: spki, format: 'der', type: 'spki' }), Buffer.from(signatureB64url.trim(), 'base64url'));
}

test('a finetune: committed, evaluated (rows in evals.jsonl) and promoted into an empty registry', async () => {
  const a = await jobA;
  expect(a.state).toBe('COMPLETED');
  expect(states(a)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);
  const committed = a.artifacts!.files.map((f) => f.path);
  expect(committed).toEqual(expect.arrayContaining(['config.json', 'metrics.json', 'model.safetensors', 'tokenizer.json', 'training_log.jsonl']));
  expect(committed.filter((p) => p.startsWith('checkpoints/'))).toEqual([]); // save_checkpoints: false

  const [toy] = a.evals;
  expect(toy).toMatchObject({ task_type: 'toy', tasks: 20, promoted: true, elite_success_rate: null, promotion: 'first elite for this task type' });
  expect(toy!.success_rate).toBeGreaterThan(0.05);
  expect(a.transitions.at(-1)!.reason).toMatch(/^evaluated: toy \d+\.\d% \(promoted\)$/);

  const mine = rows().filter((r) => r.job_id === a.job_id);
  expect(mine).toHaveLength(20);
  expect(mine.filter((r) => r.success)).toHaveLength(toy!.successes);
  for (const r of mine) {
    expect(r).toEqual(expect.objectContaining({ task_type: 'toy', model_ref: `git:${outputRepo}@${a.artifacts!.commit}:models/job-${a.job_id}` }));
    expect(typeof r.latency_ms).toBe('number');
    expect(Number.isNaN(Date.parse(r.ts))).toBe(false);
  }

  // The registry: one promotion commit; elites.json signed as a file, the entry signed on its own, with provenance.
  expect(git(registryDir, 'rev-list', '--count', 'main').trim()).toBe('1');
  const json = gitBytes(registryDir, 'show', 'main:elites.json');
  const sig = git(registryDir, 'show', 'main:elites.sig');
  const did = orchestratorKey(home).did;
  expect(independentlyVerified(did, json, sig)).toBe(true);
  const entry = (JSON.parse(json.toString('utf8')) as { elites: Record<string, Record<string, unknown>> }).elites.toy!;
  expect(entry).toMatchObject({
    agent_id: `forge:job-${a.job_id}`,
    job_id: a.job_id,
    base_agent_id: `local:${model}@main`,
    derivative: 'finetuned',
    artifacts: { repo: outputRepo, commit: a.artifacts!.commit, path: `models/job-${a.job_id}`, manifest_sha256: a.artifacts!.manifest_sha256 },
    metrics: { success_rate: toy!.success_rate, tasks: 20, successes: toy!.successes },
    previous: null,
    signer_did: did,
  });
  expect(verifyBytes(entry.signature_ed25519 as string, specSigningPayload(entry), publicKeyFromDidKey(did))).toBe(true);
  // ... and points at the signed provenance committed next to the manifest.
  expect(a.artifacts!.provenance).toEqual({ path: `models/job-${a.job_id}/provenance.intoto.json`, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  expect(entry.artifacts).toMatchObject({ provenance: a.artifacts!.provenance });
}, 240_000);

test('the committed model: model_signing verify key (the PyPI tool) accepts it, one flipped byte fails it; the DSSE provenance names spec, attempt and data commit', async () => {
  const a = await jobA;
  const repoDir = outputRepo.slice('file://'.length);
  const checkout = path.join(home, 'clone-for-model-signing');
  git(home, 'clone', '--quiet', '--branch', `jobs/${a.job_id}`, outputRepo, checkout);
  const dir = path.join(checkout, 'models', `job-${a.job_id}`);
  expect(readdirSync(dir)).toEqual(expect.arrayContaining(['manifest.json', 'manifest.sig', 'model.sig', 'provenance.intoto.json', 'model.safetensors']));

  // The public key as GET /identity publishes it.
  const identity = (await (await fetch(`${api.url}/identity`)).json()) as { did: string; model_signing_public_key_pem: string };
  expect(identity.did).toBe(orchestratorKey(home).did);
  const ok = modelSigningVerify(dir, identity.model_signing_public_key_pem, home);
  expect(ok.output).toContain('Verification succeeded');
  expect(ok.status).toBe(0);
  flipByte(path.join(dir, 'model.safetensors'), 100);
  const bad = modelSigningVerify(dir, identity.model_signing_public_key_pem, home);
  expect(bad.status).not.toBe(0);
  expect(bad.output).toMatch(/Hash mismatch for 'model.safetensors'/);

  // The provenance, checked with node:crypto alone; its sha256 is what the status (and the registry entry) records.
  const text = gitBytes(repoDir, 'show', `${a.artifacts!.commit}:models/job-${a.job_id}/provenance.intoto.json`);
  expect(createHash('sha256').update(text).digest('hex')).toBe(a.artifacts!.provenance!.sha256);
  const statement = independentDsseCheck(text.toString('utf8'), orchestratorKey(home).did) as {
    subject: { name: string; digest: { sha256: string } }[];
    predicateType: string;
    predicate: {
      buildDefinition: {
        externalParameters: Record<string, unknown>;
        internalParameters: Record<string, unknown>;
        resolvedDependencies: Record<string, unknown>[];
      };
      runDetails: { byproducts: Record<string, unknown>[] };
    };
  };
  expect(statement.predicateType).toBe('https://slsa.dev/provenance/v1');
  expect(statement.subject).toEqual(a.artifacts!.files.map((f) => ({ name: f.path, digest: { sha256: f.sha256 } })));
  const spec = statement.predicate.buildDefinition.externalParameters.spec as Record<string, unknown>;
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { spec_sha256: string; owner_did: string };
  expect(spec).toMatchObject({ job_id: a.job_id, owner_did: manifest.owner_did, sha256: manifest.spec_sha256 });
  expect(statement.predicate.buildDefinition.externalParameters).toMatchObject({ base_model: { name: model, revision: 'main' }, trainer_image: DEFAULT_TRAINER_IMAGE });
  expect(statement.predicate.buildDefinition.internalParameters).toMatchObject({ backend: 'local', attempt: 1 });
  const dataCommit = git(dataRepo.replace(/^file:\/\//, ''), 'rev-parse', 'main').trim();
  expect(statement.predicate.buildDefinition.resolvedDependencies).toContainEqual(expect.objectContaining({ name: 'data', uri: dataRepo, digest: { gitCommit: dataCommit } }));
  expect(statement.predicate.runDetails.byproducts).toContainEqual({ name: 'manifest.json', digest: { sha256: a.artifacts!.manifest_sha256 } });
}, 240_000);

test('an eval job evaluates its base model: its suite is its run (no EVALUATING), rows appended, nothing promoted', async () => {
  const e = await evalJob;
  expect(states(e)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
  expect(e).toMatchObject({ attempt: 1, backend: 'eval-suite' });
  expect(e.artifacts).toBeNull();
  expect(e.evals.map((x) => [x.task_type, x.tasks, x.promoted])).toEqual([
    ['toy', 20, null],
    ['vcs', 8, null],
  ]);
  expect(e.evals[0]!.success_rate).toBeLessThan(0.05); // an untrained model
  expect(rows().filter((r) => r.job_id === e.job_id)).toHaveLength(28);
}, 240_000);

test('a worse second job is not promoted, and the registry is unchanged', async () => {
  const [a, b] = await Promise.all([jobA, jobB]);
  expect(b.state).toBe('COMPLETED');
  const toy = b.evals[0]!;
  expect(toy.success_rate).toBeLessThan(a.evals[0]!.success_rate);
  expect(toy).toMatchObject({ promoted: false });
  expect(toy.promotion).toMatch(/does not beat the elite|solved no eval task|below target_metric/);
  expect(git(registryDir, 'rev-parse', 'main').trim()).toBe(registryAfterA);
  expect(rows().filter((r) => r.job_id === b.job_id)).toHaveLength(20);
}, 240_000);

/** A man in the middle between the CLI and the API that flips one byte of one file (the last, or the one `at`). */
async function tamperingProxy(upstream: string, victim: string, at = -1): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    const r = await fetch(`${upstream}${req.url}`, { method: req.method ?? 'GET', headers: { accept: String(req.headers.accept ?? '*/*') } });
    let body = Buffer.from(await r.arrayBuffer());
    if (req.url?.endsWith(`/artifacts/${encodeURIComponent(victim)}`)) {
      body = Buffer.from(body);
      const i = at < 0 ? body.length + at : at;
      body[i] = body[i]! ^ 1;
    }
    res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/octet-stream', 'content-length': String(body.length) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

test('cf-fetch-artifacts: the committed files, verified against GET /identity; tampered on the way → refused, nothing kept', async () => {
  const a = await jobA;
  const dest = path.join(home, 'fetched', a.job_id);
  const ok = await runCommand('cf-fetch-artifacts', ['--job-id', a.job_id, '--dest', dest, '--json'], { FORGE_API_URL: api.url, FORGE_HOME: home });
  expect(ok.stderr).toBe('');
  expect(ok.code).toBe(0);
  expect(JSON.parse(ok.stdout)).toMatchObject({ job_id: a.job_id, signer_did: orchestratorKey(home).did });
  const repoDir = outputRepo.slice('file://'.length);
  for (const f of a.artifacts!.files) {
    expect(createHash('sha256').update(readFileSync(path.join(dest, f.path))).digest('hex')).toBe(f.sha256);
  }
  // manifest.json, manifest.sig, model.sig and the provenance byte for byte as committed: the folder checks with model_signing.
  expect(JSON.parse(ok.stdout)).toMatchObject({ signatures: ['model.sig', 'provenance.intoto.json'] });
  for (const f of ['manifest.json', 'manifest.sig', 'model.sig', 'provenance.intoto.json']) {
    expect(readFileSync(path.join(dest, f))).toEqual(gitBytes(repoDir, 'show', `${a.artifacts!.commit}:models/job-${a.job_id}/${f}`));
  }

  const pem = modelSigningKeyFrom(orchestratorKey(home).secretKey).publicKeyPem;
  expect(modelSigningVerify(dest, pem, home).output).toContain('Verification succeeded');

  // The status over the API (and cf-check-training) shows where the model went and how it did.
  const check = await runCommand('cf-check-training', [a.job_id], { FORGE_API_URL: api.url });
  expect(check.code).toBe(0);
  expect(check.stdout).toContain(`${outputRepo} jobs/${a.job_id} @ ${a.artifacts!.commit}`);
  expect(check.stdout).toMatch(/toy +\d+\/20 +\d+\.\d% +first elite for this task type/);

  const proxy = await tamperingProxy(api.url, 'model.safetensors');
  try {
    const refusedDest = path.join(home, 'tampered');
    const bad = await runCommand('cf-fetch-artifacts', ['--job-id', a.job_id, '--dest', refusedDest, '--orchestrator-did', orchestratorKey(home).did], { FORGE_API_URL: proxy.url, FORGE_HOME: home });
    expect(bad.code).toBe(7);
    expect(bad.stderr).toMatch(/refusing model\.safetensors: .*the signed manifest says/);
    expect(existsSync(refusedDest) ? readdirSync(refusedDest) : []).toEqual([]);
  } finally {
    await proxy.close();
  }
  // model.sig altered on the way (one byte of its signed payload): refused as well, nothing kept.
  const sigProxy = await tamperingProxy(api.url, 'model.sig', 300);
  try {
    const refusedDest = path.join(home, 'tampered-sig');
    const bad = await runCommand('cf-fetch-artifacts', ['--job-id', a.job_id, '--dest', refusedDest], { FORGE_API_URL: sigProxy.url, FORGE_HOME: home });
    expect(bad.code).toBe(7);
    expect(bad.stderr).toMatch(/refusing job .*model\.sig/);
    expect(existsSync(refusedDest) ? readdirSync(refusedDest) : []).toEqual([]);
  } finally {
    await sigProxy.close();
  }
}, 240_000);

test('cf-eval scores the fetched model as the job did; cf-export-elites signs an export and publishes the registry', async () => {
  const a = await jobA;
  const dest = path.join(home, 'fetched', a.job_id);
  const out = path.join(home, 'cli-evals.jsonl');
  const r = await runCommand('cf-eval', ['--model', dest, '--tasks', 'toy', '--out', out, '--job-id', a.job_id, '--json'], { FORGE_HOME: home, FORGE_CONFIG: configFile });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const summary = JSON.parse(r.stdout) as { rows: number; summaries: { task_type: string; success_rate: number }[] };
  expect(summary.rows).toBe(20);
  // Greedy decoding of the same weights: the very same answers.
  expect(summary.summaries).toEqual([expect.objectContaining({ task_type: 'toy', success_rate: a.evals[0]!.success_rate })]);
  expect(rows(out).map((x) => x.success)).toEqual(rows().filter((x) => x.job_id === a.job_id).map((x) => x.success));
  const table = await runCommand('cf-eval', ['--model', dest, '--tasks', 'nope'], { FORGE_HOME: home, FORGE_CONFIG: configFile });
  expect(table.code).toBe(2);
  expect(table.stderr).toMatch(/unknown task type\(s\) nope; the suite has: file-edit, toy, vcs/);

  await jobB; // the registry is final
  const exportFile = path.join(home, 'elites-export.json');
  const ex = await runCommand('cf-export-elites', ['--out', exportFile, '--auto-publish'], { FORGE_HOME: home, FORGE_CONFIG: configFile });
  expect(ex.stderr).toBe('');
  expect(ex.code).toBe(0);
  expect(ex.stdout).toMatch(new RegExp(`toy +forge:job-${a.job_id}`));
  const exported = JSON.parse(readFileSync(exportFile, 'utf8')) as Record<string, unknown> & { signature_ed25519: string; registry: { commit: string } };
  const did = orchestratorKey(home).did;
  expect(exported).toMatchObject({ version: 'forge-elites-export-v1', signer_did: did, registry: { commit: registryAfterA } });
  expect(verifyBytes(exported.signature_ed25519, specSigningPayload(exported), publicKeyFromDidKey(did))).toBe(true);
  expect(git(publishDir, 'rev-parse', 'main').trim()).toBe(registryAfterA);
}, 240_000);
