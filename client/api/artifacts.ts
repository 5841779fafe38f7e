/**
 * Where the API finds a job's signed artifact manifest and the files it lists. Downloads are looked up by exact
 * name in the manifest; the file opened is the manifest entry's, never a path built from the request. What
 * `npm start` serves is GitArtifactSource (git-artifacts.ts): the job's committed artifacts, verified.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { MANIFEST_FILE, MANIFEST_SIG_FILE, readManifestFiles, type ArtifactFile } from '../../common/artifact-manifest';
import type { JobStatus } from '../../workflows/messages';

export interface ArtifactSource {
  /** The job's signed manifest in the API's form (unparsed JSON), or null while the job has none. */
  manifest(jobId: string, status: JobStatus): Promise<unknown>;
  /** The bytes of one manifest entry. */
  open(jobId: string, file: ArtifactFile, status: JobStatus): Promise<Readable>;
  /** A signature file committed next to the manifest (model.sig, provenance.intoto.json), or null when there is none. */
  signatureFile?(jobId: string, name: string, status: JobStatus): Promise<string | null>;
}

/** For an API without a results store. */
export const noArtifacts: ArtifactSource = {
  manifest: async () => null,
  open: async () => {
    throw new Error('this orchestrator stores no artifacts');
  },
};

/**
 * `<root>/<job_id>/` laid out as in the output repo (manifest.json, manifest.sig and the files): a folder fetched by
 * cf-fetch-artifacts, or a test's fixture. Served as stored: the client verifies.
 */
export class DirectoryArtifactSource implements ArtifactSource {
  constructor(private readonly root: string) {}

  private jobDir(jobId: string): string {
    // Job ids reaching here are validated UUIDs; still, never leave the root.
    const dir = path.resolve(this.root, jobId);
    if (path.dirname(dir) !== path.resolve(this.root)) throw new Error(`bad job id ${jobId}`);
    return dir;
  }

  async manifest(jobId: string): Promise<unknown> {
    let json: string;
    let sig: string;
    try {
      json = await fs.readFile(path.join(this.jobDir(jobId), MANIFEST_FILE), 'utf8');
      sig = await fs.readFile(path.join(this.jobDir(jobId), MANIFEST_SIG_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const read = readManifestFiles(json, sig);
    if (!read.ok) throw new Error(`stored manifest of job ${jobId}: ${read.reason}`);
    return read.signed;
  }

  async open(jobId: string, file: ArtifactFile): Promise<Readable> {
    const dir = this.jobDir(jobId);
    const full = path.resolve(dir, file.path);
    // Manifest paths are checked relative paths already; a symlink pointing out of the job's folder is refused too.
    const real = await fs.realpath(full);
    const realDir = await fs.realpath(dir);
    if (!real.startsWith(realDir + path.sep)) throw new Error(`artifact ${file.path} resolves outside the job's folder`);
    return createReadStream(real);
  }
}

/**
 * Passes bytes through while hashing them and holds the last chunk back until the end: when size or sha256 differ
 * from the manifest's, the stream fails instead of delivering that chunk.
 */
export function verifyingStream(file: ArtifactFile, label: string): Transform {
  const hash = createHash('sha256');
  let size = 0;
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      const out = held;
      held = chunk;
      cb(null, out);
    },
    flush(cb) {
      const sha = hash.digest('hex');
      if (size !== file.size || sha !== file.sha256) {
        cb(new Error(`${label}: ${size} bytes with sha256 ${sha}, the signed manifest says ${file.size} bytes with sha256 ${file.sha256}`));
        return;
      }
      cb(null, held);
    },
  });
}
