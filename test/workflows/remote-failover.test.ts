/**
 * Remote backends inside the trainingJob workflow, against a real Temporal dev server and local servers that speak
 * the Akash Console, Akash provider and Prime Intellect APIs: failover akash → prime-intellect → local with costs
 * and reasons, nothing left open, no credential anywhere in the job's history; close on cancel; cost-aware admission.
 */
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { agentToken } from '../../activities/backends/remote/remote-agent-script';
import { parseConfig, type ForgeConfig } from '../../common/config';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import type { JobStatus } from '../../workflows/messages';
import { ForgeCostUsd } from '../../workflows/search-attributes';
import { FakeAkashConsole } from '../fakes/akash-console';
import { FakeAkashProvider } from '../fakes/akash-provider';
import { FakePrimeIntellect } from '../fakes/prime-intellect';
import { http as request, startApi, type ApiHarness } from '../api/harness';
import { FAKE_TRAINER, fakeTrainer, startJob, startWorker, states, testClient, waitForStatus, type RunningWorker } from '../helpers/forge';
import { makeSignedSpec } from '../jobspec/fixtures';

const TQ = 'test-remote-failover';
const AKASH_KEY = 'akash-console-key-SECRET-7f3a9c';
const PI_KEY = 'pit_prime-key-SECRET-41d8e2';
const OWNER = 'akash1owner000000000000000000000000000000000';
const PROVIDER = 'akash1prov00000000000000000000000000000000000';
const slow = { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER, 'ok', '30'] } };

const provider = new FakeAkashProvider(PROVIDER, { 'forge/trainer': slow });
const akash = new FakeAkashConsole({ apiKey: AKASH_KEY, owner: OWNER, providers: [provider], bids: [{ provider: PROVIDER, amount: 500 }] });
const pi = new FakePrimeIntellect({
  apiKey: PI_KEY,
  offers: [{ cloudId: 'c1', gpuType: 'CPU_NODE', gpuCount: 1, price: 1.5 }],
  templates: { 'tpl-trainer': slow },
  provisionMs: 100,
});
/** An API that accepts connections and never answers. */
const hung = http.createServer(() => undefined);
const home = mkdtempSync(path.join(os.tmpdir(), 'forge-remote-'));
let config: ForgeConfig;
let worker: RunningWorker | undefined;
let client: Client;
let closeClient: (() => Promise<void>) | undefined;

beforeAll(async () => {
  await provider.start();
  await Promise.all([akash.start(), pi.start(), new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve))]);
  const hungPort = (hung.address() as { port: number }).port;
  config = parseConfig({
    backends: {
      akash: {
        kind: 'akash',
        mode: 'console',
        hourly_usd: 2,
        akt_usd: 3,
        poll_interval_ms: 100,
        request_timeout_ms: 5000,
        bid_timeout_seconds: 5,
        console: { url: akash.url, api_key: AKASH_KEY },
        trainers: { [DEFAULT_TRAINER_IMAGE]: { image: 'forge/trainer' } },
      },
      'prime-intellect': {
        kind: 'prime-intellect',
        api_url: pi.url,
        api_key: PI_KEY,
        hourly_usd: 3,
        poll_interval_ms: 100,
        request_timeout_ms: 5000,
        trainers: { [DEFAULT_TRAINER_IMAGE]: { template_id: 'tpl-trainer' } },
      },
      'pi-hung': { kind: 'prime-intellect', api_url: `http://127.0.0.1:${hungPort}`, api_key: PI_KEY, hourly_usd: 3, request_timeout_ms: 60_000 },
      local: { kind: 'local', hourly_usd: 0.5, poll_interval_ms: 100, trainers: { [DEFAULT_TRAINER_IMAGE]: { command: fakeTrainer('ok', 0.3) } } },
      pricey: { kind: 'local', hourly_usd: 36_000, poll_interval_ms: 100, trainers: { [DEFAULT_TRAINER_IMAGE]: { command: fakeTrainer('ok', 0.3) } } },
    },
    retry_backoff: { initial_seconds: 0.2, max_seconds: 1 },
    follow_heartbeat_seconds: 3,
    admission_poll_seconds: 0.5,
    // This file is about backends and failover; fake trainers make no model to integrate.
    results: { enabled: false },
  });
  worker = await startWorker(config, home, TQ);
  const c = await testClient();
  client = c.client;
  closeClient = () => c.connection.close();
});

