/**
 * Artifacts (docs/architecture.md §8): after a successful attempt, the trainer's outputs are committed to the spec's
 * `artifacts.output_repo` on `output_branch` under `models/job-<id>/`, with `manifest.json` (sha256 and size of every
 * file, the spec's hash and the owner's signature, backend, attempt, times) and `manifest.sig` (the orchestrator's
 * Ed25519 signature over the exact bytes of manifest.json), and pushed.
 *
 * Idempotent: the push also sets `refs/forge/jobs/<job_id>` on the remote (atomically with the branch where the
 * server supports it). A retried activity first looks for that ref and, when it is there, returns its commit instead
 * of making a second one. A new branch starts from the remote's default branch, so that its `.gitattributes` applies:
 * files it routes through Git LFS are committed with LFS when `git lfs` is installed, and refused with a clear error
 * when it is not.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { SimpleGit } from 'simple-git';
import {
  ARTIFACT_MANIFEST_VERSION,
  jobFolder,
  jobRef,
  MANIFEST_FILE,
  MANIFEST_SIG_FILE,
  readManifestFiles,
  signArtifactManifest,
  verifyArtifactManifest,
  type ArtifactFile,
  type ArtifactManifest,
} from '../common/artifact-manifest';
import { checkRepoUrl, GitAccessError, gitLfsAvailable } from '../common/git';
import { MODEL_SIG_FILE, modelSigningKeyFrom, reuseModelSignature, signModel } from '../common/model-signing';
import { PROVENANCE_FILE, signProvenance } from '../common/provenance';
import type { KeyPair } from '../jobspec/signing';
import type { GitSettings } from '../common/results-config';
import type { TrainingJobSpec } from '../jobspec/schema';
import { isErrno, linkTree } from '../common/files';
import type { CollectProgress } from './backends/remote/remote-agent';
import { BackendError, type Backend, type DeploymentRef } from './backends/types';
import { addCurvesFile } from './curves-artifact';
import { isRace, lfsPaths, lfsPointers, lsRemote, readBlob, recordFrom, remoteHead, sha256Text, workRepo } from './artifacts-repo';

/** Where a job's artifacts were committed: what the `status` query shows as `artifacts`. */
export interface ArtifactsRecord {
  repo: string;
  branch: string;
  commit: string;
  /** The job's folder in the repository: models/job-<id>. */
  path: string;
  /** sha256 of manifest.json's bytes. */
  manifest_sha256: string;
  signer_did: string;
  files: ArtifactFile[];
  /** Paths committed through Git LFS. */
  lfs: string[];
  /** The signed provenance statement next to manifest.json (absent for commits made before there was one). */
  provenance?: { path: string; sha256: string };
}

export interface CommitArtifactsInput {
  spec: TrainingJobSpec;
  specHash: string;
  deployment: DeploymentRef;
}

/** Raised for what retrying cannot fix (a refused repository URL, Git LFS asked for but missing). */
export class ArtifactsError extends Error {
  override name = 'ArtifactsError';
}

export interface ArtifactDeps {
  home: string;
  git: GitSettings;
  key: () => KeyPair;
  backend(name: string): Backend;
  /** Tests: runs right after a successful push (to fail an activity there and watch its retry). */
  afterPush?: (record: ArtifactsRecord) => void | Promise<void>;
  /** Called now and then during long steps (activity heartbeats; with the download's progress as details). */
  heartbeat?: (details?: CollectProgress) => void;
}

const MAX_PUSH_RACES = 8;
const CHECKPOINTS = 'checkpoints';

export function resultsDir(home: string, jobId: string): string {
  return path.join(home, 'results', jobId);
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/** Every regular file under dir (POSIX relative paths, sorted). */
async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, child)));
    else if (e.isFile()) out.push(child);
  }
  return out.sort();
}

