/**
 * FORGE_API_AUTH=owners, tried as a hostile owner would: each owner signs requests with their did:key (RFC 9421) and
 * reaches only their own jobs (another owner's answers 404, exactly as a job that does not exist); unsigned, stale,
 * replayed and tampered requests are 401; the operator token sees everything. And on every API, whatever its auth:
 * an unknown Host is 421 (DNS rebinding) and no cross-origin access is granted (no CORS).
 */
import { request as httpRequest } from 'node:http';
import { randomUUID } from 'node:crypto';
import { p2pflWebKey } from '../../common/p2pfl-web-key';
import { generateKeyPair, signCancelRequest, type KeyPair } from '../../jobspec/signing';
import { signedRequestHeaders } from '../../client/cli/request-signing';
import { jobWorkflowId, WORKFLOW_TYPE_TRAINING_JOB } from '../../common/names';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, tempDir, testConfig } from '../helpers/forge';
import { http, problemOf, readSse, startApi, type ApiHarness, type HttpResult } from './harness';

const TQ = 'test-api-owners-auth';
const home = tempDir('forge-api-owners-');
const OPERATOR = 'operator-token-0123456789abcdef';
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 1), slow: ['/bin/sh', '-c', 'sleep 120'] } } });
const alice = generateKeyPair();
const bob = generateKeyPair();
const operator = { authorization: `Bearer ${OPERATOR}` };

let api: ApiHarness;
let open: ApiHarness;
beforeAll(async () => {
  api = await startApi({ taskQueue: TQ, config, home, auth: 'owners', token: OPERATOR, allowedHosts: ['forge.example'] });
  // The loopback default of `npm start`: no token, open to local callers, yet still Host- and origin-checked.
  open = await startApi({ taskQueue: TQ, config, home, worker: false });
});
afterAll(async () => {
  await open?.stop();
  await api?.stop();
});

/** A request signed by `keys` (body as JSON), through the CLI's own signing code. */
function signed(keys: KeyPair, method: string, path: string, body?: unknown, now?: number): Promise<HttpResult> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers = signedRequestHeaders(keys, { method, url: `${api.url}${path}`, ...(text !== undefined ? { body: text } : {}) }, now);
  return http(api.url, method, path, text, headers);
}

/** A raw HTTP/1.1 request with any Host and headers (fetch sets Host itself). */
function raw(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function submitAs(keys: KeyPair, image: string): Promise<string> {
  const spec = makeSignedSpec({ trainer: { image } }, keys);
  const r = await signed(keys, 'POST', '/jobs', spec);
  expect(r.status).toBe(201);
  return spec.job_id;
}

async function waitState(keys: KeyPair, id: string, states: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await signed(keys, 'GET', `/jobs/${id}`);
    if (r.status === 200 && states.includes((r.json as { state: string }).state)) return;
    if (Date.now() > deadline) throw new Error(`job ${id} never reached ${states.join('/')}: ${r.status} ${r.text.slice(0, 200)}`);
    await new Promise((res) => setTimeout(res, 150));
  }
}

let aliceDone: string;
let aliceSlow: string;
let bobDone: string;
beforeAll(async () => {
  aliceDone = await submitAs(alice, 'ok');
  aliceSlow = await submitAs(alice, 'slow');
  bobDone = await submitAs(bob, 'ok');
  await waitState(alice, aliceDone, ['COMPLETED']);
  await waitState(bob, bobDone, ['COMPLETED']);
  await waitState(alice, aliceSlow, ['RUNNING']);
}, 60_000);

