/**
 * The akash backend against local servers that speak the Akash Console API and a provider's REST + WebSocket
 * gateway over mTLS. The "container" a lease starts is the real forge agent script running the fake trainer.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AkashBackend } from '../../activities/backends/akash/akash';
import { ConsoleMarket } from '../../activities/backends/akash/akash-console';
import type { BuiltSdl } from '../../activities/backends/akash/akash-sdl';
import { agentToken } from '../../activities/backends/remote/remote-agent-script';
import type { Backend, DeploymentRef, DeploymentStatus } from '../../activities/backends/types';
import { parseConfig, type AkashBackendConfig } from '../../common/config';
import { trainingJobSpecSchema, type TrainingJobSpec } from '../../jobspec/schema';
import { FakeAkashConsole, type ConsoleScenario } from '../fakes/akash-console';
import { FakeAkashProvider } from '../fakes/akash-provider';
import { FAKE_TRAINER_SH } from '../fakes/container';
import { makeSignedSpec, type SignedSpec, signedOf } from '../jobspec/fixtures';

const OWNER = 'akash1owner000000000000000000000000000000000';
const CHEAP = 'akash1cheap0000000000000000000000000000000000';
const DEAR = 'akash1dear00000000000000000000000000000000000';
const API_KEY = 'ak-console-secret-key-0123456789';

const IMAGES = {
  'forge/trainer-ok': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', '0.3'] } },
  'forge/trainer-fail': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'exit', '0.1', '3'] } },
  'forge/trainer-slow': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', '30'] } },
  // Writes what an eval attempt's trainer contract gave it into its outputs.
  'forge/trainer-env': { programs: { 'forge-trainer': ['/bin/sh', '-c', 'printf %s "$FORGE_TASK" > "$FORGE_OUTPUT_DIR/task.txt"; printf %s "$FORGE_EVAL_SUITE_B64" > "$FORGE_OUTPUT_DIR/suite.b64"'] } },
};

function tmp(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

function keyFile(secret: string): string {
  const file = path.join(tmp('akash-key-'), 'key');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return file;
}

function consoleConfig(url: string, extra: object = {}): AkashBackendConfig {
  const c = parseConfig({
    backends: {
      akash: {
        kind: 'akash',
        mode: 'console',
        hourly_usd: 2,
        akt_usd: 3,
        poll_interval_ms: 50,
        request_timeout_ms: 5000,
        bid_timeout_seconds: 1,
        console: { url, api_key_file: keyFile(API_KEY) },
        trainers: {
          ok: { image: 'forge/trainer-ok' },
          fail: { image: 'forge/trainer-fail' },
          slow: { image: 'forge/trainer-slow' },
          env: { image: 'forge/trainer-env' },
        },
        ...extra,
      },
    },
  }).backends.akash;
  if (c?.kind !== 'akash') throw new Error('not an akash config');
  return c;
}

function job(image: string, overrides: object = {}): { raw: SignedSpec; spec: TrainingJobSpec } {
  const raw = makeSignedSpec({ trainer: { image }, backend: { provider: 'akash', max_cost_usd: 50 }, ...overrides });
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

describe('akash backend, console mode', () => {
  const cheap = new FakeAkashProvider(CHEAP, IMAGES);
  const dear = new FakeAkashProvider(DEAR, IMAGES);
  let fake: FakeAkashConsole;
  const scenario: ConsoleScenario = {
    apiKey: API_KEY,
    owner: OWNER,
    providers: [cheap, dear],
    // $2/h at $3/AKT and 6.117 s blocks is a cap of 1132.78 uakt per block: the dear bid is over it.
    bids: [
      { provider: DEAR, amount: 5000 },
      { provider: CHEAP, amount: 600, afterMs: 200 },
    ],
    gpuModels: [{ vendor: 'nvidia', model: 'a100', available: 3, med: 1.1 }],
  };

  beforeAll(async () => {
    await Promise.all([cheap.start(), dear.start()]);
    fake = new FakeAkashConsole(scenario);
    await fake.start();
  });
  afterAll(async () => {
    await fake.stop();
    await Promise.all([cheap.stop(), dear.stop()]);
  });
  afterEach(() => {
    scenario.bids = [
      { provider: DEAR, amount: 5000 },
      { provider: CHEAP, amount: 600, afterMs: 200 },
    ];
    delete scenario.leaseDiesAfterMs;
  });

  test('deploys, leases the cheapest bid under the cap, runs the trainer to SUCCEEDED and hands over its outputs while open', async () => {
    const home = tmp('akash-home-');
    const backend = new AkashBackend('akash', consoleConfig(fake.url), home);
    const { raw, spec } = job('ok');

    const ref = await backend.submit(signedOf(raw), 1);
    expect(ref).toMatchObject({ backend: 'akash', kind: 'akash', jobId: spec.job_id, attempt: 1 });
    expect(ref.data).toMatchObject({ mode: 'console', owner: OWNER, denom: 'uakt', cap_usd_hour: 2 });
    expect(ref.data.manifest_version).toMatch(/^[0-9a-f]{64}$/);
    // Idempotent: the same attempt is the same deployment.
    expect(await backend.submit(signedOf(raw), 1)).toEqual(ref);
    expect(fake.deployments.size).toBe(1);

    const first = await backend.status(ref);
    expect(first.state).toBe('PENDING'); // the cheap bid has not come yet
    const running = await until(backend, ref, (s) => s.state !== 'PENDING');
    expect(['RUNNING', 'SUCCEEDED']).toContain(running.state);
    const done = await until(backend, ref, (s) => s.state === 'SUCCEEDED' || s.state === 'FAILED');
    expect(done).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    expect(done.costUsd).toBeGreaterThan(0);
    expect(done.costUsd).toBeLessThan(0.01);
    expect(done.progress).toEqual({ step: 2, maxSteps: 2, loss: 0.4 });

    // The lease went to the cheap provider, which got a manifest whose client cert named the owner.
    expect(cheap.container(String(ref.data.dseq))).toBeDefined();
    expect(dear.container(String(ref.data.dseq))).toBeUndefined();

    const logs = await backend.logs(ref);
    expect(logs.lines.map((l) => l.line)).toEqual(expect.arrayContaining(['{"event":"progress","step":2,"max_steps":2,"loss":0.4}']));
    expect(cheap.clientNames).toContain(OWNER);
    const more = await backend.logs(ref, logs.cursor);
    expect(more.lines).toEqual([]);

    // The record on disk keeps the manifest without the agent token (the provider got it with the token: the agent ran).
    const record = readFileSync(path.join(home, 'remote', 'akash', spec.job_id, 'attempt-1.json'), 'utf8');
    expect(record).toContain('@@FORGE_AGENT_TOKEN@@');
    expect(record).not.toContain(agentToken(API_KEY, 'akash', spec.job_id, 1));

    const out = tmp('akash-out-');
    expect(await backend.collectArtifacts(ref, out)).toEqual(['metrics.json']);
    expect(JSON.parse(readFileSync(path.join(out, 'metrics.json'), 'utf8'))).toEqual({ loss: 0.4 });

    await backend.close(ref);
    await backend.close(ref); // idempotent
    expect(fake.open).toEqual([]);
    expect(cheap.running).toBe(0);
    // The outputs went with the deployment: no replica's disk kept a copy (the workflow closes it after the commit).
    await expect(backend.collectArtifacts(ref, tmp('akash-out-'))).rejects.toThrow(/the deployment must be open and running to hand over its outputs/);
    // The API key went only in the x-api-key header.
    expect(fake.requests.every((r) => r.headers['x-api-key'] === API_KEY || r.path === '/v1/gpu-prices')).toBe(true);
    expect(JSON.stringify(ref)).not.toContain(API_KEY);
  });

  test('a worker that dies between the deployment POST and its record: the retried submit adopts that deployment, one stays open', async () => {
    const home = tmp('akash-home-');
    const config = consoleConfig(fake.url);
    const { raw } = job('ok');
    // The Console creates the deployment; the worker dies before the record of it reaches FORGE_HOME.
    class DiesAfterPost extends ConsoleMarket {
      override async createDeployment(built: BuiltSdl): Promise<{ dseq: string; owner: string; manifest: string }> {
        await super.createDeployment(built);
        throw new Error('worker killed after the POST');
      }
    }
    const market = new DiesAfterPost({ url: fake.url, apiKey: async () => API_KEY, depositUsd: 5, timeoutMs: 5000, certificateFile: path.join(home, 'cert.json') });
    const posts = (): number => fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/deployments').length;
    const before = { posts: posts(), open: new Set(fake.open) };
    await expect(new AkashBackend('akash', config, home, { market }).submit(signedOf(raw), 1)).rejects.toThrow(/worker killed after the POST/);
    const orphans = fake.open.filter((d) => !before.open.has(d));
    expect(orphans).toHaveLength(1);

    // The activity's retry, on a fresh worker with the same FORGE_HOME: no record, but no second deployment either.
    const backend = new AkashBackend('akash', config, home);
    const ref = await backend.submit(signedOf(raw), 1);
    expect(ref.data.dseq).toBe(orphans[0]);
    expect(posts() - before.posts).toBe(1);
    expect(fake.open.filter((d) => !before.open.has(d))).toEqual(orphans);
    expect(await backend.submit(signedOf(raw), 1)).toEqual(ref);

    // The adopted deployment is a whole one: its lease gets the manifest and the trainer runs to the end.
    expect(await until(backend, ref, (s) => s.state === 'SUCCEEDED' || s.state === 'FAILED')).toMatchObject({ state: 'SUCCEEDED' });
    await backend.close(ref);
    expect(fake.open.filter((d) => !before.open.has(d))).toEqual([]);
  });

  test('another replica (its own FORGE_HOME) accepts the bid: it rebuilds the same manifest, the trainer runs, no second deployment', async () => {
    const config = consoleConfig(fake.url);
    const homeA = tmp('akash-home-a-');
    const { raw, spec } = job('ok');
    const before = new Set(fake.deployments.keys());
    const sentBefore = cheap.manifests.length;
    const ref = await new AkashBackend('akash', config, homeA).submit(signedOf(raw), 1);
    // What replica A would have sent: its record's manifest with the agent token put back.
    const record = JSON.parse(readFileSync(path.join(homeA, 'remote', 'akash', spec.job_id, 'attempt-1.json'), 'utf8')) as { manifest: string };
    const expected = JSON.parse(record.manifest.split('@@FORGE_AGENT_TOKEN@@').join(agentToken(API_KEY, 'akash', spec.job_id, 1))) as unknown;
    // The ref that travels in Temporal holds the spec, not the API key, the agent token or the manifest.
    expect(JSON.stringify(ref)).not.toContain(API_KEY);
    expect(JSON.stringify(ref)).not.toContain(agentToken(API_KEY, 'akash', spec.job_id, 1));

    // Replica B: the same operator config (its own copy of the key file), a FORGE_HOME with no record of the attempt.
    const backendB = new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-b-'));
    expect(await until(backendB, ref, (s) => s.state === 'SUCCEEDED' || s.state === 'FAILED')).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    const sent = cheap.manifests.slice(sentBefore).filter((m) => m.dseq === String(ref.data.dseq));
    expect(sent).toHaveLength(1);
    expect(sent[0]?.body).toEqual(expected);
    expect([...fake.deployments.keys()].filter((d) => !before.has(d))).toEqual([String(ref.data.dseq)]);
    await backendB.close(ref);
    expect(fake.open).not.toContain(String(ref.data.dseq));
  });

  test("an eval attempt: its inputs are in the manifest, another replica rebuilds the same one, the reaper's ref carries them", async () => {
    const config = consoleConfig(fake.url);
    const homeA = tmp('akash-home-a-');
    const { raw, spec } = job('env');
    const evalRun = { suite: { toy: '{"tasks": [{"id": "t1"}]}\n' } };
    const sentBefore = cheap.manifests.length;
    const backendA = new AkashBackend('akash', config, homeA);
    const ref = await backendA.submit(signedOf(raw), 1, { evalRun });
    expect(JSON.parse(String(ref.data.eval_run))).toEqual(evalRun);
    const record = JSON.parse(readFileSync(path.join(homeA, 'remote', 'akash', spec.job_id, 'attempt-1.json'), 'utf8')) as { manifest: string; source: unknown };
    expect(record.source).toMatchObject({ evalRun });
    const expected = JSON.parse(record.manifest.split('@@FORGE_AGENT_TOKEN@@').join(agentToken(API_KEY, 'akash', spec.job_id, 1))) as unknown;
    const suiteB64 = Buffer.from(JSON.stringify(evalRun.suite)).toString('base64');
    expect(JSON.stringify(expected)).toContain(`FORGE_EVAL_SUITE_B64=${suiteB64}`);
    // The reaper on replica A lists it with the same ref (what closing or following it needs).
    expect((await backendA.listOpen()).find((o) => o.ref.id === ref.id)?.ref).toEqual(ref);

    // Replica B follows it with no record: the manifest it rebuilds from the ref is replica A's, eval env included.
    const backendB = new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-b-'));
    expect(await until(backendB, ref, (s) => s.state === 'SUCCEEDED' || s.state === 'FAILED')).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    const sent = cheap.manifests.slice(sentBefore).filter((m) => m.dseq === String(ref.data.dseq));
    expect(sent).toHaveLength(1);
    expect(sent[0]?.body).toEqual(expected);
    const out = tmp('akash-out-');
    expect((await backendB.collectArtifacts(ref, out)).sort()).toEqual(['suite.b64', 'task.txt']);
    expect(readFileSync(path.join(out, 'task.txt'), 'utf8')).toBe('eval');
    expect(readFileSync(path.join(out, 'suite.b64'), 'utf8')).toBe(suiteB64);
    await backendB.close(ref);
    expect(fake.open).not.toContain(String(ref.data.dseq));
  });

  test('an eval attempt whose suite does not fit a container environment is REJECTED before any deployment', async () => {
    const before = fake.deployments.size;
    const { raw } = job('env');
    const big = { suite: { toy: 'x'.repeat(128 * 1024) } };
    await expect(new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-')).submit(signedOf(raw), 1, { evalRun: big })).rejects.toMatchObject({
      failureClass: 'REJECTED',
      message: expect.stringMatching(/FORGE_EVAL_SUITE_B64, over the 98304 .*set results\.evaluation\.backends\.akash to "orchestrator"/),
    });
    expect(fake.deployments.size).toBe(before);
  });

  test('a replica whose operator config makes another manifest refuses to send it: LOST, naming the setting', async () => {
    const { raw } = job('ok');
    const ref = await new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-a-')).submit(signedOf(raw), 1);
    const other = consoleConfig(fake.url, { trainers: { ok: { image: 'forge/trainer-ok', env: { EXTRA: '1' } } } });
    const s = await until(new AkashBackend('akash', other, tmp('akash-home-b-')), ref, (x) => x.state !== 'PENDING').catch((err: unknown) => err);
    expect(s).toMatchObject({ failureClass: 'LOST', message: expect.stringMatching(/manifest rebuilt on this replica .* is not the one the deployment committed .*backends\.akash .*give every replica the same operator config/) });
    await new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-')).close(ref);
  });

  test('two workers submitting the same attempt at once: both get the oldest deployment, the other is closed', async () => {
    const config = consoleConfig(fake.url);
    const { raw } = job('ok');
    const before = new Set(fake.deployments.keys());
    const [a, b] = await Promise.all([new AkashBackend('akash', config, tmp('akash-home-')).submit(signedOf(raw), 1), new AkashBackend('akash', config, tmp('akash-home-')).submit(signedOf(raw), 1)]);
    const made = [...fake.deployments.keys()].filter((d) => !before.has(d));
    expect(made.length).toBeGreaterThanOrEqual(1);
    expect(a.data.dseq).toBe(made[0]);
    expect(b.data.dseq).toBe(made[0]);
    expect(fake.open.filter((d) => made.includes(d))).toEqual([made[0]]);
    await new AkashBackend('akash', config, tmp('akash-home-')).close(a);
    expect(fake.open.filter((d) => made.includes(d))).toEqual([]);
  });

  test('a trainer that exits 3 on Akash fails EXIT_CODE with its stderr', async () => {
    const backend = new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-'));
    const { raw } = job('fail');
    const ref = await backend.submit(signedOf(raw), 1);
    const s = await until(backend, ref, (x) => x.state === 'FAILED');
    expect(s.exitCode).toBe(3);
    expect(s.failure?.class).toBe('EXIT_CODE');
    expect(s.failure?.detail).toMatch(/fake trainer: failing with 3/);
    await backend.close(ref);
  });

  test('no bid under the cap within the bid timeout: NO_CAPACITY, and the deployment is closed', async () => {
    scenario.bids = [{ provider: DEAR, amount: 5000 }];
    const backend = new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-'));
    const { raw } = job('ok');
    const ref = await backend.submit(signedOf(raw), 1);
    const s = await until(backend, ref, (x) => x.state === 'FAILED');
    expect(s.failure?.class).toBe('NO_CAPACITY');
    expect(s.failure?.detail).toMatch(/no Akash bid at or under 1132\.\d+ uakt\/block .* within 1 s; 1 bid\(s\), cheapest 5000 uakt/);
    expect(fake.open).not.toContain(String(ref.data.dseq));
    expect(s.costUsd).toBe(0);
  });

  test('a lease the provider closes is LOST; close afterwards is harmless', async () => {
    scenario.leaseDiesAfterMs = 300;
    const backend = new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-'));
    const { raw } = job('slow');
    const ref = await backend.submit(signedOf(raw), 1);
    await until(backend, ref, (x) => x.state === 'RUNNING');
    const s = await until(backend, ref, (x) => x.state === 'FAILED');
    expect(s.failure?.class).toBe('LOST');
    expect(s.failure?.detail).toMatch(/lease with provider akash1cheap\w+ on deployment \d+ ended: closed \(closed\) by the provider or the chain/);
    expect(s.costUsd).toBeGreaterThan(0);
    expect(cheap.container(String(ref.data.dseq))).toBeUndefined();
    await backend.close(ref);
    expect(fake.open).not.toContain(String(ref.data.dseq));
  });

  test('quote: the Console GPU price index, capped; an unknown GPU vendor or unmapped image is REJECTED', async () => {
    const backend = new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-'));
    const gpu = { resources: { gpus: 1, gpu_type: 'nvidia/a100', gpu_mem_gb: 80, cpus: 8, ram_gb: 64, storage_gb: 100, max_hours: 1 } };
    expect(await backend.quote(job('ok', gpu).spec)).toMatchObject({ available: true, hourlyUsd: 1.1 });
    expect(await backend.quote(job('ok', { resources: { ...gpu.resources, gpus: 4 } }).spec)).toMatchObject({ available: false });
    expect(await backend.quote(job('ok').spec)).toMatchObject({ available: true, hourlyUsd: 2 });
    await expect(backend.quote(job('ok', { resources: { ...gpu.resources, gpu_type: 'intel/gaudi2' } }).spec)).rejects.toMatchObject({
      failureClass: 'REJECTED',
      message: expect.stringMatching(/GPU vendor "intel" is not one Akash knows \(nvidia, amd\)/),
    });
    await expect(backend.quote(job('unknown-image').spec)).rejects.toMatchObject({ failureClass: 'REJECTED', message: expect.stringMatching(/no container configured for trainer image "unknown-image"/) });
  });

  test('health: the key is accepted; a wrong key is reported, never echoed', async () => {
    expect(await new AkashBackend('akash', consoleConfig(fake.url), tmp('akash-home-')).health()).toMatchObject({ ok: true });
    const wrong = consoleConfig(fake.url);
    wrong.console!.api_key_file = keyFile('not-the-key-9876543210');
    const h = await new AkashBackend('akash', wrong, tmp('akash-home-')).health();
    expect(h.ok).toBe(false);
    expect(h.detail).toMatch(/credentials refused .*HTTP 401/);
    expect(h.detail).not.toContain('not-the-key-9876543210');
  });
});
