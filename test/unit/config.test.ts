import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, defaultConfig, loadConfig, outageSeconds, parseConfig } from '../../common/config';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';

test('the default config runs the reference trainer on one local backend (and P2PFL when its venv is installed)', () => {
  const c = defaultConfig(false);
  expect(Object.keys(c.backends)).toEqual(['local']);
  const fed = defaultConfig(true).backends.p2pfl;
  expect(fed).toMatchObject({ kind: 'p2pfl', nodes: 2, rounds: 2, protocol: 'memory', enabled: true });
  expect(fed?.trainers[DEFAULT_TRAINER_IMAGE]?.command).toEqual([expect.stringMatching(/\.tools\/p2pfl-venv\/bin\/python$/), '-m', 'forge_trainer.p2pfl_experiment']);
  expect(c.backends.local?.trainers[DEFAULT_TRAINER_IMAGE]?.command[0]).toMatch(/\.tools\/venv\/bin\/forge-trainer$/);
  expect(c.retry_backoff).toEqual({ initial_seconds: 10, max_seconds: 600 });
  expect(c.allowed_owners).toBeUndefined();
});

test('several local backends under different names, with defaults filled in', () => {
  const c = parseConfig({
    backends: {
      a: { kind: 'local', trainers: { x: { command: ['/bin/true'] } }, hourly_usd: 2, max_concurrent: 4 },
      b: { kind: 'local', trainers: {} },
    },
  });
  expect(c.backends.a).toMatchObject({ hourly_usd: 2, max_concurrent: 4, enabled: true });
  expect(c.backends.b).toMatchObject({ hourly_usd: 0 });
  expect(c.backends.a?.trainers.x?.env).toEqual({});
});

test.each([
  [{ backends: {} }, /backends: configure at least one backend/],
  [{ backends: { a: { kind: 'local', trainer: {} } } }, /backends\.a.*trainer/],
  [{ backends: { a: { kind: 'cloud' } } }, /backends\.a\.kind/],
  [{ backends: { A: { kind: 'local' } } }, /backends\.A/],
  [{ backends: { a: { kind: 'local', hourly_usd: -1 } } }, /backends\.a\.hourly_usd/],
  [{ backends: { a: { kind: 'local', trainers: { x: { command: [] } } } } }, /backends\.a\.trainers\.x\.command/],
  [{ backends: { a: { kind: 'local' } }, retry_backoff: { initial_seconds: 5, max_seconds: 1 } }, /retry_backoff\.max_seconds/],
  [{ backends: { a: { kind: 'local' } }, allowed_owners: ['bob'] }, /allowed_owners\.0/],
  [{ backends: { a: { kind: 'local' } }, retries: 3 }, /retries/],
  [{ backends: { a: { kind: 'local' } }, reaper: { earlier_tags: ['A1B2C3D4'] } }, /reaper\.earlier_tags\.0.*8 lowercase hex digits.*cf-keygen --orchestrator/],
])('a bad config is refused, naming the key: %j', (value, message) => {
  expect(() => parseConfig(value)).toThrow(ConfigError);
  expect(() => parseConfig(value)).toThrow(message);
});

test('FORGE_CONFIG: unreadable or not JSON says which file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cfg-'));
  const bad = path.join(dir, 'bad.json');
  writeFileSync(bad, '{ nope');
  expect(() => loadConfig({ FORGE_CONFIG: bad })).toThrow(/bad\.json: not valid JSON/);
  expect(() => loadConfig({ FORGE_CONFIG: path.join(dir, 'missing.json') })).toThrow(/missing\.json: cannot read it/);
});

test('backend_outage_seconds: 1800 by default, set at the top level, overridden by a backend of its own', () => {
  expect(outageSeconds(defaultConfig(), 'local')).toBe(1800);
  const c = parseConfig({
    backend_outage_seconds: 60,
    backends: {
      a: { kind: 'local' },
      b: { kind: 'local', backend_outage_seconds: 5 },
      pi: { kind: 'prime-intellect', hourly_usd: 3, api_key: 'k', backend_outage_seconds: 900 },
    },
  });
  expect(['a', 'b', 'pi', 'unknown'].map((name) => outageSeconds(c, name))).toEqual([60, 5, 900, 60]);
  expect(() => parseConfig({ backend_outage_seconds: 0, backends: { a: { kind: 'local' } } })).toThrow(/backend_outage_seconds/);
});

test('history_events_per_run: 1000 by default, at least 100, a whole number', () => {
  expect(defaultConfig().history_events_per_run).toBe(1000);
  const backends = { a: { kind: 'local' } };
  expect(parseConfig({ history_events_per_run: 100, backends }).history_events_per_run).toBe(100);
  for (const bad of [99, 250.5, '500']) expect(() => parseConfig({ history_events_per_run: bad, backends })).toThrow(/history_events_per_run/);
});
