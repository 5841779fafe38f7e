/**
 * Where the API finds a job's signed artifact manifest and the files it lists. Downloads are looked up by exact
 * name in the manifest; the file opened is the manifest entry's, never a path built from the request.
 */
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { ArtifactFile } from '../../common/artifact-manifest';
import type { JobStatus } from '../../workflows/messages';

export interface ArtifactSource {
  /** The job's signed manifest as stored (unparsed JSON), or null while the job has none. */
  manifest(jobId: string, status: JobStatus): Promise<unknown>;
  /** The bytes of one manifest entry. */
  open(jobId: string, file: ArtifactFile): Promise<Readable>;
}

/** Until the results issue collects artifacts, no job has any. */
export const noArtifacts: ArtifactSource = {
  manifest: async () => null,
  open: async () => {
    throw new Error('this orchestrator stores no artifacts');
  },
};

/** `<root>/<job_id>/manifest.json` and the files beside it (used by tests; a layout the results issue may keep). */
export class DirectoryArtifactSource implements ArtifactSource {
  constructor(private readonly root: string) {}

  private jobDir(jobId: string): string {
    // Job ids reaching here are validated UUIDs; still, never leave the root.
    const dir = path.resolve(this.root, jobId);
    if (path.dirname(dir) !== path.resolve(this.root)) throw new Error(`bad job id ${jobId}`);
    return dir;
  }

  async manifest(jobId: string): Promise<unknown> {
    try {
      return JSON.parse(await fs.readFile(path.join(this.jobDir(jobId), 'manifest.json'), 'utf8')) as unknown;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
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
