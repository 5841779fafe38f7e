/** RL session tokens: derived from the session id under the RL session key (common/rl-session.ts). */
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { defaultSessionKeyFile, endpointToken, loadSessionKey, SessionKeyError, sessionToken } from '../../common/rl-session';
import { uploadId, dispatchedId } from '../../activities/rl/types';
import { tempDir } from '../helpers/forge';

const KEY = 'k'.repeat(40);

test('a token is an HMAC of the session id: the same everywhere the key is, different per session and per key', () => {
  const key = Buffer.from(KEY);
  const t = sessionToken(key, 'job-a-grpo-1.g1.0123abcd');
  expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(sessionToken(Buffer.from(KEY), 'job-a-grpo-1.g1.0123abcd')).toBe(t);
  expect(sessionToken(key, 'job-a-grpo-1.g1.0123abce')).not.toBe(t);
  expect(sessionToken(Buffer.from('j'.repeat(40)), 'job-a-grpo-1.g1.0123abcd')).not.toBe(t);
  expect(endpointToken(() => key, { sessionId: 'job-a-grpo-1.g1.0123abcd' })).toBe(t);
  // A lease from before derived tokens carries its token: used as it is.
  expect(endpointToken(() => key, { token: 'legacy-token' })).toBe('legacy-token');
  expect(() => endpointToken(() => key, {})).toThrow(SessionKeyError);
});

test('the key: FORGE_RL_SESSION_KEY, else FORGE_RL_SESSION_KEY_FILE, else one made once under FORGE_HOME (0600)', () => {
  const home = tempDir('forge-rl-key-');
  expect(loadSessionKey({ FORGE_RL_SESSION_KEY: KEY }, home).toString()).toBe(KEY);
  const file = path.join(home, 'key.txt');
  writeFileSync(file, `${'f'.repeat(64)}\n`);
  expect(loadSessionKey({ FORGE_RL_SESSION_KEY_FILE: file }, home).toString()).toBe('f'.repeat(64));
  const made = loadSessionKey({}, home);
  expect(made.toString()).toMatch(/^[0-9a-f]{64}$/);
  expect(statSync(defaultSessionKeyFile(home)).mode & 0o777).toBe(0o600);
  expect(statSync(path.dirname(defaultSessionKeyFile(home))).mode & 0o777).toBe(0o700);
  expect(loadSessionKey({}, home).equals(made)).toBe(true); // made once, then read
});

test('a short or empty key is refused, naming the setting', () => {
  const home = tempDir('forge-rl-key-');
  expect(() => loadSessionKey({ FORGE_RL_SESSION_KEY: 'short' }, home)).toThrow(/FORGE_RL_SESSION_KEY holds 5 characters/);
  // Set but empty (an unfilled `${FORGE_RL_SESSION_KEY:-}`): refused, not silently replaced by a default.
  expect(() => loadSessionKey({ FORGE_RL_SESSION_KEY: '' }, home)).toThrow(/32 or more/);
  expect(() => loadSessionKey({ FORGE_RL_SESSION_KEY_FILE: path.join(home, 'nope') }, home)).toThrow(/cannot read the RL session key/);
});

test('each attempt of a rollout uploads under its own id, and the dispatched id is recovered from it', () => {
  const id = 'job-a-grpo-1.s3.p2.v2.0123456789abcdef0123';
  expect(uploadId(id, 1)).toBe(`${id}.a1`);
  expect(uploadId(id, 2)).not.toBe(uploadId(id, 1));
  expect(dispatchedId(uploadId(id, 12))).toBe(id);
});
