/**
 * The orchestrator's own Ed25519 identity (DESIGN.md §9): FORGE_HOME/keys/orchestrator.json, mode 0600 in a 0700
 * folder, made on first use (common/secret-file.ts: workers and the API of one host share it). It signs artifact
 * manifests and the elite registry; `GET /identity` serves its did:key.
 */
import path from 'node:path';
import { base64urlnopad } from '@scure/base';
import { z } from 'zod';
import { didKeyFromPublicKey } from '../spec/did-key';
import { generateKeyPair, publicKeyFromSecretKey, type KeyPair } from '../spec/signing';
import { forgeHome } from './paths';
import { loadOrCreateJsonSecret, SecretFileError } from './secret-file';

/** The same `{did, secret_key}` layout as owner key files (cf-keygen). */
const keyFileSchema = z.strictObject({
  did: z.string().startsWith('did:key:'),
  secret_key: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a base64url Ed25519 secret key (32 bytes)'),
});

export function orchestratorKeyFile(home: string = forgeHome()): string {
  return path.join(home, 'keys', 'orchestrator.json');
}

export function nostrKeyFile(home: string = forgeHome()): string {
  return path.join(home, 'keys', 'nostr.json');
}

/** Reads an Ed25519 key file, making it when it does not exist yet. */
export function loadOrCreateKeyFile(file: string): KeyPair {
  const stored = loadOrCreateJsonSecret(file, keyFileSchema, () => {
    const keys = generateKeyPair();
    return { did: keys.did, secret_key: base64urlnopad.encode(keys.secretKey) };
  });
  const secretKey = base64urlnopad.decode(stored.secret_key);
  const publicKey = publicKeyFromSecretKey(secretKey);
  const did = didKeyFromPublicKey(publicKey);
  if (did !== stored.did) throw new SecretFileError(`key file ${file}: its did does not match its secret key`);
  return { secretKey, publicKey, did };
}

const cache = new Map<string, KeyPair>();

/** The orchestrator's key pair (cached per file for the life of the process). */
export function orchestratorKey(home: string = forgeHome()): KeyPair {
  const file = orchestratorKeyFile(home);
  let keys = cache.get(file);
  if (!keys) {
    keys = loadOrCreateKeyFile(file);
    cache.set(file, keys);
  }
  return keys;
}
