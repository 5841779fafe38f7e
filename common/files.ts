/**
 * File helpers of the local backend: atomic writes, bounded reads of growing logs, copying a trainer's outputs.
 * Everything here is bounded in memory: logs can be many GB.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';

/** Duck-typed, not instanceof: errors made by Node's internals can come from another realm (jest's sandbox). */
export function isErrno(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && codes.includes(String(err.code));
}

/** Files the orchestrator writes into a job's folder are the job's only (mode 0600, whatever the umask). */
export const PRIVATE_FILE_MODE = 0o600;
/** A job's folders under FORGE_HOME (mode 0700). */
export const PRIVATE_DIR_MODE = 0o700;

/** Readers never see a half-written file: write a sibling, then rename over the target. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await fs.writeFile(tmp, data, { mode: PRIVATE_FILE_MODE });
  await fs.rename(tmp, file);
}

/**
 * Creates `file` with `data` unless it exists: true when this call created it. Written aside and linked into place, so
 * that the file is never seen half-written, even when the writer is killed midway (an exclusive create then write
 * left an empty record behind, which no reader could parse).
 */
export async function createOnce(file: string, data: string): Promise<boolean> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await fs.writeFile(tmp, data, { mode: PRIVATE_FILE_MODE });
  try {
    await fs.link(tmp, file);
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    if (!isErrno(err, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP')) throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
  // A filesystem without hard links: an exclusive create, then the write.
  try {
    await fs.writeFile(file, data, { flag: 'wx', mode: PRIVATE_FILE_MODE });
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    throw err;
  }
}

// The two below read the small record files of a workspace (launch, exit, claims, markers: under 1 KiB each) and are
// synchronous on purpose: each promise-API read is four thread-pool round trips (open, fstat, read, close), which made
// them the orchestrator's main cost under load (bench/load, 300 queued jobs: 19 of 68 s of main-thread CPU), while a
// synchronous read of a small local file takes microseconds.

/** The file's text, or undefined when it does not exist. For small files only (see above). */
export async function readTextIfExists(file: string): Promise<string | undefined> {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

export async function statIfExists(file: string): Promise<Stats | undefined> {
  return statSync(file, { throwIfNoEntry: false });
}

/** Reads `length` bytes at `position` (fewer at end of file); a missing file reads as empty. */
export async function readRange(file: string, position: number, length: number): Promise<Buffer> {
  let handle: import('node:fs/promises').FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return Buffer.alloc(0);
    throw err;
  }
  try {
    const buf = Buffer.alloc(Math.max(0, length));
    const { bytesRead } = await handle.read(buf, 0, buf.length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

export async function fileSize(file: string): Promise<number> {
  return (await statIfExists(file))?.size ?? 0;
}

/** The last `maxLines` complete-or-partial lines within the last `maxBytes` of a file. */
export async function tailLines(file: string, maxLines: number, maxBytes = 16 * 1024): Promise<string[]> {
  const size = await fileSize(file);
  const start = Math.max(0, size - maxBytes);
  const text = (await readRange(file, start, size - start)).toString('utf8');
  const lines = text.split('\n');
  if (start > 0) lines.shift(); // the first one is probably cut
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines.slice(-maxLines);
}

export interface LineRead {
  lines: string[];
  /** ends[i]: byte offset just after lines[i] (where the next read starts). */
  ends: number[];
}

/**
 * Lines starting at byte `offset`, at most `maxLines` and roughly `maxBytes`. A trailing line without its newline
 * is returned only when `includePartial` (the writer has finished); a single line longer than `maxBytes` is split so
 * that paging always advances.
 */
export async function readLinesFrom(
  file: string,
  offset: number,
  maxLines: number,
  includePartial: boolean,
  maxBytes = 1024 * 1024,
): Promise<LineRead> {
  const buf = await readRange(file, offset, maxBytes);
  const lines: string[] = [];
  const ends: number[] = [];
  let pos = 0;
  while (lines.length < maxLines && pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    if (nl === -1) {
      const full = buf.length === maxBytes && pos === 0; // one giant line: hand out a piece of it
      if (includePartial || full) {
        lines.push(buf.subarray(pos).toString('utf8'));
        pos = buf.length;
        ends.push(offset + pos);
      }
      break;
    }
    lines.push(buf.subarray(pos, nl).toString('utf8'));
    pos = nl + 1;
    ends.push(offset + pos);
  }
  return { lines, ends };
}

/**
 * Calls `place(from, to)` for every regular file under `src`, with `to` its twin under `dst` (folders are made);
 * returns the relative paths (POSIX, sorted). Symlinks are skipped: a trainer must not be able to smuggle host files
 * into the artifact repo or another attempt.
 */
async function eachFile(src: string, dst: string, place: (from: string, to: string) => Promise<void>): Promise<string[]> {
  const done: string[] = [];
  async function walk(rel: string): Promise<void> {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(path.join(src, rel), { withFileTypes: true });
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    await fs.mkdir(path.join(dst, rel), { recursive: true, mode: PRIVATE_DIR_MODE });
    for (const entry of entries) {
      const child = rel ? path.posix.join(rel, entry.name) : entry.name;
      if (entry.isDirectory()) await walk(child);
      else if (entry.isFile()) {
        await place(path.join(src, child), path.join(dst, child));
        done.push(child);
      }
    }
  }
  await walk('');
  return done.sort();
}

/** Copies the regular files and folders of `src` into `dst`; returns their relative paths (POSIX, sorted). */
export async function copyTree(src: string, dst: string): Promise<string[]> {
  return eachFile(src, dst, (from, to) => fs.copyFile(from, to));
}

/**
 * Hard-links the regular files of `src` into `dst` (copies where a link cannot be made, e.g. across file systems),
 * keeping files that `dst` already has: safe to run again after an interruption, since a link appears whole and a
 * copy is made under a temporary name and renamed. Returns the relative paths (POSIX, sorted).
 */
export async function linkTree(src: string, dst: string): Promise<string[]> {
  return eachFile(src, dst, async (from, to) => {
    try {
      await fs.link(from, to);
      return;
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return;
      if (!isErrno(err, 'EXDEV', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK')) throw err;
    }
    if (await statIfExists(to)) return;
    const tmp = `${to}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    await fs.copyFile(from, tmp);
    await fs.rename(tmp, to);
  });
}

/** The entries of a folder as paths; none when it does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).map((name) => path.join(dir, name));
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  }
}