describe('owners see their own jobs only', () => {
  test("an owner's list holds their jobs only, whatever owner filter they ask for", async () => {
    const mine = await signed(alice, 'GET', '/jobs?page_size=500');
    expect(mine.status).toBe(200);
    const jobs = (mine.json as { jobs: { job_id: string; owner_did: string }[] }).jobs;
    expect(jobs.map((j) => j.job_id)).toEqual(expect.arrayContaining([aliceDone, aliceSlow]));
    expect(jobs.map((j) => j.job_id)).not.toContain(bobDone);
    expect(new Set(jobs.map((j) => j.owner_did))).toEqual(new Set([alice.did]));
    const asked = await signed(alice, 'GET', `/jobs?owner=${encodeURIComponent(bob.did)}`);
    expect(asked.status).toBe(200);
    expect((asked.json as { jobs: unknown[] }).jobs).toEqual([]);
  });

  test("another owner's job answers 404 on every route, word for word like a job that does not exist", async () => {
    const p2pflKey = p2pflWebKey(home, bobDone, 1);
    expect((await http(api.url, 'POST', `/jobs/${bobDone}/p2pfl/node`, { address: 'forge-node-0', creation_date: '2026-01-02 03:04:05' }, { 'x-api-key': p2pflKey })).status).toBe(201);
    const ghost = randomUUID();
    for (const suffix of ['', '/logs', '/artifacts', '/artifacts/model.bin', '/p2pfl', '/curves.svg', '/curves']) {
      const theirs = await signed(alice, 'GET', `/jobs/${bobDone}${suffix}`);
      const none = await signed(alice, 'GET', `/jobs/${ghost}${suffix}`);
      expect([suffix, theirs.status]).toEqual([suffix, 404]);
      expect(problemOf(theirs).detail).toBe(`no job ${bobDone}`);
      expect(problemOf(none).detail).toBe(`no job ${ghost}`);
      // Bob reads the same route of his own job (the p2pfl records exist, the artifacts answer).
      const own = await signed(bob, 'GET', `/jobs/${bobDone}${suffix}`);
      if (suffix === '/artifacts/model.bin') expect(own.status).toBe(404);
      else expect([suffix, own.status]).toEqual([suffix, 200]);
    }
    // Bob signs a cancel of Alice's running job: 404, and the job goes on.
    const cancel = await signed(bob, 'POST', `/jobs/${aliceSlow}/cancel`, signCancelRequest(aliceSlow, Math.floor(Date.now() / 1000), bob.secretKey));
    expect(cancel.status).toBe(404);
    expect(problemOf(cancel).detail).toBe(`no job ${aliceSlow}`);
    const stillRunning = await signed(alice, 'GET', `/jobs/${aliceSlow}`);
    expect((stillRunning.json as { state: string }).state).toBe('RUNNING');
  });

  test('jobs started by a bare Temporal client are scoped by their owner too (search attribute, else the input)', async () => {
    // One picked up by the worker (ForgeOwner set by the workflow), one on a queue nobody polls (only its input says).
    const started: string[] = [];
    for (const taskQueue of [TQ, `${TQ}-nobody`]) {
      const spec = makeSignedSpec({ trainer: { image: 'ok' } }, bob);
      await api.client.workflow.start(WORKFLOW_TYPE_TRAINING_JOB, { taskQueue, workflowId: jobWorkflowId(spec.job_id), args: [spec] });
      started.push(spec.job_id);
    }
    await waitState(bob, started[0]!, ['COMPLETED']);
    for (const id of started) {
      const r = await signed(alice, 'GET', `/jobs/${id}`);
      expect([id, r.status]).toEqual([id, 404]);
      expect(problemOf(r).detail).toBe(`no job ${id}`);
      // Bob passes the owner check (his route answers past it, with no P2PFL records: no Temporal query needed).
      expect(problemOf(await signed(bob, 'GET', `/jobs/${id}/p2pfl`)).detail).toBe(`no P2PFL web-logger records for job ${id}`);
    }
    await api.client.workflow.getHandle(jobWorkflowId(started[1]!)).terminate('test done');
  });

  test("an owner's own logs stream, and the owner cancels their own job", async () => {
    const logs = await readSse(`${api.url}/jobs/${aliceDone}/logs`, { headers: signedRequestHeaders(alice, { method: 'GET', url: `${api.url}/jobs/${aliceDone}/logs` }) });
    expect(logs.status).toBe(200);
    expect(logs.events.at(-1)).toMatchObject({ event: 'end', data: { state: 'COMPLETED' } });
    const cancel = await signed(alice, 'POST', `/jobs/${aliceSlow}/cancel`, signCancelRequest(aliceSlow, Math.floor(Date.now() / 1000), alice.secretKey));
    expect(cancel.status).toBe(202);
  });

  test("POST /jobs: the spec's owner must be the request's signer (403), the operator submits any", async () => {
    const bobs = makeSignedSpec({ trainer: { image: 'ok' } }, bob);
    const r = await signed(alice, 'POST', '/jobs', bobs);
    expect(r.status).toBe(403);
    expect(problemOf(r).errors?.map((e) => e.path)).toEqual(['owner_did']);
    expect((await http(api.url, 'POST', '/jobs', bobs, operator)).status).toBe(201);
  });

  test('the operator token sees every job; a wrong token is 401', async () => {
    const all = await http(api.url, 'GET', '/jobs?page_size=500', undefined, operator);
    const ids = (all.json as { jobs: { job_id: string }[] }).jobs.map((j) => j.job_id);
    expect(ids).toEqual(expect.arrayContaining([aliceDone, bobDone]));
    expect((await http(api.url, 'GET', `/jobs/${bobDone}`, undefined, operator)).status).toBe(200);
    expect((await http(api.url, 'GET', `/jobs/${bobDone}`, undefined, { authorization: 'Bearer not-the-token-at-all' })).status).toBe(401);
    // /metrics is the operator's; liveness, the schema and the OpenAPI document are public.
    expect(problemOf(await signed(alice, 'GET', '/metrics')).status).toBe(403);
    expect((await http(api.url, 'GET', '/metrics', undefined, operator)).status).toBe(200);
    for (const path of ['/healthz', '/openapi.json', '/schemas/training-job-v1.json']) expect([path, (await http(api.url, 'GET', path)).status]).toEqual([path, 200]);
  });
});

