/**
 * Git LFS for model weights (issue 5): an output repo whose .gitattributes routes `*.safetensors` through LFS gets
 * an LFS pointer in the commit and the real bytes in the remote's LFS store (git-lfs's built-in transfer for
 * file:// remotes: `<bare repo>/lfs/objects/`), while manifest.json describes the real file; a retry after the push
 * still makes one commit; a fresh checkout (the eval path) and cf-fetch-artifacts (through the API) get the real
 * bytes, verified, and refuse a tampered LFS object. With git-lfs off PATH the same job is REJECTED with a clear
 * error. git-lfs must be installed (scripts/bootstrap.sh installs it): without it this file fails, it does not skip.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, promises as fs, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { checkoutArtifacts, resultsDir, type ArtifactsRecord } from '../../activities/artifacts';
import { orchestratorKey } from '../../common/orchestrator-key';
import type { JobStatus } from '../../workflows/messages';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, runJob, startWorker, states, tempDir, testClient, testConfig, type RunningWorker } from '../helpers/forge';
import { requireBuilt, runCommand } from '../helpers/cli';
import { git, gitBytes, makeBareRepo } from '../helpers/results';
import { startGitArtifactsApi, type ApiHarness } from '../api/harness';

const TQ = 'test-results-lfs';
const home = tempDir('forge-results-lfs-');
const LFS_POINTER = 'version https://git-lfs.github.com/spec/v1\n';
const config = testConfig({ local: { trainers: { model: fakeTrainer('model', 0) } } }, undefined, {
  results: { max_minutes: 2, git: { file_roots: [home] } },
});

let worker: RunningWorker;
let client: Client;
let connection: Connection;
let api: ApiHarness;
let lfsRepo: string;
/** Job ids whose artifact activity fails once right after its push. */
const failAfterPush = new Set<string>();
const pushes: ArtifactsRecord[] = [];

beforeAll(async () => {
  try {
    execFileSync('git', ['lfs', 'version'], { stdio: 'pipe' });
  } catch {
    throw new Error('git-lfs is not installed: these tests need it (scripts/bootstrap.sh installs it as root; else: sudo apt-get install -y git-lfs)');
  }
  requireBuilt(['cf-fetch-artifacts']);
  lfsRepo = makeBareRepo(path.join(home, 'repos', 'lfs-models.git'), { '.gitattributes': '*.safetensors filter=lfs diff=lfs merge=lfs -text\n' });
  worker = await startWorker(config, home, TQ, {
    afterArtifactsPush: (record) => {
      pushes.push(record);
      if (failAfterPush.delete(record.path.replace('models/job-', ''))) throw new Error('injected: the worker was lost right after the push');
    },
  });
  ({ client, connection } = await testClient());
  api = await startGitArtifactsApi(TQ, config, home, { captureLogs: true });
}, 60_000);
afterAll(async () => {
  await api?.stop();
  await worker?.stop();
  await connection?.close();
  await fs.rm(home, { recursive: true, force: true });
});

function spec() {
  return makeSignedSpec({
    trainer: { image: 'model' },
    objective: { task_types: ['no-such-task-type'], target_metric: 0 },
    artifacts: { output_repo: lfsRepo, output_branch: 'jobs/${job_id}', save_checkpoints: false },
  });
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Parses a Git LFS pointer (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md). */
function parsePointer(text: string): { oid: string; size: number } {
  expect(text.startsWith(LFS_POINTER)).toBe(true);
  const oid = /^oid sha256:([0-9a-f]{64})$/m.exec(text)?.[1];
  const size = /^size (\d+)$/m.exec(text)?.[1];
  if (!oid || !size) throw new Error(`not an LFS pointer: ${JSON.stringify(text)}`);
  return { oid, size: Number(size) };
}

/** A PATH that has everything the current one has except git-lfs (symlinks, first match wins). */
function pathWithoutGitLfs(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-no-lfs-'));
  const seen = new Set<string>(['git-lfs']);
  for (const entry of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!entry || !existsSync(entry)) continue;
    for (const name of readdirSync(entry)) {
      if (seen.has(name)) continue;
      seen.add(name);
      symlinkSync(path.join(entry, name), path.join(dir, name));
    }
  }
  return dir;
}

let done: JobStatus;