/** What of the trainer's output is committed: no hidden files (half-written checkpoints), checkpoints only on request. */
export function keepOutput(rel: string, saveCheckpoints: boolean): boolean {
  const parts = rel.split('/');
  if (parts.some((p) => p.startsWith('.'))) return false;
  if (rel === MANIFEST_FILE || rel === MANIFEST_SIG_FILE || rel === MODEL_SIG_FILE || rel === PROVENANCE_FILE) return false;
  if (parts[0] === CHECKPOINTS) return saveCheckpoints && parts.length > 2 && /^step-\d+$/.test(parts[1]!);
  return true;
}

export async function describeFiles(dir: string, rels: string[], heartbeat?: () => void): Promise<ArtifactFile[]> {
  const files: ArtifactFile[] = [];
  for (const rel of rels) {
    const full = path.join(dir, rel);
    files.push({ path: rel, sha256: await sha256File(full), size: (await fs.stat(full)).size });
    heartbeat?.();
  }
  return files;
}

/** The record of an existing commit, from the signed manifest it holds (verified). */
async function recordOf(git: SimpleGit, commit: string, jobId: string, repo: string, branch: string, signer: string): Promise<ArtifactsRecord> {
  const folder = jobFolder(jobId);
  const json = await readBlob(git, commit, `${folder}/${MANIFEST_FILE}`);
  const sig = await readBlob(git, commit, `${folder}/${MANIFEST_SIG_FILE}`);
  if (json === undefined || sig === undefined) throw new ArtifactsError(`commit ${commit} has no ${folder}/${MANIFEST_FILE} and ${MANIFEST_SIG_FILE}`);
  const files = readManifestFiles(json, sig);
  if (!files.ok) throw new ArtifactsError(`commit ${commit}: ${files.reason}`);
  const check = verifyArtifactManifest(files.signed, signer);
  if (!check.ok) throw new ArtifactsError(`commit ${commit}: ${check.reason}`);
  if (check.manifest.job_id !== jobId) throw new ArtifactsError(`commit ${commit} holds the manifest of job ${check.manifest.job_id}`);
  const lfs = await lfsPointers(git, commit, folder, check.manifest.files);
  const provenance = await readBlob(git, commit, `${folder}/${PROVENANCE_FILE}`);
  return recordFrom(check.manifest, { repo, branch, commit, json, lfs, provenance });
}

/**
 * The files signed next to the manifest: provenance.intoto.json (SLSA provenance, DSSE, Ed25519) and model.sig (OpenSSF
 * Model Signing over every file of the folder, the manifest and the provenance included).
 */
async function signedExtras(
  input: CommitArtifactsInput,
  staging: string,
  signed: { json: string; sig: string; signed: ArtifactManifest },
  key: KeyPair,
): Promise<Record<string, string>> {
  const { signature_ed25519: _sig, ...manifest } = signed.signed;
  const metrics = await fs.readFile(path.join(staging, 'metrics.json'), 'utf8').then(
    (t) => JSON.parse(t) as unknown,
    () => null,
  );
  const provenance = signProvenance(
    {
      manifest,
      manifestSha256: sha256Text(signed.json),
      data: { repo: input.spec.data.repo, branch: input.spec.data.branch, path: input.spec.data.path },
      trainerImage: input.spec.trainer.image,
      trainerReport: metrics !== null && typeof metrics === 'object' && !Array.isArray(metrics) ? (metrics as Record<string, unknown>) : null,
    },
    key,
  );
  const files = [
    ...manifest.files,
    { path: MANIFEST_FILE, sha256: sha256Text(signed.json) },
    { path: MANIFEST_SIG_FILE, sha256: sha256Text(signed.sig) },
    { path: PROVENANCE_FILE, sha256: provenance.sha256 },
  ];
  const modelSig = signModel(path.posix.basename(jobFolder(input.spec.job_id)), files, modelSigningKeyFrom(key.secretKey));
  return { [PROVENANCE_FILE]: provenance.text, [MODEL_SIG_FILE]: modelSig };
}

