/**
 * Streamed downloads of the remote backends' HTTP client (remote-http.ts): a GET into a file, hashed on the way,
 * bounded in size and in silence, with the same mutual TLS and certificate pinning.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { afterPinCheck, NetworkError, tlsRequestOptions, type DownloadResult, type TlsOptions } from './remote-http';

export interface DownloadOptions {
  /** Bounds the silence between two chunks, not the whole transfer. */
  idleMs: number;
  /** Refuse (DownloadTooLargeError, nothing kept) an answer announcing or sending more than this many bytes. */
  maxBytes?: number;
  /** Called with the bytes received so far, at most every `progressBytes` (default 8 MiB) and at the end. */
  onProgress?: (bytes: number) => void;
  progressBytes?: number;
  /** https: client certificate, CA, pinned server certificate (as for httpRequest). */
  tls?: TlsOptions;
}

/** The server sent (or announced) more bytes than the caller allowed: the file is not what it should be. */
export class DownloadTooLargeError extends Error {
  override name = 'DownloadTooLargeError';
}

/**
 * Streams a GET into `file`, hashing on the way. A status other than 200 writes nothing. A body larger than
 * `maxBytes` (by its Content-Length, or counted) is refused and the partial file removed.
 */
export function httpDownload(url: string, file: string, o: DownloadOptions): Promise<DownloadResult> {
  const u = new URL(url);
  const where = `GET ${u.origin}${u.pathname}`;
  const step = o.progressBytes ?? 8 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    let failed = false;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      req.destroy();
      rm(file).then(() => reject(err), () => reject(err));
    };
    const tooLarge = (n: number): DownloadTooLargeError =>
      new DownloadTooLargeError(`${where}: the answer is larger than the ${o.maxBytes} bytes announced for it (${n} bytes or more); refused`);
    const isHttps = u.protocol === 'https:';
    const req = (isHttps ? https : http).request(u, { method: 'GET', ...tlsRequestOptions(isHttps, o.tls) }, (res) => {
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        res.resume();
        res.on('end', () => resolve({ status, size: 0, sha256: '' }));
        return;
      }
      const announced = Number(res.headers['content-length']);
      if (o.maxBytes !== undefined && Number.isFinite(announced) && announced > o.maxBytes) {
        fail(tooLarge(announced));
        return;
      }
      const hash = createHash('sha256');
      let size = 0;
      let reported = 0;
      const out = createWriteStream(file, { mode: 0o600 }); // outputs are the job's only
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (o.maxBytes !== undefined && size > o.maxBytes) {
          out.destroy();
          fail(tooLarge(size));
          return;
        }
        hash.update(chunk);
        if (size - reported >= step) {
          reported = size;
          o.onProgress?.(size);
        }
      });
      res.pipe(out);
      out.on('finish', () => {
        if (failed) return;
        o.onProgress?.(size);
        resolve({ status, size, sha256: hash.digest('hex') });
      });
      out.on('error', (err) => fail(err));
      res.on('error', (err) => fail(err));
    });
    req.setTimeout(o.idleMs, () => req.destroy(new NetworkError('TIMEOUT', `${where}: stalled for ${o.idleMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (failed) return;
      failed = true;
      reject(err instanceof NetworkError ? err : new NetworkError(err.code ?? 'ERROR', `${where}: ${err.message}`));
    });
    afterPinCheck(req, isHttps ? o.tls : undefined, where, () => req.end());
  });
}

function rm(file: string): Promise<void> {
  return fsp.rm(file, { force: true });
}
