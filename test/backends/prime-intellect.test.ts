/**
 * The prime-intellect backend against a local server with Prime Intellect's documented API shapes: a pod that runs
 * the forge agent and the fake trainer, 401, 429 with Retry-After, a pod that vanishes, no offer under the cap.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PrimeIntellectBackend } from '../../activities/backends/prime-intellect/prime-intellect';
import type { Backend, DeploymentRef, DeploymentStatus } from '../../activities/backends/types';
import { parseConfig, type PrimeIntellectBackendConfig } from '../../common/config';
import { trainingJobSpecSchema, type TrainingJobSpec } from '../../jobspec/schema';
import { FakePrimeIntellect, type PiScenario } from '../fakes/prime-intellect';
import { FAKE_TRAINER_SH } from '../fakes/container';
import { makeSignedSpec, type SignedSpec, signedOf } from '../jobspec/fixtures';

const API_KEY = 'pit_secret_0123456789abcdef';

function tmp(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

function config(url: string, extra: object = {}): PrimeIntellectBackendConfig {
  const key = path.join(tmp('pi-key-'), 'key');
  writeFileSync(key, API_KEY, { mode: 0o600 });
  const c = parseConfig({
    backends: {
      pi: {
        kind: 'prime-intellect',
        api_url: url,
        api_key_file: key,
        hourly_usd: 3,
        poll_interval_ms: 50,
        request_timeout_ms: 5000,
        trainers: { ok: { template_id: 'tpl-ok' }, slow: { template_id: 'tpl-slow' } },
        ...extra,
      },
    },
  }).backends.pi;
  if (c?.kind !== 'prime-intellect') throw new Error('not a prime-intellect config');
  return c;
}

function job(image: string, overrides: object = {}): { raw: SignedSpec; spec: TrainingJobSpec } {
  const raw = makeSignedSpec({
    trainer: { image },
    resources: { gpus: 1, gpu_type: 'h100', gpu_mem_gb: 80, cpus: 4, ram_gb: 16, storage_gb: 50, max_hours: 1 },
    backend: { provider: 'pi', max_cost_usd: 20 },
    ...overrides,
  });
  return { raw, spec: trainingJobSpecSchema.parse(raw) };
}

async function until(backend: Backend, ref: DeploymentRef, done: (s: DeploymentStatus) => boolean, ms = 20_000): Promise<DeploymentStatus> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await backend.status(ref);
    if (done(s)) return s;
    if (Date.now() > deadline) throw new Error(`status never matched; last ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const scenario: PiScenario = {
  apiKey: API_KEY,
  offers: [
    { cloudId: 'dear', gpuType: 'H100_80GB', gpuCount: 1, price: 2.9 },
    { cloudId: 'cheap', gpuType: 'H100_80GB', gpuCount: 1, price: 1.9 },
    { cloudId: 'too-dear', gpuType: 'H100_80GB', gpuCount: 1, price: 9 },
    { cloudId: 'busy', gpuType: 'H100_80GB', gpuCount: 1, price: 0.5, stockStatus: 'Unavailable' },
  ],
  templates: {
    'tpl-ok': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', '0.3'] } },
    'tpl-slow': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', '30'] } },
  },
};
const fake = new FakePrimeIntellect(scenario);

beforeAll(() => fake.start());
afterAll(() => fake.stop());
afterEach(() => {
  delete scenario.vanishAfterMs;
  delete scenario.rateLimit;
  delete scenario.provisionMs;
});

test('quote takes the cheapest in-stock offer under the cap; the pod runs the trainer to SUCCEEDED and is deleted on close', async () => {
  // Provisioning long enough that the first status() surely sees it, however slow the machine (CI saw 100 ms pass).
  scenario.provisionMs = 1500;
  const backend = new PrimeIntellectBackend('pi', config(fake.url), tmp('pi-home-'));
  const { raw, spec } = job('ok');
  expect(await backend.quote(spec)).toMatchObject({ available: true, hourlyUsd: 1.9 });

  const ref = await backend.submit(signedOf(raw), 1, { maxHourlyUsd: 2.5 });
  expect(ref).toMatchObject({ backend: 'pi', kind: 'prime-intellect', attempt: 1, data: { price_hr: 1.9, name: `forge-${spec.job_id}-1` } });
  expect(await backend.submit(signedOf(raw), 1)).toEqual(ref);
  const created = fake.pods.get(ref.id)!;
  expect(created.body).toMatchObject({
    pod: { name: `forge-${spec.job_id}-1`, cloudId: 'cheap', gpuType: 'H100_80GB', gpuCount: 1, maxPrice: 2.5, customTemplateId: 'tpl-ok', diskSize: 50, vcpus: 4, memory: 16 },
    provider: { type: 'runpod' },
  });

  expect((await backend.status(ref)).state).toBe('PENDING');
  const done = await until(backend, ref, (s) => s.state === 'SUCCEEDED' || s.state === 'FAILED');
  expect(done).toMatchObject({ state: 'SUCCEEDED', exitCode: 0, progress: { step: 2, maxSteps: 2 } });
  expect(done.costUsd).toBeGreaterThan(0);
  const logs = await backend.logs(ref);
  expect(logs.lines.map((l) => l.line)).toContain('{"event":"forge-agent","exit_code":0}');
  const out = tmp('pi-out-');
  expect(await backend.collectArtifacts(ref, out)).toEqual(['metrics.json']);
  expect(JSON.parse(readFileSync(path.join(out, 'metrics.json'), 'utf8'))).toEqual({ loss: 0.4 });

  await backend.close(ref);
  await backend.close(ref);
  expect(fake.pods.get(ref.id)?.status).toBe('TERMINATED');
  // Every request carried the key in its Authorization header and nowhere else.
  expect(fake.requests.every((r) => r.auth === `Bearer ${API_KEY}`)).toBe(true);
  expect(fake.requests.some((r) => r.body.includes(API_KEY))).toBe(false);
  expect(JSON.stringify(ref)).not.toContain(API_KEY);
});

test('a retried submit adopts the pod its earlier try created (found by name) instead of renting a second', async () => {
  const home = tmp('pi-home-');
  const backend = new PrimeIntellectBackend('pi', config(fake.url), home);
  const { raw } = job('slow');
  const ref = await backend.submit(signedOf(raw), 1);
  const before = fake.pods.size;
  // A second worker with no record of it (another FORGE_HOME).
  const other = new PrimeIntellectBackend('pi', config(fake.url), tmp('pi-home-'));
  expect((await other.submit(signedOf(raw), 1)).id).toBe(ref.id);
  expect(fake.pods.size).toBe(before);
  await backend.close(ref);
});

test('a pod that vanishes is LOST', async () => {
  scenario.vanishAfterMs = 400;
  const backend = new PrimeIntellectBackend('pi', config(fake.url), tmp('pi-home-'));
  const { raw } = job('slow');
  const ref = await backend.submit(signedOf(raw), 1);
  await until(backend, ref, (s) => s.state === 'RUNNING');
  const s = await until(backend, ref, (x) => x.state === 'FAILED');
  expect(s.failure).toEqual({ class: 'LOST', detail: `pod ${ref.id} vanished from Prime Intellect (404)` });
  expect(s.costUsd).toBeGreaterThan(0);
  await backend.close(ref); // a 404 on delete is fine
});

test('429 with Retry-After is waited out; 401 is REJECTED and unhealthy, without the key in any message', async () => {
  scenario.rateLimit = { count: 2, retryAfterSeconds: 1 };
  const backend = new PrimeIntellectBackend('pi', config(fake.url), tmp('pi-home-'));
  const started = Date.now();
  expect(await backend.quote(job('ok').spec)).toMatchObject({ available: true });
  expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
  expect(fake.requests.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(2);

  const wrong = config(fake.url, { api_key: 'pit_wrong_key_000000', api_key_file: undefined });
  const bad = new PrimeIntellectBackend('pi', wrong, tmp('pi-home-'));
  const h = await bad.health();
  expect(h.ok).toBe(false);
  expect(h.detail).toMatch(/credentials refused .*HTTP 401: Invalid API key/);
  expect(h.detail).not.toContain('pit_wrong_key_000000');
  await expect(bad.quote(job('ok').spec)).rejects.toMatchObject({ failureClass: 'REJECTED' });
  expect(await backend.health()).toMatchObject({ ok: true });
});

test('no offer under the cap: unavailable to quote, NO_CAPACITY to submit; no template for the image: REJECTED', async () => {
  const backend = new PrimeIntellectBackend('pi', config(fake.url, { hourly_usd: 1 }), tmp('pi-home-'));
  const { raw, spec } = job('ok');
  expect(await backend.quote(spec)).toMatchObject({ available: false, detail: 'no H100_80GB×1 offer at or under the cap $1/h on Prime Intellect (cheapest $1.90/h)' });
  await expect(backend.submit(signedOf(raw), 1)).rejects.toMatchObject({ failureClass: 'NO_CAPACITY' });
  await expect(backend.quote(job('nope').spec)).rejects.toMatchObject({ failureClass: 'REJECTED', message: expect.stringMatching(/no Prime Intellect template configured for trainer image "nope"/) });
  expect(() => parseConfig({ backends: { pi: { kind: 'prime-intellect', hourly_usd: 1, api_key: 'k', trainers: { x: {} } } } })).toThrow(/backends\.pi\.trainers\.x\.template_id/);
});
