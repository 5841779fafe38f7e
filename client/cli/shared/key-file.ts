/** Owner key files: written by cf-keygen, read to sign the API requests. */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { base64urlnopad } from '@scure/base';
import { z } from 'zod';
import { forgeHome } from '../../../common/paths';
import { didKeyFromPublicKey } from '../../../jobspec/did-key';
import { publicKeyFromSecretKey, type KeyPair } from '../../../jobspec/signing';
import { CliError, EXIT } from './exit';

/** `{did, secret_key}` with the 32-byte Ed25519 secret in base64url; mode 0600 in a 0700 folder. */
const keyFileSchema = z.object({
  did: z.string().startsWith('did:key:'),
  secret_key: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a base64url Ed25519 secret key (32 bytes)'),
});

export function defaultKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(forgeHome(env), 'keys', 'owner.json');
}

export function writeKeyFile(file: string, keys: KeyPair, overwrite: boolean): void {
  if (existsSync(file) && !overwrite) throw new CliError(EXIT.USAGE, `${file} exists; pass --force to replace it (the old key is lost)`);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const body = `${JSON.stringify({ did: keys.did, secret_key: base64urlnopad.encode(keys.secretKey) }, null, 2)}\n`;
  // Write then rename, so a reader never sees half a key; mode 0600 whatever the umask.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, body, { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

export function readKeyFile(file: string): KeyPair {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(EXIT.USAGE, `cannot read key file ${file}: ${(err as Error).message} (make one with cf-keygen)`);
  }
  if ((statSync(file).mode & 0o077) !== 0) {
    throw new CliError(EXIT.USAGE, `key file ${file} is readable by others; run: chmod 600 ${file}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CliError(EXIT.USAGE, `key file ${file} is not JSON`);
  }
  const parsed = keyFileSchema.safeParse(json);
  if (!parsed.success) throw new CliError(EXIT.USAGE, `key file ${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const secretKey = base64urlnopad.decode(parsed.data.secret_key);
  const publicKey = publicKeyFromSecretKey(secretKey);
  const did = didKeyFromPublicKey(publicKey);
  if (did !== parsed.data.did) throw new CliError(EXIT.USAGE, `key file ${file}: its did does not match its secret key`);
  return { secretKey, publicKey, did };
}
