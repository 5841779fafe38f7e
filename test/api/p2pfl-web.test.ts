/**
 * P2PFL's web-logger endpoints (client/api/routes/p2pfl.ts) over real HTTP: the bodies P2PFL 0.4.4's client sends,
 * bad bodies → 400 naming the field, a missing key → 401 and another job's → 403 (before any validation), the API's
 * bearer token not asked of P2PFL but of readers, no key in the server's log, the per-job size bound, and P2PFL's own
 * client (P2pflWebServices, from .tools/p2pfl-venv) against the API when that venv exists.
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { P2pflWebRecords, RecordsFullError } from '../../client/api/p2pfl-web';
import { p2pflDefaultCommand } from '../../common/config';
import { p2pflWebKey, verifyP2pflWebKey } from '../../common/p2pfl-web-key';
import { fakeTrainer, tempDir, testConfig } from '../helpers/forge';
import { http, problemOf, startApi, type ApiHarness } from './harness';

const TQ = 'test-api-p2pfl-web';
const home = tempDir('forge-api-p2pfl-');
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 0) } } });
const TOKEN = 'p2pfl-web-token-0123456789';

let api: ApiHarness;
let guarded: ApiHarness;
beforeAll(async () => {
  api = await startApi({ taskQueue: TQ, config, home, worker: false });
  guarded = await startApi({ taskQueue: `${TQ}-guarded`, config, home, worker: false, token: TOKEN, captureLogs: true });
});
afterAll(async () => {
  await api?.stop();
  await guarded?.stop();
});

const base = (job: string): string => `/jobs/${job}/p2pfl`;
const keyed = (key: string): Record<string, string> => ({ 'x-api-key': key });

async function register(url: string, job: string, key: string, address: string): Promise<number> {
  const r = await http(url, 'POST', `${base(job)}/node`, { address, creation_date: '2026-01-02 03:04:05' }, keyed(key));
  expect(r.status).toBe(201);
  return (r.json as { node_id: number }).node_id;
}

test('keys: one per job and attempt, checked without any record of them', () => {
  const job = randomUUID();
  const key = p2pflWebKey(home, job, 2);
  expect(key).toMatch(/^2\.[A-Za-z0-9_-]{43}$/);
  expect(verifyP2pflWebKey(home, job, key)).toBe(2);
  expect(verifyP2pflWebKey(home, randomUUID(), key)).toBeUndefined();
  expect(verifyP2pflWebKey(home, job, key.replace(/^2\./, '3.'))).toBeUndefined();
  expect(verifyP2pflWebKey(home, job, `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`)).toBeUndefined();
  expect(verifyP2pflWebKey(tempDir('forge-other-home-'), job, key)).toBeUndefined();
});

test("P2PFL's calls are kept per job with the node's address and attempt; GET /jobs/:id/p2pfl returns them", async () => {
  const job = randomUUID();
  const key = p2pflWebKey(home, job, 1);
  const n0 = await register(api.url, job, key, 'forge-node-0');
  const n1 = await register(api.url, job, key, 'forge-node-1');
  expect(n1).not.toBe(n0);
  // A node that registers again (a restarted process) gets its id back.
  const again = await http(api.url, 'POST', `${base(job)}/node`, { address: 'forge-node-0', creation_date: '2026-01-02 03:04:06' }, keyed(key));
  expect(again).toMatchObject({ status: 200, json: { node_id: n0 } });

  const posts: [string, object][] = [
    ['node-log', { time: '2026-01-02 03:04:07', node_id: n0, level: 'INFO', message: 'Starting learning' }],
    ['node-metric/local', { node_id: n0, exp_id: 'experiment-1', metric_name: 'train_loss', round: 0, step: 1, value: 5.5 }],
    ['node-metric/global', { node_id: n1, exp_id: 'experiment-1', metric_name: 'test_loss', round: 0, value: 4.25 }],
    ['node-metric/system', { node_id: n1, metric_name: 'cpu', time: '2026-01-02 03:04:08', value: 12.5, extra_field_from_a_later_p2pfl: 1 }],
  ];
  for (const [route, body] of posts) {
    const r = await http(api.url, 'POST', `${base(job)}/${route}`, body, keyed(key));
    expect({ route, status: r.status, json: r.json }).toEqual({ route, status: 201, json: { recorded: true } });
  }

  const got = await http(api.url, 'GET', base(job));
  expect(got.status).toBe(200);
  const at = expect.any(String);
  expect(got.json).toEqual({
    job_id: job,
    nodes: [
      { attempt: 1, node_id: n0, address: 'forge-node-0', creation_date: '2026-01-02 03:04:05', received_at: at },
      { attempt: 1, node_id: n1, address: 'forge-node-1', creation_date: '2026-01-02 03:04:05', received_at: at },
    ],
    logs: [{ attempt: 1, node: 'forge-node-0', node_id: n0, time: '2026-01-02 03:04:07', level: 'INFO', message: 'Starting learning', received_at: at }],
    metrics: {
      local: [{ attempt: 1, node: 'forge-node-0', node_id: n0, exp_id: 'experiment-1', metric_name: 'train_loss', round: 0, step: 1, value: 5.5, received_at: at }],
      global: [{ attempt: 1, node: 'forge-node-1', node_id: n1, exp_id: 'experiment-1', metric_name: 'test_loss', round: 0, value: 4.25, received_at: at }],
      system: [{ attempt: 1, node: 'forge-node-1', node_id: n1, metric_name: 'cpu', time: '2026-01-02 03:04:08', value: 12.5, received_at: at }],
    },
  });

  // Attempt 2 has a key of its own; its nodes are apart from attempt 1's, and ?attempt= picks one.
  const key2 = p2pflWebKey(home, job, 2);
  const m0 = await register(api.url, job, key2, 'forge-node-0');
  const stale = await http(api.url, 'POST', `${base(job)}/node-log`, { time: '2026-01-02 03:04:09', node_id: n0, level: 'INFO', message: 'x' }, keyed(key2));
  expect(stale.status).toBe(400);
  expect(problemOf(stale).errors).toEqual([expect.objectContaining({ in: 'body', path: 'node_id' })]);
  const second = await http(api.url, 'GET', `${base(job)}?attempt=2`);
  expect(second.json).toMatchObject({ nodes: [{ attempt: 2, node_id: m0 }], logs: [], metrics: { local: [], global: [], system: [] } });

  const none = await http(api.url, 'GET', base(randomUUID()));
  expect(none.status).toBe(404);
  expect(problemOf(none).detail).toMatch(/no P2PFL web-logger records/);
});

test('a bad body → 400 naming the field', async () => {
  const job = randomUUID();
  const key = p2pflWebKey(home, job, 1);
  const node = await register(api.url, job, key, '127.0.0.1:50051');
  const cases: [string, unknown, string][] = [
    ['node', { creation_date: '2026-01-02 03:04:05' }, 'address'],
    ['node', { address: 'n', creation_date: '2026-01-02T03:04:05Z' }, 'creation_date'],
    ['node-log', { time: '2026-01-02 03:04:07', node_id: node, level: 'INFO' }, 'message'],
    ['node-log', { time: '2026-01-02 03:04:07', node_id: 'one', level: 'INFO', message: 'm' }, 'node_id'],
    ['node-metric/local', { node_id: node, exp_id: 'e', metric_name: 'loss', round: 0, step: 1, value: 'high' }, 'value'],
    ['node-metric/local', { node_id: node, exp_id: 'e', metric_name: 'loss', round: 0, value: 1 }, 'step'],
    ['node-metric/global', { node_id: node, exp_id: 'e', metric_name: 'loss', round: -1, value: 1 }, 'round'],
    ['node-metric/global', { node_id: node, exp_id: '', metric_name: 'loss', round: 0, value: 1 }, 'exp_id'],
    ['node-metric/system', { node_id: node, metric_name: 'cpu', time: 'now', value: 1 }, 'time'],
    // Registered ids only.
    ['node-metric/system', { node_id: node + 1, metric_name: 'cpu', time: '2026-01-02 03:04:08', value: 1 }, 'node_id'],
  ];
  for (const [route, body, field] of cases) {
    const r = await http(api.url, 'POST', `${base(job)}/${route}`, body, keyed(key));
    expect({ route, field, status: r.status }).toEqual({ route, field, status: 400 });
    expect({ route, paths: problemOf(r).errors?.map((e) => e.path) }).toEqual({ route, paths: [field] });
  }
  const notJson = await http(api.url, 'POST', `${base(job)}/node-log`, '{"value": NaN}', keyed(key));
  expect(notJson.status).toBe(400);
  // Nothing of the refused bodies was kept.
  expect((await http(api.url, 'GET', base(job))).json).toMatchObject({ logs: [], metrics: { local: [], global: [], system: [] } });
});

test("no key → 401, another job's or a forged key → 403, both before the body is looked at", async () => {
  const job = randomUUID();
  const other = randomUUID();
  const good = p2pflWebKey(home, job, 1);
  const body = { address: 'n', creation_date: '2026-01-02 03:04:05' };
  const missing = await http(api.url, 'POST', `${base(job)}/node`, body);
  expect(missing.status).toBe(401);
  expect(problemOf(missing).errors).toEqual([expect.objectContaining({ in: 'header', path: 'x-api-key', detail: 'missing' })]);
  for (const key of [p2pflWebKey(home, other, 1), `1.${'A'.repeat(43)}`, 'not-a-key', good.replace(/^1\./, '2.')]) {
    const r = await http(api.url, 'POST', `${base(job)}/node`, body, keyed(key));
    expect(r.status).toBe(403);
    expect(problemOf(r).errors?.[0]).toMatchObject({ in: 'header', path: 'x-api-key' });
  }
  const badBodyNoKey = await http(api.url, 'POST', `${base(job)}/node-metric/local`, { nonsense: true });
  expect(badBodyNoKey.status).toBe(401);
  expect((await http(api.url, 'GET', base(job))).status).toBe(404);
});

test("with FORGE_API_TOKEN: P2PFL needs only its key, readers need the token; the key is never logged", async () => {
  const job = randomUUID();
  const key = p2pflWebKey(home, job, 1);
  const node = await register(guarded.url, job, key, 'forge-node-0');
  const log = await http(guarded.url, 'POST', `${base(job)}/node-log`, { time: '2026-01-02 03:04:07', node_id: node, level: 'WARNING', message: 'w' }, keyed(key));
  expect(log.status).toBe(201);
  expect((await http(guarded.url, 'GET', base(job))).status).toBe(401);
  expect((await http(guarded.url, 'GET', base(job), undefined, keyed(key))).status).toBe(401);
  // The key opens only the web-logger routes: not an unknown path under them.
  expect((await http(guarded.url, 'POST', `${base(job)}/other`, {}, keyed(key))).status).toBe(401);
  const read = await http(guarded.url, 'GET', base(job), undefined, { authorization: `Bearer ${TOKEN}` });
  expect(read).toMatchObject({ status: 200, json: { logs: [{ message: 'w', level: 'WARNING' }] } });
  expect(guarded.logLines.length).toBeGreaterThan(0);
  expect(guarded.logLines.join('\n')).not.toContain(key.split('.')[1]);
});

test("a job's records are bounded: past the limit → RecordsFullError (which the routes answer with 507)", async () => {
  const store = new P2pflWebRecords(tempDir('forge-p2pfl-small-'), 600);
  const job = randomUUID();
  const { nodeId } = await store.register(job, 1, { address: 'n', creation_date: '2026-01-02 03:04:05' });
  const entry = { kind: 'log' as const, node_id: nodeId, time: '2026-01-02 03:04:07', level: 'INFO', message: 'x'.repeat(100) };
  await store.record(job, 1, entry);
  await expect(async () => {
    for (let i = 0; i < 10; i++) await store.record(job, 1, entry);
  }).rejects.toBeInstanceOf(RecordsFullError);
  const kept = await store.read(job);
  expect(kept?.logs.length).toBeGreaterThanOrEqual(1);
  expect(kept?.logs.length).toBeLessThan(5);
});

const [python] = p2pflDefaultCommand();
const hasP2pfl = spawnSync(python!, ['-c', 'import p2pfl.management.p2pfl_web_services'], { encoding: 'utf8' }).status === 0;
if (!hasP2pfl) console.warn('P2PFL client test skipped: .tools/p2pfl-venv has no p2pfl (run npm run bootstrap)');

/** Not spawnSync: the API under test answers from this process's event loop. */
function runPython(script: string, env: Record<string, string>): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(python!, ['-c', script], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => resolve({ ok: !err, stdout, stderr }));
  });
}

