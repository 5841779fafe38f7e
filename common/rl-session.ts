/**
 * RL session tokens, derived where they are used and never carried through Temporal: the bearer token of a trainer
 * session's weights and rollout uploads is HMAC-SHA256(session key, "forge-rl-session/v1\n" + session id). The session
 * id is public (it is in the workflow's history); the key is a secret every process that needs the token holds from
 * its own environment: the GRPO trainer hosts (they hand the token to their policy process), the rollout workers
 * (downloads, uploads) and the orchestrator workers (collecting the final policy).
 *
 * The key: FORGE_RL_SESSION_KEY (32 characters or more), else the file FORGE_RL_SESSION_KEY_FILE, else
 * FORGE_HOME/secrets/rl-session.key, made (32 random bytes, hex, mode 0600) by the first process that needs it; that
 * default serves one machine (`npm start`), several machines set the same FORGE_RL_SESSION_KEY from a secret.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const RL_SESSION_KEY_ENV = 'FORGE_RL_SESSION_KEY';
export const RL_SESSION_KEY_FILE_ENV = 'FORGE_RL_SESSION_KEY_FILE';
const MIN_KEY_CHARS = 32;

export class SessionKeyError extends Error {}

export function defaultSessionKeyFile(home: string): string {
  return path.join(home, 'secrets', 'rl-session.key');
}

function checked(key: string, where: string): Buffer {
  const k = key.trim();
  if (k.length < MIN_KEY_CHARS) {
    throw new SessionKeyError(`${where} holds ${k.length} characters: the RL session key needs ${MIN_KEY_CHARS} or more (e.g. \`openssl rand -hex 32\`)`);
  }
  return Buffer.from(k, 'utf8');
}

function readKeyFile(file: string, where: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SessionKeyError(`cannot read the RL session key ${file} (${where}): ${(err as Error).message}`);
  }
  return checked(text, `${file} (${where})`);
}

/** Creates the default key file once (exclusively: processes racing to create it all read the one that won). */
function ensureDefaultKey(file: string): Buffer {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  return readKeyFile(file, 'the default under FORGE_HOME');
}

/** The session key of this process (see the module comment); throws SessionKeyError naming the setting. */
export function loadSessionKey(env: NodeJS.ProcessEnv, home: string): Buffer {
  // Set but empty (a compose file's `${FORGE_RL_SESSION_KEY:-}` the operator did not fill): refused, never a default.
  const inline = env[RL_SESSION_KEY_ENV];
  if (inline !== undefined) return checked(inline, RL_SESSION_KEY_ENV);
  const file = env[RL_SESSION_KEY_FILE_ENV];
  if (file !== undefined) return readKeyFile(file, RL_SESSION_KEY_FILE_ENV);
  return ensureDefaultKey(defaultSessionKeyFile(home));
}

/** loadSessionKey once, when first needed (a worker that never serves RL never creates the key file). */
export function sessionKeyLoader(env: NodeJS.ProcessEnv, home: string): () => Buffer {
  let key: Buffer | undefined;
  return () => (key ??= loadSessionKey(env, home));
}

/** The bearer token of a trainer session's weights and uploads. */
export function sessionToken(key: Buffer, sessionId: string): string {
  return createHmac('sha256', key).update(`forge-rl-session/v1\n${sessionId}`).digest('base64url');
}

/** The token of a trainer endpoint as a rollout or the collect activity receives it. */
export function endpointToken(key: () => Buffer, trainer: { sessionId?: string; token?: string }): string {
  if (trainer.token) return trainer.token; // a lease from a host that predates derived tokens (an old history)
  if (!trainer.sessionId) throw new SessionKeyError('the trainer endpoint names no sessionId: cannot derive its token');
  return sessionToken(key(), trainer.sessionId);
}
