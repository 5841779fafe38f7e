/**
 * What the remote backends keep on the orchestrator's disk: credentials read from the operator config (a value, or
 * a file it names), and one small record per (backend, job, attempt) that makes submit() idempotent across retries
 * and worker restarts. Records hold ids and prices only, never a credential.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { isErrno } from '../../../common/files';
import { BackendError } from '../types';

/**
 * A credential from the operator config: the value itself, or the contents of the file it names (trimmed; must not
 * be readable by group or others). Read on every use, so rotating the file needs no restart.
 */
export async function readSecret(value: string | undefined, file: string | undefined, what: string): Promise<string> {
  if (value !== undefined) return value;
  if (file === undefined) throw new BackendError('REJECTED', `${what}: not configured`);
  let text: string;
  try {
    const st = await fs.stat(file);
    if ((st.mode & 0o077) !== 0) {
      throw new BackendError('REJECTED', `${what}: ${file} is readable by others; run chmod 600 ${file}`);
    }
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof BackendError) throw err;
    throw new BackendError('REJECTED', `${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const secret = text.trim();
  if (!secret) throw new BackendError('REJECTED', `${what}: ${file} is empty`);
  return secret;
}

/** Per-attempt records of one backend: FORGE_HOME/remote/<backend>/<job>/attempt-<n>.json. */
export class AttemptStore<S extends z.ZodType> {
  constructor(
    private readonly home: string,
    private readonly backend: string,
    private readonly schema: S,
  ) {}

  file(jobId: string, attempt: number): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(jobId)) throw new BackendError('REJECTED', `job id "${jobId}" is not a safe path name`);
    return path.join(this.home, 'remote', this.backend, jobId, `attempt-${attempt}.json`);
  }

  async read(jobId: string, attempt: number): Promise<z.output<S> | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.file(jobId, attempt), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    const parsed = this.schema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`${this.file(jobId, attempt)}: damaged record (${parsed.error.issues[0]?.message ?? ''})`);
    return parsed.data;
  }

  async write(jobId: string, attempt: number, record: z.input<S>): Promise<void> {
    const file = this.file(jobId, attempt);
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    // Records may hold a manifest (its agent token replaced by a placeholder), whose env may carry operator settings: owner-only.
    const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
    await fs.writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    await fs.rename(tmp, file);
  }

  /** Updates the record in place (read, change, write). */
  async update(jobId: string, attempt: number, change: (r: z.output<S>) => z.input<S>): Promise<z.output<S>> {
    const current = await this.read(jobId, attempt);
    if (current === undefined) throw new Error(`no record of attempt ${attempt} of job ${jobId} on ${this.backend}`);
    await this.write(jobId, attempt, change(current));
    return (await this.read(jobId, attempt)) as z.output<S>;
  }

  /** Every attempt recorded for this backend (the reaper: which deployments are this orchestrator's); damaged records are skipped. */
  async list(): Promise<{ jobId: string; attempt: number; record: z.output<S> }[]> {
    const root = path.join(this.home, 'remote', this.backend);
    const found: { jobId: string; attempt: number; record: z.output<S> }[] = [];
    for (const jobId of await readdirIfExists(root)) {
      if (jobId.startsWith('.')) continue;
      for (const name of await readdirIfExists(path.join(root, jobId))) {
        const m = /^attempt-(\d+)\.json$/.exec(name);
        if (!m) continue;
        const record = await this.read(jobId, Number(m[1])).catch(() => undefined);
        if (record !== undefined) found.push({ jobId, attempt: Number(m[1]), record });
      }
    }
    return found;
  }

  // An index of open attempts (for max_concurrent): one marker per attempt, so counting is O(open).

  private openDir(): string {
    return path.join(this.home, 'remote', this.backend, '.open');
  }

  async markOpen(jobId: string, attempt: number): Promise<void> {
    await fs.mkdir(this.openDir(), { recursive: true });
    await fs.writeFile(path.join(this.openDir(), `${jobId}.attempt-${attempt}`), '');
  }

  async markClosed(jobId: string, attempt: number): Promise<void> {
    await fs.rm(path.join(this.openDir(), `${jobId}.attempt-${attempt}`), { force: true });
  }

  /** Open attempts of other jobs. */
  async countOpen(exceptJob: string): Promise<number> {
    try {
      return (await fs.readdir(this.openDir())).filter((name) => !name.startsWith(`${exceptJob}.`)).length;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return 0;
      throw err;
    }
  }
}

async function readdirIfExists(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  }
}

export const MS_PER_HOUR = 3_600_000;

/** Cost of `hourlyUsd` from `from` until `to` (never negative). */
export function costBetween(hourlyUsd: number, from: string | undefined, to: Date): number {
  if (!from) return 0;
  const start = Date.parse(from);
  if (Number.isNaN(start)) return 0;
  return (hourlyUsd * Math.max(0, to.getTime() - start)) / MS_PER_HOUR;
}