(hasP2pfl ? test : test.skip)("P2PFL's own client (P2pflWebServices) against the API: every call it makes is accepted", async () => {
  const job = randomUUID();
  const script = [
    'import datetime, os, sys',
    'from p2pfl.management.p2pfl_web_services import P2pflWebServices',
    'w = P2pflWebServices(os.environ["URL"], os.environ["KEY"])',
    'w.register_node("forge-node-0")',
    'w.send_log(datetime.datetime.now(), "forge-node-0", "INFO", "hello from p2pfl")',
    'w.send_local_metric("exp", 0, "train_loss", "forge-node-0", 1.5, 3)',
    'w.send_global_metric("exp", 0, "test_loss", "forge-node-0", 1.25)',
    'w.send_system_metric("forge-node-0", "ram", 42.0, datetime.datetime.now())',
    'print("ok", w.node_id["forge-node-0"])',
  ].join('\n');
  const run = await runPython(script, { URL: `${api.url}${base(job)}`, KEY: p2pflWebKey(home, job, 1) });
  expect({ ok: run.ok, stderr: run.stderr }).toEqual({ ok: true, stderr: '' });
  const nodeId = Number(/^ok (\d+)$/m.exec(run.stdout)?.[1]);
  const got = await http(api.url, 'GET', base(job));
  expect(got.json).toMatchObject({
    nodes: [{ node_id: nodeId, address: 'forge-node-0' }],
    logs: [{ node: 'forge-node-0', level: 'INFO', message: 'hello from p2pfl' }],
    metrics: {
      local: [{ metric_name: 'train_loss', exp_id: 'exp', round: 0, step: 3, value: 1.5 }],
      global: [{ metric_name: 'test_loss', value: 1.25 }],
      system: [{ metric_name: 'ram', value: 42 }],
    },
  });
  // A wrong key: P2PFL's client raises (what the experiment's guard turns into a counted failure).
  const refused = await runPython(script, { URL: `${api.url}${base(job)}`, KEY: p2pflWebKey(home, randomUUID(), 1) });
  expect(refused.ok).toBe(false);
  expect(refused.stderr).toMatch(/403/);
});