afterAll(async () => {
  await worker?.stop();
  await closeClient?.();
  await Promise.all([akash.stop(), pi.stop()]);
  hung.closeAllConnections();
  hung.close();
  await provider.stop();
});

afterEach(() => {
  delete akash.scenario.leaseDiesAfterMs;
  delete pi.scenario.vanishAfterMs;
});

/** The history as text with every base64 payload decoded next to it. */
function historyText(history: unknown): string {
  const json = JSON.stringify(history);
  const decoded = [...json.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8'));
  expect(decoded.length).toBeGreaterThan(20);
  return `${json}\n${decoded.join('\n')}`;
}

const spec = (backend: object) => makeSignedSpec({ backend: { max_cost_usd: 5, ...backend } });

test('done when: akash (lease dies) → prime-intellect (pod vanishes) → local completes; three attempts with costs and reasons, nothing left open, no secret in the history', async () => {
  akash.scenario.leaseDiesAfterMs = 500;
  pi.scenario.vanishAfterMs = 500;
  // A spec that names a region keeps its own order: provider, then fallbacks.
  const s = spec({ provider: 'akash', fallbacks: ['prime-intellect', 'local'], region: 'us-east' });
  const handle = await startJob(client, TQ, s);
  const status = (await handle.result()) as JobStatus;

  expect(status.state).toBe('COMPLETED');
  expect(status.attempt).toBe(3);
  expect(status.backend).toBe('local');
  expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'FAILED', 'RETRY', 'SUBMITTED', 'RUNNING', 'FAILED', 'RETRY', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
  expect(status.deployments.map((d) => [d.attempt, d.backend, d.state, d.closed])).toEqual([
    [1, 'akash', 'FAILED', true],
    [2, 'prime-intellect', 'FAILED', true],
    [3, 'local', 'SUCCEEDED', true],
  ]);
  for (const d of status.deployments) expect(d.cost_usd).toBeGreaterThan(0);
  expect(status.cost_usd).toBeCloseTo(status.deployments.reduce((sum, d) => sum + d.cost_usd, 0), 10);
  expect(status.cost_usd).toBeLessThan(5);
  expect(status.errors.map((e) => [e.class, e.backend, e.attempt])).toEqual([
    ['LOST', 'akash', 1],
    ['LOST', 'prime-intellect', 2],
  ]);
  expect(status.errors[0]?.detail).toMatch(/lease with provider akash1prov\w+ on deployment \d+ ended/);
  expect(status.errors[1]?.detail).toMatch(/pod pod\d+ vanished from Prime Intellect \(404\)/);
  const retries = status.transitions.filter((t) => t.state === 'RETRY').map((t) => t.reason);
  expect(retries).toEqual([expect.stringMatching(/LOST \(failover\) .* → prime-intellect$/), expect.stringMatching(/LOST \(failover\) .* → local$/)]);

  const desc = await handle.describe();
  expect(desc.typedSearchAttributes.get(ForgeCostUsd)).toBeCloseTo(status.cost_usd, 10);

  // Nothing left open or running on the first two.
  expect(akash.open).toEqual([]);
  expect(provider.running).toBe(0);
  expect(pi.live).toEqual([]);
  const deleted = pi.requests.filter((r) => r.method === 'DELETE').map((r) => r.path);
  expect(deleted).toEqual([`/api/v1/pods/${status.deployments[1]!.id}`]);

  // No credential (nor the agent tokens derived from them) anywhere in the job's history: every payload (inputs,
  // results, failures, memo, search attributes, markers) is base64 in the history JSON, so decode them all first.
  const history = historyText(await handle.fetchHistory());
  const secrets = [AKASH_KEY, PI_KEY, agentToken(AKASH_KEY, 'akash', s.job_id, 1), agentToken(PI_KEY, 'prime-intellect', s.job_id, 2)];
  for (const secret of secrets) expect(history).not.toContain(secret);
  // The search ran over the real thing: decoded payloads of all three attempts are in it.
  expect(history).toContain('"backend":"prime-intellect"');
  expect(history).toContain('vanished from Prime Intellect');
  expect(history).toContain('"manifest_version":"');
  expect(JSON.stringify(desc.memo)).not.toContain(AKASH_KEY);
});

test('cancel closes the Akash deployment and stops its container', async () => {
  const s = spec({ provider: 'akash' });
  const handle: WorkflowHandle = await startJob(client, TQ, s);
  const running = await waitForStatus(handle, (x) => x.state === 'RUNNING');
  const dseq = running.deployments[0]!.ref.data.dseq;
  expect(provider.container(String(dseq))?.running).toBe(true);
  await handle.cancel();
  await expect(handle.result()).rejects.toThrow();
  const status = await handle.query<JobStatus>('status');
  expect(status.state).toBe('CANCELLED');
  expect(status.deployments[0]?.closed).toBe(true);
  expect(akash.open).not.toContain(String(dseq));
  expect(provider.container(String(dseq))).toBeUndefined();
});

test('cost-aware: with region "any" the cheapest candidate gets attempt 1, not the provider', async () => {
  const before = akash.deployments.size;
  const s = spec({ provider: 'akash', fallbacks: ['prime-intellect', 'local'] });
  const status = (await (await startJob(client, TQ, s)).result()) as JobStatus;
  expect(status).toMatchObject({ state: 'COMPLETED', attempt: 1, backend: 'local' });
  expect(akash.deployments.size).toBe(before);
});

test('budget: a backend whose hourly price × max_hours exceeds max_cost_usd is never started; the job is ABANDONED with BUDGET', async () => {
  const s = spec({ provider: 'pricey', max_cost_usd: 2 });
  const status = (await (await startJob(client, TQ, s)).result()) as JobStatus;
  expect(status.state).toBe('ABANDONED');
  expect(status.last_error?.class).toBe('BUDGET');
  expect(status.last_error?.detail).toMatch(/pricey at \$36000\.0000\/h × max_hours 1 = \$36000\.0000 exceeds the \$2\.0000 left of max_cost_usd/);
  expect(status.deployments).toEqual([]);
  expect(status.cost_usd).toBe(0);
});

test('GET /backends/:name/health asks each backend for real, bounded by a timeout', async () => {
  // On the worker's queue: the API reads backends through their read entities, which that worker answers.
  const api: ApiHarness = await startApi({ taskQueue: TQ, config, home, worker: false, healthTimeoutMs: 1500 });
  try {
    const listed = await request(api.url, 'GET', '/backends');
    expect(
      (listed.json as { backends: { name: string; kind: string; hourly_usd: number }[] }).backends.map((b) => [b.name, b.kind, b.hourly_usd]),
    ).toEqual([
      ['akash', 'akash', 2],
      ['prime-intellect', 'prime-intellect', 3],
      ['pi-hung', 'prime-intellect', 3],
      ['local', 'local', 0.5],
      ['pricey', 'local', 36_000],
    ]);
    const ok = await request(api.url, 'GET', '/backends/akash/health');
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ name: 'akash', kind: 'akash', ok: true, detail: expect.stringMatching(/^console mode: 127\.0\.0\.1:\d+ accepts the API key; price cap \$2\/h$/) });
    const pod = await request(api.url, 'GET', '/backends/prime-intellect/health');
    expect(pod.json).toMatchObject({ ok: true, detail: expect.stringMatching(/accepts the API key; \d+ pod\(s\)/) });
    const started = Date.now();
    const slow = await request(api.url, 'GET', '/backends/pi-hung/health');
    expect(slow.status).toBe(503);
    // The worker that reads pi-hung is up, its provider hangs: the answer says where to look, not to start a worker.
    expect(slow.json).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/^health check timed out: no answer within 1500 ms — the orchestrator worker polling test-remote-failover-read \(.+\) is up but did not answer: the backend's call is slow or hangs there/),
    });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(JSON.stringify([ok.json, pod.json, slow.json])).not.toContain(PI_KEY);
  } finally {
    await api.stop();
  }
});
