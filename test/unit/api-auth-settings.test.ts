/** FORGE_API_AUTH's default, the allowed Host names, and the replay guard (client/api/auth.ts, host-check.ts, env.ts). */
import { defaultAuthMode, ReplayGuard } from '../../client/api/auth';
import { readApiSettings } from '../../client/api/env';
import { allowedHostSet, hostName } from '../../client/api/host-check';

test('owners auth is the default whenever the API listens beyond loopback', () => {
  for (const h of ['127.0.0.1', '127.0.0.2', 'localhost', '::1', '[::1]']) expect([h, defaultAuthMode(h)]).toEqual([h, 'token']);
  for (const h of ['0.0.0.0', '::', '10.0.0.5', 'forge.example', '192.168.1.2']) expect([h, defaultAuthMode(h)]).toEqual([h, 'owners']);
  expect(readApiSettings({}).api.FORGE_API_AUTH).toBeUndefined();
  expect(readApiSettings({ FORGE_API_AUTH: 'owners' }).api.FORGE_API_AUTH).toBe('owners');
  expect(() => readApiSettings({ FORGE_API_AUTH: 'none' })).toThrow(/FORGE_API_AUTH/);
});

test('Host names: loopback, the listen host (not a wildcard), and FORGE_API_ALLOWED_HOSTS', () => {
  expect(hostName('LocalHost:8080')).toBe('localhost');
  expect(hostName('[::1]:8080')).toBe('[::1]');
  expect(hostName('evil.example')).toBe('evil.example');
  expect(hostName('a b')).toBeUndefined();
  expect(hostName('')).toBeUndefined();
  expect([...allowedHostSet('0.0.0.0', [])].sort()).toEqual(['127.0.0.1', '[::1]', 'localhost']);
  expect(allowedHostSet('10.0.0.5', []).has('10.0.0.5')).toBe(true);
  const extra = readApiSettings({ FORGE_API_ALLOWED_HOSTS: ' Forge.Example , api.internal,fd00::1' }).api.FORGE_API_ALLOWED_HOSTS;
  expect(extra).toEqual(['Forge.Example', 'api.internal', 'fd00::1']);
  const set = allowedHostSet('::', extra);
  expect(set.has('forge.example') && set.has('api.internal') && set.has('[fd00::1]')).toBe(true);
  expect(() => readApiSettings({ FORGE_API_ALLOWED_HOSTS: 'https://forge.example/' })).toThrow(/FORGE_API_ALLOWED_HOSTS/);
});

test('a signature is accepted once within its window, and forgotten after it', () => {
  const guard = new ReplayGuard(300, 3);
  const sig = Uint8Array.of(1, 2, 3);
  expect(guard.remember('did:key:zA', 1000, sig, 1000)).toBe(true);
  expect(guard.remember('did:key:zA', 1000, sig, 1200)).toBe(false);
  expect(guard.remember('did:key:zB', 1000, sig, 1200)).toBe(true);
  expect(guard.remember('did:key:zA', 1001, sig, 1200)).toBe(true);
  // Full: a new signature is refused (503) rather than forgetting one still inside its window.
  expect(() => guard.remember('did:key:zC', 1000, sig, 1200)).toThrow(/more than 3 signed requests/);
  // Past their window the old ones could not be accepted anyway (created too old): they are dropped.
  expect(guard.remember('did:key:zC', 1400, sig, 1400)).toBe(true);
});