test('*.safetensors through LFS: a pointer in the commit, the real bytes in the remote LFS store, the manifest describing the real file, one commit despite a retry after the push', async () => {
  const s = spec();
  failAfterPush.add(s.job_id);
  done = await runJob(client, TQ, s);
  expect(done.state).toBe('COMPLETED');
  expect(states(done)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);
  const a = done.artifacts!;
  const folder = `models/job-${s.job_id}`;
  expect(a.lfs).toEqual(['model.safetensors']);

  // One commit, though the activity failed once after pushing; its retry read the record back from the remote.
  const repoDir = lfsRepo.slice('file://'.length);
  expect(pushes.filter((p) => p.path === folder)).toEqual([expect.objectContaining({ commit: a.commit, lfs: ['model.safetensors'] })]);
  expect(git(repoDir, 'rev-list', '--count', `main..jobs/${s.job_id}`).trim()).toBe('1');
  expect(git(repoDir, 'rev-parse', `refs/forge/jobs/${s.job_id}`).trim()).toBe(a.commit);

  // The trainer's real output (the staging copy the activity committed from).
  const real = readFileSync(path.join(resultsDir(home, s.job_id), 'staging', 'model.safetensors'));
  expect(real.toString('utf8')).toMatch(/^fake weights of /);

  // In git: a pointer to the real file's sha256 and size, not the bytes.
  const blob = gitBytes(repoDir, 'show', `${a.commit}:${folder}/model.safetensors`).toString('utf8');
  const pointer = parsePointer(blob);
  expect(pointer).toEqual({ oid: sha256(real), size: real.length });
  // Only *.safetensors: the other files are plain blobs.
  expect(gitBytes(repoDir, 'show', `${a.commit}:${folder}/config.json`).toString('utf8')).toBe('{"model_type":"fake"}\n');

  // In the remote's LFS store (git-lfs keeps a file:// remote's objects in <bare repo>/lfs/objects/aa/bb/<oid>).
  const stored = path.join(repoDir, 'lfs', 'objects', pointer.oid.slice(0, 2), pointer.oid.slice(2, 4), pointer.oid);
  expect(readFileSync(stored)).toEqual(real);

  // manifest.json (as committed) describes the real file, not the pointer.
  const manifest = JSON.parse(gitBytes(repoDir, 'show', `${a.commit}:${folder}/manifest.json`).toString('utf8')) as { files: { path: string; sha256: string; size: number }[] };
  const entry = manifest.files.find((f) => f.path === 'model.safetensors');
  expect(entry).toEqual({ path: 'model.safetensors', sha256: sha256(real), size: real.length });
  expect(entry!.sha256).not.toBe(sha256(Buffer.from(blob)));
  expect(a.files).toEqual(manifest.files);
});

test('a fresh checkout (the eval path, no work repo left) gets the real bytes through LFS, with LFS set up in the clone itself', async () => {
  const a = done.artifacts!;
  const work = path.join(resultsDir(home, done.job_id), 'repo');
  await fs.rm(work, { recursive: true, force: true });
  const dir = await checkoutArtifacts(a, done.job_id, config.results.git, home, orchestratorKey(home).did);
  const entry = a.files.find((f) => f.path === 'model.safetensors')!;
  expect(sha256(readFileSync(path.join(dir, 'model.safetensors')))).toBe(entry.sha256);
  // Not only through a system-wide `git lfs install` (Debian's git-lfs package makes one; other installs do not).
  expect(git(work, 'config', '--local', '--get', 'filter.lfs.process').trim()).toBe('git-lfs filter-process');
});

test('cf-fetch-artifacts gets the real bytes through the API, verified; a tampered LFS object is refused, nothing kept', async () => {
  const a = done.artifacts!;
  const dest = path.join(home, 'fetched');
  const ok = await runCommand('cf-fetch-artifacts', ['--job-id', done.job_id, '--dest', dest, '--json'], { FORGE_API_URL: api.url, FORGE_HOME: home });
  expect(ok.stderr).toBe('');
  expect(ok.code).toBe(0);
  for (const f of a.files) expect(sha256(readFileSync(path.join(dest, f.path)))).toBe(f.sha256);
  const real = readFileSync(path.join(dest, 'model.safetensors'));
  expect(real.toString('utf8')).toMatch(/^fake weights of /);

  // Swap the object in the remote's LFS store and drop the API's cache: the next fetch must not hand it out.
  const repoDir = lfsRepo.slice('file://'.length);
  const oid = a.files.find((f) => f.path === 'model.safetensors')!.sha256;
  const stored = path.join(repoDir, 'lfs', 'objects', oid.slice(0, 2), oid.slice(2, 4), oid);
  await fs.chmod(stored, 0o644);
  writeFileSync(stored, Buffer.concat([real.subarray(1), Buffer.from('!')]));
  await fs.rm(path.join(home, 'cache', 'artifacts'), { recursive: true, force: true });
  const refusedDest = path.join(home, 'tampered');
  const bad = await runCommand('cf-fetch-artifacts', ['--job-id', done.job_id, '--dest', refusedDest], { FORGE_API_URL: api.url, FORGE_HOME: home });
  // git-lfs checks each object it downloads against its pointer's oid: the API cannot serve it (a 500, details in
  // its log), the client keeps nothing.
  expect(bad.code).toBe(3);
  expect(bad.stderr).toMatch(/model\.safetensors: Internal server error: .*\(HTTP 500\)/);
  expect(api.logLines.some((l) => l.includes('downloaded file failed checks') && l.includes(`expected ${oid}`))).toBe(true);
  expect(existsSync(refusedDest) ? readdirSync(refusedDest) : []).toEqual([]);
}, 60_000);

test('git-lfs missing (off PATH) while .gitattributes asks for it → REJECTED at once with a clear error', async () => {
  const saved = process.env.PATH;
  process.env.PATH = pathWithoutGitLfs();
  let final: JobStatus;
  try {
    // (jest's process.env is the test's copy: child processes only see it when handed it)
    expect(() => execFileSync('git', ['lfs', 'version'], { stdio: 'pipe', env: process.env })).toThrow(/'lfs' is not a git command/);
    final = await runJob(client, TQ, spec());
  } finally {
    const dir = process.env.PATH;
    process.env.PATH = saved;
    await fs.rm(dir, { recursive: true, force: true });
  }
  expect(final.state).toBe('ABANDONED');
  expect(states(final)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'FAILED', 'ABANDONED']);
  expect(final.last_error).toMatchObject({ class: 'REJECTED', detail: expect.stringMatching(/stores model\.safetensors with Git LFS, but git-lfs is not installed on this worker/) });
});