describe('refused signatures: 401 with a problem that says how to sign', () => {
  test('unsigned', async () => {
    const r = await http(api.url, 'GET', `/jobs/${aliceDone}`);
    expect(r.status).toBe(401);
    const p = problemOf(r);
    expect(p.type).toMatch(/unauthenticated$/);
    expect(p.detail).toMatch(/RFC 9421/);
    expect(p.detail).toMatch(/Signature-Input: sig1=\("@method" "@authority" "@path" "@query"/);
    expect(p.detail).toMatch(/--key/);
    expect((await http(api.url, 'GET', '/jobs')).status).toBe(401);
  });

  test('created more than 5 minutes away from now, either way', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const created of [now - 400, now + 400]) {
      const r = await signed(alice, 'GET', `/jobs/${aliceDone}`, undefined, created);
      expect(r.status).toBe(401);
      expect(problemOf(r).detail).toMatch(/"created" .* more than 300 s/);
    }
  });

  test('a replayed signature', async () => {
    const headers = signedRequestHeaders(alice, { method: 'GET', url: `${api.url}/jobs/${aliceDone}` });
    expect((await http(api.url, 'GET', `/jobs/${aliceDone}`, undefined, headers)).status).toBe(200);
    const again = await http(api.url, 'GET', `/jobs/${aliceDone}`, undefined, headers);
    expect(again.status).toBe(401);
    expect(problemOf(again).detail).toMatch(/replay/);
  });

  test('a body changed after signing (digest mismatch), or a body the signature does not cover', async () => {
    const spec = makeSignedSpec({ trainer: { image: 'ok' } }, alice);
    const headers = signedRequestHeaders(alice, { method: 'POST', url: `${api.url}/jobs`, body: JSON.stringify(spec) });
    const tampered = await http(api.url, 'POST', '/jobs', JSON.stringify({ ...spec, job_id: randomUUID() }), headers);
    expect(tampered.status).toBe(401);
    expect(problemOf(tampered).errors?.map((e) => e.path)).toEqual(['content-digest']);
    const uncovered = await http(api.url, 'POST', '/jobs', JSON.stringify(spec), signedRequestHeaders(alice, { method: 'POST', url: `${api.url}/jobs` }));
    expect(uncovered.status).toBe(401);
    expect(problemOf(uncovered).detail).toMatch(/must cover "content-digest"/);
    // Nothing was started.
    expect((await http(api.url, 'GET', `/jobs/${spec.job_id}`, undefined, operator)).status).toBe(404);
  });

  test('a signature for another path, or by a key that is not the keyid', async () => {
    const headers = signedRequestHeaders(alice, { method: 'GET', url: `${api.url}/jobs/${aliceSlow}` });
    expect((await http(api.url, 'GET', `/jobs/${aliceDone}`, undefined, headers)).status).toBe(401);
    const forged = signedRequestHeaders({ did: alice.did, secretKey: bob.secretKey }, { method: 'GET', url: `${api.url}/jobs/${aliceDone}` });
    const r = await http(api.url, 'GET', `/jobs/${aliceDone}`, undefined, forged);
    expect(r.status).toBe(401);
    expect(problemOf(r).detail).toMatch(/does not verify/);
  });
});

describe('Host allow-list and no CORS (owners and loopback APIs alike)', () => {
  test('Host: evil.example → 421 problem+json; loopback names and configured names are served', async () => {
    for (const base of [api.url, open.url]) {
      const evil = await raw(base, 'GET', '/healthz', { host: 'evil.example' });
      expect(evil.status).toBe(421);
      expect(String(evil.headers['content-type'])).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(evil.body)).toMatchObject({ status: 421, detail: expect.stringMatching(/FORGE_API_ALLOWED_HOSTS/) });
      const port = new URL(base).port;
      for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) expect([host, (await raw(base, 'GET', '/healthz', { host })).status]).toEqual([host, 200]);
      // A rebinding page's Host, on a job route of the open loopback API.
      expect((await raw(base, 'GET', '/jobs', { host: `attacker.example:${port}` })).status).toBe(421);
    }
    expect((await raw(api.url, 'GET', '/healthz', { host: 'forge.example' })).status).toBe(200);
    expect((await raw(open.url, 'GET', '/healthz', { host: 'forge.example' })).status).toBe(421);
  });

  test('a CORS preflight is refused with no Access-Control-Allow-* header; a cross-origin request is 403', async () => {
    for (const base of [api.url, open.url]) {
      const pre = await raw(base, 'OPTIONS', '/jobs', { origin: 'http://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' });
      expect(pre.status).toBeGreaterThanOrEqual(400);
      expect(Object.keys(pre.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
      const cross = await raw(base, 'GET', '/jobs', { origin: 'http://evil.example' });
      expect(cross.status).toBe(403);
      expect(Object.keys(cross.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    }
    // Same origin (the API's own) is not refused.
    expect((await raw(open.url, 'GET', '/healthz', { origin: open.url })).status).toBe(200);
  });
});