export function createArtifactActivities(deps: ArtifactDeps) {
  const heartbeat = (): void => deps.heartbeat?.();

  /** Collects the outputs of the successful deployment into a clean staging folder; returns the kept paths. */
  async function collect(input: CommitArtifactsInput, staging: string): Promise<string[]> {
    await fs.rm(staging, { recursive: true, force: true });
    await fs.mkdir(staging, { recursive: true, mode: 0o700 });
    const download = path.join(path.dirname(staging), `download-attempt-${input.deployment.attempt}`);
    try {
      // Remote outputs come from the still-open deployment into a folder kept across tries of this activity on this
      // replica (a retry resumes with the files already whole); another replica starts from the agent again.
      await fs.mkdir(download, { recursive: true, mode: 0o700 });
      await deps.backend(input.deployment.backend).collectArtifacts(input.deployment, download, (p) => deps.heartbeat?.(p));
      await linkTree(download, staging);
    } catch (err) {
      // The backend's refusal (outputs larger than announced, a failed trainer) is final: retrying cannot fix it.
      if (err instanceof BackendError) throw new ArtifactsError(err.message);
      throw err;
    }
    const all = await listFiles(staging);
    const kept = all.filter((rel) => keepOutput(rel, input.spec.artifacts.save_checkpoints));
    for (const rel of all) if (!kept.includes(rel)) await fs.rm(path.join(staging, rel), { force: true });
    if (!kept.includes('model.safetensors')) {
      throw new ArtifactsError(`the trainer's output has no model.safetensors (found: ${kept.join(', ') || 'nothing'})`);
    }
    // The training curve next to the training log (activities/curves-artifact.ts).
    return addCurvesFile(staging, kept, input.spec);
  }

  /** One try: bring the branch tip, lay the folder out on it, commit, push branch and job ref together. */
  async function commitAndPush(
    git: SimpleGit,
    input: CommitArtifactsInput,
    staging: string,
    signed: { json: string; sig: string; extra: Record<string, string> },
    work: string,
  ): Promise<{ commit: string; lfs: string[] }> {
    const { spec } = input;
    const branch = spec.artifacts.output_branch;
    const folder = jobFolder(spec.job_id);
    const tip = await lsRemote(git, `refs/heads/${branch}`);
    const head = await remoteHead(git);
    // The spec policy keeps output branches under results.git.branch_prefix; this catches a remote whose default
    // branch lies there too: a job's commit never lands on the branch everyone clones (and its CI builds).
    if (head === `refs/heads/${branch}`) {
      throw new ArtifactsError(
        `artifacts.output_branch "${branch}" is the default branch (HEAD) of ${spec.artifacts.output_repo}; a job pushes to a branch of its own: submit it with another output_branch`,
      );
    }
    // A new branch starts from the remote's default branch (undefined for an empty repository).
    const baseRef = tip ? `refs/heads/${branch}` : head && (await lsRemote(git, head)) ? head : undefined;
    // Only this job's folder (and the root's .gitattributes) is checked out: an output repo with many models stays cheap.
    await git.raw(['sparse-checkout', 'set', '--cone', folder]);
    if (baseRef) {
      await git.raw(['fetch', '--quiet', '--depth', '1', '--filter=blob:none', '--no-tags', 'origin', `+${baseRef}:refs/forge/base`]);
      await git.raw(['checkout', '--quiet', '--force', '-B', branch, 'refs/forge/base']);
    } else {
      await git.raw(['checkout', '--quiet', '--force', '--orphan', branch]);
      await git.raw(['rm', '-r', '-q', '--cached', '--ignore-unmatch', '.']);
    }
    heartbeat();
    const target = path.join(work, folder);
    const previousModelSig = await fs.readFile(path.join(target, MODEL_SIG_FILE), 'utf8').catch(() => undefined);
    await fs.rm(target, { recursive: true, force: true });
    await linkTree(staging, target);
    await fs.writeFile(path.join(target, MANIFEST_FILE), signed.json);
    await fs.writeFile(path.join(target, MANIFEST_SIG_FILE), signed.sig);
    const pem = modelSigningKeyFrom(deps.key().secretKey).publicKeyPem;
    const extra = { ...signed.extra, [MODEL_SIG_FILE]: reuseModelSignature(previousModelSig, signed.extra[MODEL_SIG_FILE]!, pem) };
    for (const [name, text] of Object.entries(extra)) await fs.writeFile(path.join(target, name), text);

    const rels = await listFiles(staging);
    const lfs = await lfsPaths(git, folder, rels);
    if (lfs.length) {
      if (!(await gitLfsAvailable(work, deps.git))) {
        throw new ArtifactsError(
          `the output repo's .gitattributes stores ${lfs.join(', ')} with Git LFS, but git-lfs is not installed on this worker: install it (https://git-lfs.com, e.g. apt-get install git-lfs) and submit the job again`,
        );
      }
      await git.raw(['lfs', 'install', '--local']);
    }
    await git.raw(['add', '--all', '--sparse', '--', folder]);
    const staged = await git.raw(['diff', '--cached', '--name-only']);
    let commit: string;
    if (staged.trim() === '' && baseRef) {
      // The branch already holds exactly these files (an earlier try pushed the branch but not the job's ref).
      commit = (await git.revparse(['HEAD'])).trim();
    } else {
      const message = [
        `${folder}: ${spec.job_type} of ${spec.base_model.name} (attempt ${input.deployment.attempt} on ${input.deployment.backend})`,
        '',
        `Forge-Job: ${spec.job_id}`,
        `Forge-Spec-SHA256: ${input.specHash}`,
        `Forge-Manifest-SHA256: ${createHash('sha256').update(signed.json, 'utf8').digest('hex')}`,
        `Forge-Owner: ${spec.owner_did}`,
      ].join('\n');
      await git.commit(message, undefined, { '--quiet': null });
      commit = (await git.revparse(['HEAD'])).trim();
    }
    heartbeat();
    const refspecs = [`${commit}:refs/heads/${branch}`, `${commit}:${jobRef(spec.job_id)}`];
    try {
      await git.raw(['push', '--quiet', '--atomic', 'origin', ...refspecs]);
    } catch (err) {
      if (!/does not support --atomic/i.test(String(err))) throw err;
      // Without atomic pushes the branch goes first: a retry that finds the branch but no ref sees the same files
      // (the empty diff above) and only pushes the ref.
      for (const spec of refspecs) await git.raw(['push', '--quiet', 'origin', spec]);
    }
    return { commit, lfs };
  }

  return {
    /** Commits and pushes the job's artifacts (see the file comment); returns where they are. */
    async commitArtifacts(input: CommitArtifactsInput): Promise<ArtifactsRecord> {
      const { spec } = input;
      const repo = spec.artifacts.output_repo;
      const branch = spec.artifacts.output_branch;
      const key = deps.key();
      try {
        checkRepoUrl(repo, deps.git, deps.home);
      } catch (err) {
        throw new ArtifactsError((err as Error).message);
      }
      const dir = resultsDir(deps.home, spec.job_id);
      const work = path.join(dir, 'repo');
      const git = await workRepo(work, repo, deps.git);

      const existing = await lsRemote(git, jobRef(spec.job_id));
      if (existing) {
        await git.raw(['fetch', '--quiet', '--depth', '1', '--no-tags', 'origin', `+${jobRef(spec.job_id)}:${jobRef(spec.job_id)}`]);
        return recordOf(git, existing, spec.job_id, repo, branch, key.did);
      }

      const staging = path.join(dir, 'staging');
      const rels = await collect(input, staging);
      heartbeat();
      const status = await deps.backend(input.deployment.backend).status(input.deployment);
      const files = await describeFiles(staging, rels, heartbeat);
      // Everything in it is fixed by the attempt (no "now"), so a retry signs the same bytes.
      const signed = signArtifactManifest(
        {
          version: ARTIFACT_MANIFEST_VERSION,
          job_id: spec.job_id,
          job_type: spec.job_type,
          owner_did: spec.owner_did,
          spec_sha256: input.specHash,
          spec_signature_ed25519: spec.signature_ed25519,
          base_model: spec.base_model,
          backend: input.deployment.backend,
          attempt: input.deployment.attempt,
          deployment_id: input.deployment.id,
          output: { repo, branch, path: jobFolder(spec.job_id) },
          training: { started_at: status.startedAt ?? null, finished_at: status.finishedAt ?? null },
          files,
          signer_did: key.did,
        },
        key.secretKey,
      );
      const extra = await signedExtras(input, staging, signed, key);
      for (let race = 0; ; race++) {
        try {
          const { commit, lfs } = await commitAndPush(git, input, staging, { ...signed, extra }, work);
          const record = recordFrom(signed.signed, { repo, branch, commit, json: signed.json, lfs, provenance: extra[PROVENANCE_FILE] });
          await deps.afterPush?.(record);
          return record;
        } catch (err) {
          // Another writer moved the branch between our fetch and our push: start again from its new tip.
          if (!isRace(err) || race >= MAX_PUSH_RACES) throw err;
        }
      }
    },
  };
}

