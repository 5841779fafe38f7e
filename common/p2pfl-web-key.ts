/**
 * Keys for P2PFL's web logger (issue 7): the p2pfl backend hands each attempt's experiment a key that the API's
 * /jobs/:id/p2pfl/* endpoints accept for that job only. A key is `<attempt>.<HMAC-SHA256(secret, job, attempt)>`, so
 * the API checks it without any record of issued keys; the secret is FORGE_HOME/keys/p2pfl-web-logger.json (0600,
 * made on first use, common/secret-file.ts), shared by the workers and the API of one host like the orchestrator key.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import { base64urlnopad } from '@scure/base';
import { z } from 'zod';
import { forgeHome } from './paths';
import { loadOrCreateJsonSecret } from './secret-file';

const secretFileSchema = z.strictObject({
  secret: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be 32 bytes in base64url'),
});

const KEY_PATTERN = /^([1-9][0-9]{0,5})\.([A-Za-z0-9_-]{43})$/;

export function p2pflWebSecretFile(home: string = forgeHome()): string {
  return path.join(home, 'keys', 'p2pfl-web-logger.json');
}

const cache = new Map<string, Uint8Array>();

function secret(home: string): Uint8Array {
  const file = p2pflWebSecretFile(home);
  let s = cache.get(file);
  if (!s) {
    s = base64urlnopad.decode(loadOrCreateJsonSecret(file, secretFileSchema, () => ({ secret: base64urlnopad.encode(randomBytes(32)) })).secret);
    cache.set(file, s);
  }
  return s;
}

function mac(home: string, jobId: string, attempt: number): Uint8Array {
  return createHmac('sha256', secret(home)).update(`p2pfl-web-logger\n${jobId}\n${attempt}`, 'utf8').digest();
}

/** The key of one attempt of one job. */
export function p2pflWebKey(home: string, jobId: string, attempt: number): string {
  return `${attempt}.${base64urlnopad.encode(mac(home, jobId, attempt))}`;
}

/** The attempt a key was issued for when it is this job's, else undefined (constant time in the MAC). */
export function verifyP2pflWebKey(home: string, jobId: string, key: string): number | undefined {
  const m = KEY_PATTERN.exec(key);
  if (!m) return undefined;
  const attempt = Number(m[1]);
  let given: Uint8Array;
  try {
    given = base64urlnopad.decode(m[2] ?? '');
  } catch {
    return undefined; // stray bits in the last character
  }
  return timingSafeEqual(given, mac(home, jobId, attempt)) ? attempt : undefined;
}
