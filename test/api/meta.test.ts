/**
 * The rest of the API over real HTTP: backends and their health (bounded), /healthz, /metrics, /openapi.json, the
 * JSON Schema, the bearer token, request ids and logs without secrets, and artifact listing/download by manifest
 * name only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Backend } from '../../activities/backends/types';
import { createBackends } from '../../activities/backends/registry';
import { DirectoryArtifactSource } from '../../client/api/artifacts';
import { trainingJobJsonSchema } from '../../jobspec/json-schema';
import { generateKeyPair } from '../../jobspec/signing';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, tempDir, testConfig } from '../helpers/forge';
import { publishArtifacts } from '../helpers/results';
import { http, problemOf, startApi, waitForJob, type ApiHarness } from './harness';

const TQ = 'test-api-meta';
const home = tempDir('forge-api-meta-');
const artifactsRoot = path.join(home, 'artifacts');
// $1.5/h × max_hours 1 is over the fixtures' $1 max_cost_usd: cost-aware admission ("fit", the default) would refuse
// the artifacts job up front; "stop" lets it run (it costs a fraction of a cent) and stops it only at the budget.
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 0) }, hourly_usd: 1.5, max_concurrent: 2 } }, undefined, { admission: { budget: 'stop' } });
const TOKEN = 'sekret-token-0123456789-abcdef';
const orchestrator = generateKeyPair();

let api: ApiHarness;
let guarded: ApiHarness;
beforeAll(async () => {
  api = await startApi({ taskQueue: TQ, config, home, artifacts: new DirectoryArtifactSource(artifactsRoot) });
  guarded = await startApi({ taskQueue: `${TQ}-guarded`, config, home, worker: false, token: TOKEN, captureLogs: true });
});
afterAll(async () => {
  await api?.stop();
  await guarded?.stop();
});

describe('backends', () => {
  test('GET /backends lists name, kind, enabled, capabilities and hourly price', async () => {
    const r = await http(api.url, 'GET', '/backends');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      backends: [{ name: 'local', kind: 'local', enabled: true, hourly_usd: 1.5, capabilities: { job_types: ['finetune', 'rl', 'eval'], trainer_images: ['ok'], max_concurrent: 2 } }],
    });
  });

  test("GET /backends/:name/health: the adapter's health(); unknown → 404; a hanging one → 503 within the timeout", async () => {
    const ok = await http(api.url, 'GET', '/backends/local/health');
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ name: 'local', kind: 'local', ok: true });
    const unknown = await http(api.url, 'GET', '/backends/nope/health');
    expect(unknown.status).toBe(404);
    expect(problemOf(unknown).errors?.[0]?.path).toBe('name');

    const local = createBackends(config, home).get('local')!;
    const stuck: Backend = { ...local, name: 'stuck', kind: 'test', health: () => new Promise(() => undefined), logs: local.logs.bind(local) };
    const broken: Backend = { ...local, name: 'broken', kind: 'test', health: async () => ({ ok: false, detail: 'credentials rejected' }), logs: local.logs.bind(local) };
    const odd = await startApi({ taskQueue: `${TQ}-odd`, config, home, worker: false, healthTimeoutMs: 300, backends: new Map([['stuck', stuck], ['broken', broken]]) });
    try {
      const started = Date.now();
      const hung = await http(odd.url, 'GET', '/backends/stuck/health');
      expect(hung.status).toBe(503);
      expect(hung.json).toMatchObject({ name: 'stuck', ok: false, detail: expect.stringMatching(/timed out/) });
      expect(Date.now() - started).toBeLessThan(3000);
      const bad = await http(odd.url, 'GET', '/backends/broken/health');
      expect(bad.status).toBe(503);
      expect(bad.json).toMatchObject({ ok: false, detail: 'credentials rejected' });
    } finally {
      await odd.stop();
    }
  });

  test('with no orchestrator worker to read the backend, its health says which worker to start, within the timeout', async () => {
    // The API's own readers (the read entities): nothing polls this queue's read queue.
    const alone = await startApi({ taskQueue: `${TQ}-alone`, config, home, worker: false, healthTimeoutMs: 500 });
    try {
      const started = Date.now();
      const r = await http(alone.url, 'GET', '/backends/local/health');
      expect(Date.now() - started).toBeLessThan(5000);
      expect(r.status).toBe(503);
      expect(r.json).toMatchObject({
        name: 'local',
        ok: false,
        detail: expect.stringMatching(
          /^health check timed out: no answer within 500 ms — no orchestrator worker polls test-api-meta-alone-read: start one \(npm start, or the orchestrator role\) with backend "local" in its FORGE_CONFIG$/,
        ),
      });
    } finally {
      await alone.stop();
    }
  });
});

describe('health, metrics, documents', () => {
  test('GET /healthz: 200 with Temporal reachable, 503 without', async () => {
    const r = await http(api.url, 'GET', '/healthz');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ ok: true, temporal: { ok: true, namespace: 'default', detail: 'SERVING' }, task_queue: TQ });
    const cut = await startApi({ taskQueue: `${TQ}-cut`, config, home, worker: false, healthTimeoutMs: 500, temporalAddress: '127.0.0.1:1' });
    try {
      const down = await http(cut.url, 'GET', '/healthz');
      expect(down.status).toBe(503);
      expect(down.json).toMatchObject({ ok: false, temporal: { ok: false } });
    } finally {
      await cut.stop();
    }
  });

  test('GET /metrics: Prometheus text with requests, latencies and jobs submitted', async () => {
    const spec = makeSignedSpec({ trainer: { image: 'ok' } });
    expect((await http(api.url, 'POST', '/jobs', spec)).status).toBe(201);
    await http(api.url, 'GET', '/healthz');
    const r = await http(api.url, 'GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(r.text).toMatch(/^forge_api_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/m);
    expect(r.text).toMatch(/^forge_api_http_request_duration_seconds_bucket\{le="0\.1",method="POST",route="\/jobs",status="201"\} \d+/m);
    expect(r.text).toMatch(/^forge_api_jobs_submitted_total\{job_type="finetune"\} [1-9]/m);
    expect(r.text).toMatch(/^forge_api_job_submissions_total\{outcome="created"\} [1-9]/m);
    expect(r.text).toMatch(/^forge_api_process_cpu_seconds_total /m);
  });

  test('GET /openapi.json describes every endpoint, with the spec schema as the POST /jobs body', async () => {
    const r = await http(api.url, 'GET', '/openapi.json');
    expect(r.status).toBe(200);
    const doc = r.json as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown> } }> } }>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual(
      ['/backends', '/backends/{name}/health', '/healthz', '/identity', '/jobs', '/jobs/{id}', '/jobs/{id}/artifacts', '/jobs/{id}/artifacts/{name}', '/jobs/{id}/cancel', '/jobs/{id}/curves', '/jobs/{id}/curves.svg', '/jobs/{id}/logs', '/jobs/{id}/p2pfl', '/jobs/{id}/p2pfl/node', '/jobs/{id}/p2pfl/node-log', '/jobs/{id}/p2pfl/node-metric/global', '/jobs/{id}/p2pfl/node-metric/local', '/jobs/{id}/p2pfl/node-metric/system', '/metrics', '/openapi.json', '/schemas/training-job-v1.json'].sort(),
    );
    expect(Object.keys(doc.paths['/jobs']!)).toEqual(expect.arrayContaining(['get', 'post']));
    const body = doc.paths['/jobs']!.post!.requestBody!.content['application/json']!.schema;
    expect(Object.keys(body.properties)).toEqual(expect.arrayContaining(['job_id', 'owner_did', 'signature_ed25519']));
  });

  test('GET /schemas/training-job-v1.json is the generated JSON Schema', async () => {
    const r = await http(api.url, 'GET', '/schemas/training-job-v1.json');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/schema\+json/);
    expect(r.json).toEqual(trainingJobJsonSchema());
  });

  test('an unknown route → 404 problem', async () => {
    const r = await http(api.url, 'DELETE', '/jobs');
    expect(r.status).toBe(404);
    expect(problemOf(r).detail).toMatch(/no route DELETE \/jobs/);
  });
});

describe('bearer token, request ids, logs', () => {
  test('with FORGE_API_TOKEN every route needs it: missing or wrong → 401 problem with WWW-Authenticate', async () => {
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }];
    for (const headers of attempts) {
      for (const route of ['/healthz', '/backends', '/metrics', '/openapi.json', '/jobs']) {
        const r = await http(guarded.url, 'GET', route, undefined, headers);
        expect(r.status).toBe(401);
        expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(problemOf(r).errors?.[0]?.path).toBe('authorization');
      }
    }
    const post = await http(guarded.url, 'POST', '/jobs', makeSignedSpec());
    expect(post.status).toBe(401);
    expect((await http(guarded.url, 'GET', '/healthz', undefined, { authorization: `Bearer ${TOKEN}` })).status).toBe(200);
  });

  test("a caller's X-Request-Id is echoed and logged (a malformed one replaced); the token is never logged", async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const r = await http(guarded.url, 'GET', '/backends', undefined, { ...auth, 'x-request-id': 'trace-abc.123' });
    expect(r.headers.get('x-request-id')).toBe('trace-abc.123');
    const odd = await http(guarded.url, 'GET', '/backends', undefined, { ...auth, 'x-request-id': 'has spaces\tand "quotes"' });
    expect(odd.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const failed = await http(guarded.url, 'GET', '/jobs/nope', undefined, { ...auth, 'x-request-id': 'trace-fail' });
    expect((failed.json as { request_id: string }).request_id).toBe('trace-fail');
    await http(guarded.url, 'GET', '/healthz', undefined, { authorization: `Bearer ${TOKEN}x` });

    const entries = guarded.logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.some((e) => e.request_id === 'trace-abc.123' && e.msg === 'request completed')).toBe(true);
    expect(entries.every((e) => typeof e.level === 'number' && typeof e.time === 'number')).toBe(true);
    expect(guarded.logLines.join('\n')).not.toContain(TOKEN);
  });
});

describe('artifacts', () => {
  let jobId: string;
  const files: Record<string, Buffer> = {
    'model.safetensors': randomBytes(300_000),
    'config.json': Buffer.from('{"tiny":true}'),
    'checkpoints/step-1.bin': randomBytes(1000),
    evil: Buffer.alloc(0), // a symlink pointing out of the job's folder, listed in the manifest
  };
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

  beforeAll(async () => {
    const spec = makeSignedSpec({ trainer: { image: 'ok' } });
    jobId = spec.job_id;
    expect((await http(api.url, 'POST', '/jobs', spec)).status).toBe(201);
    await waitForJob(api.url, jobId, (s) => s.state === 'COMPLETED');
    const dir = path.join(artifactsRoot, jobId);
    publishArtifacts(artifactsRoot, jobId, files, orchestrator);
    rmSync(path.join(dir, 'evil'));
    symlinkSync('/etc/hostname', path.join(dir, 'evil'));
    writeFileSync(path.join(dir, 'secret.txt'), 'not in the manifest');
  });

  test('the list carries the signed manifest and one entry per file', async () => {
    const r = await http(api.url, 'GET', `/jobs/${jobId}/artifacts`);
    expect(r.status).toBe(200);
    const body = r.json as { manifest: { signer_did: string }; artifacts: { name: string; size: number; sha256: string; url: string }[] };
    expect(body.manifest.signer_did).toBe(orchestrator.did);
    expect(body.artifacts.map((a) => a.name).sort()).toEqual(Object.keys(files).sort());
    expect(body.artifacts.find((a) => a.name === 'checkpoints/step-1.bin')?.url).toBe(`/jobs/${jobId}/artifacts/checkpoints%2Fstep-1.bin`);
  });

  test('downloads stream with Content-Length and the sha256 header, matching the bytes', async () => {
    for (const name of ['model.safetensors', 'config.json', 'checkpoints/step-1.bin']) {
      const res = await fetch(`${api.url}/jobs/${jobId}/artifacts/${encodeURIComponent(name)}`);
      expect(res.status).toBe(200);
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(res.headers.get('content-length')).toBe(String(files[name]!.length));
      expect(res.headers.get('x-artifact-sha256')).toBe(sha(files[name]!));
      expect(sha(bytes)).toBe(sha(files[name]!));
    }
  });

  test('names outside the manifest, traversal and a symlink out of the folder are refused', async () => {
    for (const name of ['secret.txt', 'manifest.json', '../../../etc/passwd', '/etc/passwd', 'checkpoints/../secret.txt', 'CONFIG.JSON']) {
      const r = await http(api.url, 'GET', `/jobs/${jobId}/artifacts/${encodeURIComponent(name)}`);
      expect(r.status).toBe(404);
      expect(problemOf(r).errors?.[0]).toMatchObject({ in: 'path', path: 'name' });
    }
    const link = await http(api.url, 'GET', `/jobs/${jobId}/artifacts/evil`);
    expect(link.status).toBe(500);
    expect(link.text).not.toContain(readFileSync('/etc/hostname', 'utf8').trim());
  });

  test('a job without artifacts lists none and downloads nothing; an unknown job → 404', async () => {
    const spec = makeSignedSpec({ trainer: { image: 'ok' } });
    await http(api.url, 'POST', '/jobs', spec);
    await waitForJob(api.url, spec.job_id, (s) => s.state === 'COMPLETED');
    expect((await http(api.url, 'GET', `/jobs/${spec.job_id}/artifacts`)).json).toEqual({ job_id: spec.job_id, manifest: null, artifacts: [] });
    expect((await http(api.url, 'GET', `/jobs/${spec.job_id}/artifacts/model.safetensors`)).status).toBe(404);
    expect((await http(api.url, 'GET', '/jobs/00000000-0000-4000-8000-00000000aaaa/artifacts')).status).toBe(404);
  });
});
