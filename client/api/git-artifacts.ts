/**
 * GitArtifactSource (what `npm start` serves): the job's committed artifacts — the commit its status names, fetched
 * from the output repo by the job's ref into a bare cache under FORGE_HOME/cache/artifacts. The manifest is checked
 * against the orchestrator's signature before anything is listed, and every file's bytes against the manifest while
 * they stream (a file that does not match is cut off before its last bytes, so no client ever receives it whole).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { SimpleGit } from 'simple-git';
import { jobFolder, jobRef, MANIFEST_FILE, MANIFEST_SIG_FILE, readManifestFiles, verifyArtifactManifest, type ArtifactFile } from '../../common/artifact-manifest';
import { checkRepoUrl, gitEnvFor, gitIn } from '../../common/git';
import type { GitSettings } from '../../common/results-config';
import type { JobStatus } from '../../workflows/messages';
import { verifyingStream, type ArtifactSource } from './artifacts';

const LFS_POINTER = 'version https://git-lfs.github.com/spec/v1';

export interface GitArtifactSourceOptions {
  /** FORGE_HOME: the cache of output repos lives in FORGE_HOME/cache/artifacts. */
  home: string;
  git: GitSettings;
  /** The orchestrator's did:key: manifests must be signed by it. */
  signerDid: () => string;
}

/** The job's artifacts as committed (status.artifacts), verified; see the file comment. */
export class GitArtifactSource implements ArtifactSource {
  /** One fetch at a time per cached repository. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly o: GitArtifactSourceOptions) {}

  private cacheDir(repo: string): string {
    return path.join(this.o.home, 'cache', 'artifacts', `${createHash('sha256').update(repo).digest('hex').slice(0, 24)}.git`);
  }

  private serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.locks.get(key) ?? Promise.resolve()).then(fn, fn);
    this.locks.set(key, run.catch(() => undefined));
    return run;
  }

  /** A bare cache of the output repo holding the job's commit (fetched by the job's ref when missing). */
  private async repoWith(repo: string, commit: string, jobId: string): Promise<{ git: SimpleGit; dir: string }> {
    checkRepoUrl(repo, this.o.git, this.o.home);
    const dir = this.cacheDir(repo);
    return this.serialized(dir, async () => {
      await fs.mkdir(dir, { recursive: true });
      const { git } = gitIn(dir, repo, this.o.git);
      if (!(await fs.stat(path.join(dir, 'HEAD')).catch(() => undefined))) await git.raw(['init', '--quiet', '--bare']);
      const has = await git.raw(['cat-file', '-e', `${commit}^{commit}`]).then(() => true, () => false);
      if (!has) await git.raw(['fetch', '--quiet', '--depth', '1', '--no-tags', repo, `+${jobRef(jobId)}:${jobRef(jobId)}`]);
      return { git, dir };
    });
  }

  async manifest(jobId: string, status: JobStatus): Promise<unknown> {
    const a = status.artifacts;
    if (!a) return null;
    const { git } = await this.repoWith(a.repo, a.commit, jobId);
    const folder = jobFolder(jobId);
    const json = await git.show([`${a.commit}:${folder}/${MANIFEST_FILE}`]);
    const sig = await git.show([`${a.commit}:${folder}/${MANIFEST_SIG_FILE}`]);
    const read = readManifestFiles(json, sig);
    if (!read.ok) throw new Error(`artifact manifest of job ${jobId} at ${a.commit}: ${read.reason}`);
    const check = verifyArtifactManifest(read.signed, this.o.signerDid());
    if (!check.ok) throw new Error(`artifact manifest of job ${jobId} at ${a.commit} refused: ${check.reason}`);
    if (check.manifest.job_id !== jobId) throw new Error(`artifact manifest at ${a.commit} is for job ${check.manifest.job_id}, not ${jobId}`);
    return read.signed;
  }

  async signatureFile(jobId: string, name: string, status: JobStatus): Promise<string | null> {
    const a = status.artifacts;
    if (!a) return null;
    const { git } = await this.repoWith(a.repo, a.commit, jobId);
    return git.show([`${a.commit}:${jobFolder(jobId)}/${name}`]).catch(() => null);
  }

  async open(jobId: string, file: ArtifactFile, status: JobStatus): Promise<Readable> {
    const a = status.artifacts;
    if (!a) throw new Error(`job ${jobId} has no committed artifacts`);
    const { git, dir } = await this.repoWith(a.repo, a.commit, jobId);
    const object = `${a.commit}:${jobFolder(jobId)}/${file.path}`;
    const size = Number((await git.raw(['cat-file', '-s', object])).trim());
    const lfs = a.lfs.includes(file.path) || (size !== file.size && size < 1024 && (await git.show([object])).startsWith(LFS_POINTER));
    const env = gitEnvFor(a.repo, this.o.git).env;
    if (lfs) await git.raw(['lfs', 'fetch', a.repo, a.commit, '--include', `${jobFolder(jobId)}/${file.path}`]);
    // Streamed straight from git (simple-git buffers whole outputs; model weights do not fit that).
    const cat = spawn('git', ['cat-file', 'blob', object], { cwd: dir, env, stdio: ['ignore', 'pipe', 'ignore'] });
    let source: Readable = cat.stdout;
    if (lfs) {
      const smudge = spawn('git', ['lfs', 'smudge', '--', `${jobFolder(jobId)}/${file.path}`], { cwd: dir, env, stdio: ['pipe', 'pipe', 'ignore'] });
      cat.stdout.pipe(smudge.stdin);
      source = smudge.stdout;
    }
    const check = verifyingStream(file, `${jobFolder(jobId)}/${file.path} at ${a.commit.slice(0, 12)}`);
    source.on('error', (err) => check.destroy(err));
    return source.pipe(check);
  }
}