/**
 * A folder holding the job's committed files as of `record.commit`, checked against the signed manifest: the work
 * repository commitArtifacts left, when it is there and still at that commit, else a fresh fetch of the job's ref.
 */
export async function checkoutArtifacts(
  record: ArtifactsRecord,
  jobId: string,
  settings: GitSettings,
  home: string,
  signerDid: string,
): Promise<string> {
  const work = path.join(resultsDir(home, jobId), 'repo');
  const git = await workRepo(work, record.repo, settings);
  const head = await git.revparse(['HEAD']).catch(() => '');
  if (head.trim() !== record.commit) {
    checkRepoUrl(record.repo, settings, home);
    await git.raw(['sparse-checkout', 'set', '--cone', record.path]);
    await git.raw(['fetch', '--quiet', '--depth', '1', '--no-tags', 'origin', `+${jobRef(jobId)}:${jobRef(jobId)}`]);
    await git.raw(['checkout', '--quiet', '--force', '--detach', record.commit]);
    if (record.lfs.length) {
      // Without LFS set up in the clone (no system-wide `git lfs install`), `git lfs pull` fetches but leaves the pointers.
      await git.raw(['lfs', 'install', '--local']);
      await git.raw(['lfs', 'pull', '--include', record.lfs.map((p) => `${record.path}/${p}`).join(',')]);
    }
  }
  const dir = path.join(work, record.path);
  const signed = readManifestFiles(
    await fs.readFile(path.join(dir, MANIFEST_FILE), 'utf8'),
    await fs.readFile(path.join(dir, MANIFEST_SIG_FILE), 'utf8'),
  );
  if (!signed.ok) throw new ArtifactsError(signed.reason);
  const check = verifyArtifactManifest(signed.signed, signerDid);
  if (!check.ok) throw new ArtifactsError(check.reason);
  for (const f of check.manifest.files) {
    const full = path.join(dir, f.path);
    const size = await fs.stat(full).then(
      (s) => s.size,
      (err: unknown) => (isErrno(err, 'ENOENT') ? -1 : Promise.reject(err)),
    );
    if (size !== f.size || (await sha256File(full)) !== f.sha256)
      throw new ArtifactsError(`${record.path}/${f.path} does not match the signed manifest`);
  }
  return dir;
}

export { GitAccessError };
export type ArtifactActivities = ReturnType<typeof createArtifactActivities>;
