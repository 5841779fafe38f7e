/**
 * Streams an HTTP response body into a file through sha256, so a download is checked against the size and hash its
 * sender announced without reading the file back (the rl collector, `cf-fetch-artifacts`).
 */
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

export interface Metered {
  size: number;
  sha256: string;
}

/**
 * Writes `body` to `file` (its folder created), returning the bytes' count and sha256. On a failed stream the partial
 * file is removed and the error rethrown; checking the result against what was announced is the caller's.
 */
export async function writeMetered(body: ReadableStream<Uint8Array>, file: string, mode = 0o600): Promise<Metered> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(body as WebReadableStream<Uint8Array>), meter, createWriteStream(file, { mode }));
  } catch (err) {
    await fs.rm(file, { force: true });
    throw err;
  }
  return { size, sha256: hash.digest('hex') };
}
