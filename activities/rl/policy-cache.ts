/**
 * A rollout worker's policy versions: weights downloaded from the trainer host into a local cache (keyed by sha256,
 * verified before anything uses them), and the one version its inference server has loaded (switched only when no
 * request runs on the current one).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { PolicyRef } from './types';

export const WEIGHTS_FILE = 'model.safetensors';
const SHA256 = /^[0-9a-f]{64}$/;

/** The weights' bytes do not hash to what the trainer announced: never loaded. */
export class PolicyIntegrityError extends Error {
  override name = 'PolicyIntegrityError';
}

export type DownloadOrigin = 'activity' | 'prefetch';

export class PolicyCache {
  private readonly downloads = new Map<string, Promise<string>>();
  /** Who started each download (sha256 → origin): prefetches that beat their activity show here. */
  readonly origins = new Map<string, DownloadOrigin>();

  constructor(
    readonly dir: string,
    /** Versions kept on disk (the newest by use). */
    private readonly keep = 4,
  ) {}

  folder(sha256: string): string {
    return path.join(this.dir, sha256);
  }

  has(sha256: string): boolean {
    return SHA256.test(sha256) && existsSync(path.join(this.folder(sha256), WEIGHTS_FILE));
  }

  /** The folder holding the verified weights of `policy` (downloaded once, however many ask at the same time). */
  async ensure(policy: PolicyRef, token: string, signal?: AbortSignal, origin: DownloadOrigin = 'activity'): Promise<string> {
    if (!SHA256.test(policy.sha256)) throw new PolicyIntegrityError(`policy version ${policy.version}: "${policy.sha256}" is not a sha256`);
    const folder = this.folder(policy.sha256);
    if (this.has(policy.sha256)) {
      const now = new Date();
      await fs.utimes(folder, now, now).catch(() => undefined);
      return folder;
    }
    let pending = this.downloads.get(policy.sha256);
    if (!pending) {
      this.origins.set(policy.sha256, origin);
      pending = this.download(policy, token, signal).finally(() => this.downloads.delete(policy.sha256));
      this.downloads.set(policy.sha256, pending);
    }
    return pending;
  }

  private async download(policy: PolicyRef, token: string, signal?: AbortSignal): Promise<string> {
    await fs.mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.tmp-${policy.sha256.slice(0, 16)}-${randomBytes(4).toString('hex')}`);
    await fs.mkdir(tmp);
    try {
      const res = await fetch(policy.url, { headers: { authorization: `Bearer ${token}` }, ...(signal ? { signal } : {}) });
      if (!res.ok || !res.body) throw new Error(`GET ${policy.url}: HTTP ${res.status}`);
      const announced = res.headers.get('x-forge-sha256');
      if (announced && announced !== policy.sha256) {
        throw new PolicyIntegrityError(`policy version ${policy.version}: the trainer now serves sha256 ${announced} at ${policy.url}, the workflow expects ${policy.sha256}`);
      }
      const hash = createHash('sha256');
      const tap = new Transform({
        transform(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          done(null, chunk);
        },
      });
      await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), tap, createWriteStream(path.join(tmp, WEIGHTS_FILE)));
      const got = hash.digest('hex');
      if (got !== policy.sha256) throw new PolicyIntegrityError(`policy version ${policy.version}: downloaded weights hash to ${got}, expected ${policy.sha256}`);
      const folder = this.folder(policy.sha256);
      await fs.rm(folder, { recursive: true, force: true });
      await fs.rename(tmp, folder);
      await this.prune(policy.sha256);
      return folder;
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }

  private async prune(keepSha: string): Promise<void> {
    const entries = await fs.readdir(this.dir, { withFileTypes: true });
    const versions = await Promise.all(
      entries
        .filter((e) => e.isDirectory() && SHA256.test(e.name))
        .map(async (e) => ({ name: e.name, mtime: (await fs.stat(path.join(this.dir, e.name))).mtimeMs })),
    );
    const old = versions.sort((a, b) => b.mtime - a.mtime).slice(this.keep);
    for (const v of old) if (v.name !== keepSha) await fs.rm(path.join(this.dir, v.name), { recursive: true, force: true });
  }
}

/**
 * The inference server holds one set of weights. Requests for the loaded version run side by side; a request for
 * another version waits until those finish, loads it, and runs (requests for the old one arriving meanwhile wait).
 */
export class LoadedPolicy {
  private loaded: string | null = null;
  private active = 0;
  private switching = false;
  private readonly wanted = new Map<string, number>();
  private waiters: (() => void)[] = [];

  get current(): string | null {
    return this.loaded;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private wait(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      const onAbort = (): void => reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  private othersWanted(key: string): boolean {
    for (const [k, n] of this.wanted) if (k !== key && n > 0) return true;
    return false;
  }

  /** Runs `fn` while `key` is the loaded version, loading it with `load` first when needed. */
  async use<T>(key: string, load: () => Promise<void>, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.wanted.set(key, (this.wanted.get(key) ?? 0) + 1);
    let counted = true;
    const uncount = (): void => {
      if (!counted) return;
      counted = false;
      this.wanted.set(key, (this.wanted.get(key) ?? 1) - 1);
      if (!this.wanted.get(key)) this.wanted.delete(key);
    };
    try {
      for (;;) {
        // The loaded version runs at once, unless requests for another version wait for the running ones to drain.
        if (!this.switching && this.loaded === key && (this.active === 0 || !this.othersWanted(key))) {
          this.active++;
          uncount();
          try {
            return await fn();
          } finally {
            this.active--;
            this.wake();
          }
        }
        if (this.loaded !== key && !this.switching && this.active === 0) {
          this.switching = true;
          try {
            this.loaded = null;
            await load();
            this.loaded = key;
          } finally {
            this.switching = false;
            this.wake();
          }
          continue;
        }
        await this.wait(signal);
      }
    } finally {
      uncount();
    }
  }
}
