/**
 * Small JSON files holding a secret (the orchestrator's keys): mode 0600 in a 0700 folder, made on first use. Two
 * processes making one at once end up with the same contents: the file is published with link(2), which fails when
 * another process was first, and then that one's file is read.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';

export class SecretFileError extends Error {
  override name = 'SecretFileError';
}

/** Reads `file` (checked by `schema`); ENOENT when it does not exist. */
export function readJsonSecret<S extends z.ZodType>(file: string, schema: S): z.output<S> {
  return read(file, schema);
}

function read<S extends z.ZodType>(file: string, schema: S): z.output<S> {
  if ((statSync(file).mode & 0o077) !== 0) throw new SecretFileError(`secret file ${file} is readable by others; run: chmod 600 ${file}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new SecretFileError(`secret file ${file} is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new SecretFileError(`secret file ${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Reads `file` (checked by `schema`), or writes `make()` there first when it does not exist. */
export function loadOrCreateJsonSecret<S extends z.ZodType>(file: string, schema: S, make: () => z.input<S>): z.output<S> {
  try {
    return read(file, schema);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(make(), null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600); // whatever the umask
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(tmp);
  }
  return read(file, schema);
}
