/**
 * The git side of the artifacts activities (activities/artifacts.ts): the output repository's refs, blobs and Git
 * LFS routing, the job's work repository, and the record of a commit. Split from artifacts.ts.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { SimpleGit } from 'simple-git';
import { jobFolder, type ArtifactFile, type ArtifactManifest } from '../common/artifact-manifest';
import { gitIn } from '../common/git';
import { PROVENANCE_FILE } from '../common/provenance';
import type { GitSettings } from '../common/results-config';
import type { ArtifactsRecord } from './artifacts';

export const sha256Text = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

export async function lsRemote(git: SimpleGit, ref: string): Promise<string | undefined> {
  const out = await git.raw(['ls-remote', '--', 'origin', ref]);
  const line = out.split('\n').find((l) => l.endsWith(`\t${ref}`));
  return line?.split('\t')[0];
}

/** The ref the remote's HEAD names (its default branch, which may not exist yet), or undefined. */
export async function remoteHead(git: SimpleGit): Promise<string | undefined> {
  const out = await git.raw(['ls-remote', '--symref', '--', 'origin', 'HEAD']);
  return /^ref: (refs\/heads\/\S+)\tHEAD$/m.exec(out)?.[1];
}

export async function readBlob(git: SimpleGit, commit: string, file: string): Promise<string | undefined> {
  try {
    return await git.show([`${commit}:${file}`]);
  } catch {
    return undefined;
  }
}

export function recordFrom(
  m: ArtifactManifest,
  at: { repo: string; branch: string; commit: string; json: string; lfs: string[]; provenance?: string | undefined },
): ArtifactsRecord {
  return {
    repo: at.repo,
    branch: at.branch,
    commit: at.commit,
    path: jobFolder(m.job_id),
    manifest_sha256: createHash('sha256').update(at.json, 'utf8').digest('hex'),
    signer_did: m.signer_did,
    files: m.files,
    lfs: at.lfs,
    ...(at.provenance === undefined ? {} : { provenance: { path: `${jobFolder(m.job_id)}/${PROVENANCE_FILE}`, sha256: sha256Text(at.provenance) } }),
  };
}

/** Which of the job's files the repository's .gitattributes routes through Git LFS (filter=lfs). */
export async function lfsPaths(git: SimpleGit, folder: string, rels: string[]): Promise<string[]> {
  if (rels.length === 0) return [];
  const out = await git.raw(['check-attr', 'filter', '--', ...rels.map((r) => `${folder}/${r}`)]);
  return out
    .split('\n')
    .map((l) => /^(.*): filter: lfs$/.exec(l)?.[1])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.slice(folder.length + 1));
}

const LFS_POINTER = 'version https://git-lfs.github.com/spec/v1';

/** Which files of a commit are Git LFS pointers rather than the bytes the manifest describes. */
export async function lfsPointers(git: SimpleGit, commit: string, folder: string, files: ArtifactFile[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) {
    const size = Number((await git.raw(['cat-file', '-s', `${commit}:${folder}/${f.path}`])).trim());
    if (size !== f.size && size < 1024 && (await git.show([`${commit}:${folder}/${f.path}`])).startsWith(LFS_POINTER)) out.push(f.path);
  }
  return out;
}

/** A fresh or reused work repository for the job, its origin the output repo. */
export async function workRepo(dir: string, repo: string, settings: GitSettings): Promise<SimpleGit> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const { git } = gitIn(dir, repo, settings);
  if (!(await fs.stat(path.join(dir, '.git')).catch(() => undefined))) await git.init();
  const remotes = await git.getRemotes(true);
  if (remotes.some((r) => r.name === 'origin')) await git.remote(['set-url', 'origin', repo]);
  else await git.addRemote('origin', repo);
  return git;
}

export function isRace(err: unknown): boolean {
  const m = err instanceof Error ? err.message : String(err);
  return /\[rejected\]|non-fast-forward|fetch first|stale info|atomic push failed|failed to update ref|cannot lock ref/i.test(m);
}
