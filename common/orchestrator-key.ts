/**
 * The orchestrator's own Ed25519 identity: FORGE_ORCHESTRATOR_KEY_FILE, default FORGE_HOME/keys/orchestrator.json,
 * mode 0600 in a 0700 folder. It signs artifact manifests and the elite registry; `GET /identity` serves its did:key.
 *
 * One identity for every replica: it is provisioned once (`cf-keygen --orchestrator`, or the `setup` role with
 * `--create-orchestrator-key`) and handed to each replica (a shared volume, a Kubernetes Secret). A replica never makes
 * one of its own — it would sign manifests no other replica accepts — except in the embedded stack (`npm start`, the
 * test harnesses: FORGE_EMBEDDED=1), where one process tree is the whole orchestrator and the key is made on first use.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { base64urlnopad } from '@scure/base';
import { z } from 'zod';
import { didKeyFromPublicKey } from '../jobspec/did-key';
import { generateKeyPair, publicKeyFromSecretKey, type KeyPair } from '../jobspec/signing';
import { forgeHome } from './paths';
import { loadOrCreateJsonSecret, readJsonSecret, SecretFileError } from './secret-file';

/** The same `{did, secret_key}` layout as owner key files (cf-keygen). */
const keyFileSchema = z.strictObject({
  did: z.string().startsWith('did:key:'),
  secret_key: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a base64url Ed25519 secret key (32 bytes)'),
});

/**
 * The installation tag of an orchestrator identity (its did:key): eight hex digits (INSTALLATION_TAG) in the
 * provider-visible name of each remote deployment, so that installations sharing a provider account tell theirs apart
 * (activities/backends/installation.ts). Short enough for provider names; two installations collide 1 in 4·10⁹.
 */
export function installationTag(orchestratorDid: string): string {
  return createHash('sha256').update(`forge-installation:${orchestratorDid}`).digest('hex').slice(0, 8);
}

/** The command that provisions the key, as error messages and docs name it. */
export const PROVISION_KEY_COMMAND = 'cf-keygen --orchestrator';

/** The embedded stack (npm start, test harnesses) makes what a replica must be given: FORGE_EMBEDDED=1. */
export function isEmbedded(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.FORGE_EMBEDDED === '1';
}

export function orchestratorKeyFile(home: string = forgeHome(), env: NodeJS.ProcessEnv = process.env): string {
  return env.FORGE_ORCHESTRATOR_KEY_FILE || path.join(home, 'keys', 'orchestrator.json');
}

export function nostrKeyFile(home: string = forgeHome()): string {
  return path.join(home, 'keys', 'nostr.json');
}

export class OrchestratorKeyMissingError extends SecretFileError {
  override name = 'OrchestratorKeyMissingError';
}

export function missingKeyMessage(file: string): string {
  return (
    `no orchestrator key at ${file} (FORGE_ORCHESTRATOR_KEY_FILE, default $FORGE_HOME/keys/orchestrator.json): every replica ` +
    `must use the one provisioned identity, and none makes its own. Provision it once with \`${PROVISION_KEY_COMMAND}\` ` +
    `(or the setup role with --create-orchestrator-key) and give that file to every replica (a shared volume, or the ` +
    'Kubernetes Secret forge-orchestrator-key; docs/operations.md "The orchestrator identity"); only the embedded stack ' +
    '(npm start, FORGE_EMBEDDED=1) makes one itself'
  );
}

function toKeyPair(stored: z.output<typeof keyFileSchema>, file: string): KeyPair {
  const secretKey = base64urlnopad.decode(stored.secret_key);
  const publicKey = publicKeyFromSecretKey(secretKey);
  const did = didKeyFromPublicKey(publicKey);
  if (did !== stored.did) throw new SecretFileError(`key file ${file}: its did does not match its secret key`);
  return { secretKey, publicKey, did };
}

/** Reads an Ed25519 key file, making it when it does not exist yet. */
export function loadOrCreateKeyFile(file: string): KeyPair {
  const stored = loadOrCreateJsonSecret(file, keyFileSchema, () => {
    const keys = generateKeyPair();
    return { did: keys.did, secret_key: base64urlnopad.encode(keys.secretKey) };
  });
  return toKeyPair(stored, file);
}

/** Reads an Ed25519 key file; OrchestratorKeyMissingError (saying how to provision it) when it does not exist. */
export function loadKeyFile(file: string): KeyPair {
  try {
    return toKeyPair(readJsonSecret(file, keyFileSchema), file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new OrchestratorKeyMissingError(missingKeyMessage(file));
    throw err;
  }
}

/** The operator's provisioning step: makes the key file unless it exists; says which. */
export function provisionOrchestratorKey(file: string): { keys: KeyPair; created: boolean } {
  const existed = existsSync(file);
  return { keys: loadOrCreateKeyFile(file), created: !existed };
}

const cache = new Map<string, KeyPair>();

/**
 * The orchestrator's key pair (cached per file for the life of the process). Made on first use only in the embedded
 * stack; elsewhere a missing file is an OrchestratorKeyMissingError.
 */
export function orchestratorKey(home: string = forgeHome(), env: NodeJS.ProcessEnv = process.env): KeyPair {
  const file = orchestratorKeyFile(home, env);
  let keys = cache.get(file);
  if (!keys) {
    keys = isEmbedded(env) ? loadOrCreateKeyFile(file) : loadKeyFile(file);
    cache.set(file, keys);
  }
  return keys;
}
