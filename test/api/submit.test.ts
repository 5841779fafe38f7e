/**
 * POST /jobs against the real dev server: 201 then 200 for the same spec, 409 for a different spec under a used id,
 * 401/403/413/415, and 50 concurrent identical POSTs making exactly one workflow.
 */
import { generateKeyPair, signSpec } from '../../jobspec/signing';
import { jobWorkflowId } from '../../common/names';
import { makeSignedSpec, makeUnsignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, readStarts, startJob, tempDir, testClient, testConfig } from '../helpers/forge';
import { http, problemOf, startApi, waitForJob, type ApiHarness } from './harness';

const TQ = 'test-api-submit';
const home = tempDir('forge-api-submit-');
const starts = `${home}/starts.log`;
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 1), slow: fakeTrainer('ok', 60) } } }, starts);
const allowed = generateKeyPair();
const restrictedConfig = { ...config, allowed_owners: [allowed.did] };

let api: ApiHarness;
let restricted: ApiHarness;
beforeAll(async () => {
  api = await startApi({ taskQueue: TQ, config, home });
  restricted = await startApi({ taskQueue: `${TQ}-restricted`, config: restrictedConfig, home, worker: false });
});
afterAll(async () => {
  await api?.stop();
  await restricted?.stop();
});

test('a signed spec is accepted with 201, its links, and runs to COMPLETED', async () => {
  const spec = makeSignedSpec({ trainer: { image: 'ok' } });
  const r = await http(api.url, 'POST', '/jobs', spec);
  expect(r.status).toBe(201);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  expect(r.json).toEqual({
    job_id: spec.job_id,
    workflow_id: jobWorkflowId(spec.job_id),
    status_url: `${api.url}/jobs/${spec.job_id}`,
    web_ui_url: `http://127.0.0.1:8233/namespaces/default/workflows/${jobWorkflowId(spec.job_id)}`,
  });
  expect(r.headers.get('location')).toBe(`${api.url}/jobs/${spec.job_id}`);
  const done = await waitForJob<{ state: string }>(api.url, spec.job_id, (s) => s.state === 'COMPLETED');
  expect(done.state).toBe('COMPLETED');
  // The same spec after the job finished: still the existing job, nothing restarted.
  const again = await http(api.url, 'POST', '/jobs', spec);
  expect(again.status).toBe(200);
  expect(readStarts(starts).filter((s) => s.job === spec.job_id)).toHaveLength(1);
});

test("a job starts with its owner as Temporal's fairness key, so one owner's flood cannot hold up the others", async () => {
  const spec = makeSignedSpec({ trainer: { image: 'ok' } });
  expect((await http(api.url, 'POST', '/jobs', spec)).status).toBe(201);
  const { client, connection } = await testClient();
  try {
    const d = await client.workflow.getHandle(jobWorkflowId(spec.job_id)).describe();
    expect(d.priority?.fairnessKey).toBe(spec.owner_did);
  } finally {
    await connection.close();
  }
});

test('the same spec again → 200 with the existing job; a different spec under that id → 409 naming job_id', async () => {
  const keys = generateKeyPair();
  const spec = makeSignedSpec({ trainer: { image: 'slow' } }, keys);
  expect((await http(api.url, 'POST', '/jobs', spec)).status).toBe(201);
  const same = await http(api.url, 'POST', '/jobs', spec);
  expect(same.status).toBe(200);
  expect((same.json as { workflow_id: string }).workflow_id).toBe(jobWorkflowId(spec.job_id));

  const { signature_ed25519: _s, ...unsigned } = spec;
  const changed = signSpec({ ...unsigned, objective: { ...unsigned.objective, max_steps: 11 } }, keys.secretKey);
  const conflict = await http(api.url, 'POST', '/jobs', changed);
  expect(conflict.status).toBe(409);
  const p = problemOf(conflict);
  expect(p.type).toMatch(/job-id-conflict$/);
  expect(p.errors?.map((e) => e.path)).toEqual(['job_id']);
  await api.client.workflow.getHandle(jobWorkflowId(spec.job_id)).terminate('test over');
});

test('50 concurrent identical POSTs start exactly one workflow', async () => {
  const spec = makeSignedSpec({ trainer: { image: 'ok' } });
  const results = await Promise.all(Array.from({ length: 50 }, () => http(api.url, 'POST', '/jobs', spec)));
  const codes = results.map((r) => r.status).sort();
  expect(codes.filter((c) => c === 201)).toHaveLength(1);
  expect(codes.filter((c) => c === 200)).toHaveLength(49);
  const workflowId = jobWorkflowId(spec.job_id);
  await waitForJob(api.url, spec.job_id, (s) => s.state === 'COMPLETED');
  const runs = await api.client.workflowService.listWorkflowExecutions({ namespace: 'default', query: `WorkflowId = '${workflowId}'` });
  expect(runs.executions).toHaveLength(1);
  expect(readStarts(starts).filter((s) => s.job === spec.job_id)).toHaveLength(1);
});

test('a job started without the API is recognised by its input: same spec 200, different 409', async () => {
  const keys = generateKeyPair();
  const spec = makeSignedSpec({ trainer: { image: 'slow' } }, keys);
  const handle = await startJob(api.client, `${TQ}-nobody`, spec); // no worker there: no memo but the start input
  expect((await http(api.url, 'POST', '/jobs', spec)).status).toBe(200);
  const other = signSpec(makeUnsignedSpec({ job_id: spec.job_id, trainer: { image: 'slow' }, objective: { max_steps: 12 } }, keys), keys.secretKey);
  expect((await http(api.url, 'POST', '/jobs', other)).status).toBe(409);
  await handle.terminate('test over');
});

test('a forged signature, or one over a different spec → 401 naming signature_ed25519', async () => {
  const keys = generateKeyPair();
  const spec = makeSignedSpec({}, keys);
  const forged = { ...spec, signature_ed25519: 'A'.repeat(86) };
  const otherSpec = makeSignedSpec({ objective: { max_steps: 99 } }, keys);
  const overOther = { ...spec, signature_ed25519: otherSpec.signature_ed25519 };
  const stranger = generateKeyPair();
  const byStranger = {
    ...spec,
    signature_ed25519: makeSignedSpec({ job_id: spec.job_id, created_at: spec.created_at, owner_did: keys.did }, stranger).signature_ed25519,
  };
  for (const body of [forged, overOther, byStranger]) {
    const r = await http(api.url, 'POST', '/jobs', body);
    expect(r.status).toBe(401);
    const p = problemOf(r);
    expect(p.type).toMatch(/bad-signature$/);
    expect(p.errors?.[0]?.path).toBe('signature_ed25519');
  }
});

test("an owner outside the operator's allowed_owners → 403; an allowed one gets in", async () => {
  const r = await http(restricted.url, 'POST', '/jobs', makeSignedSpec({ trainer: { image: 'ok' } }));
  expect(r.status).toBe(403);
  const p = problemOf(r);
  expect(p.type).toMatch(/owner-not-allowed$/);
  expect(p.errors?.[0]?.path).toBe('owner_did');
  const ok = makeSignedSpec({ trainer: { image: 'ok' } }, allowed);
  expect((await http(restricted.url, 'POST', '/jobs', ok)).status).toBe(201);
  await restricted.client.workflow.getHandle(jobWorkflowId(ok.job_id)).terminate('test over');
});

test('a body over 256 KiB → 413; text/plain → 415; an unknown backend → 400 naming it', async () => {
  const big = makeSignedSpec({ base_model: { name: 'x'.repeat(300 * 1024) } });
  const tooBig = await http(api.url, 'POST', '/jobs', big);
  expect(tooBig.status).toBe(413);
  expect(problemOf(tooBig).type).toMatch(/payload-too-large$/);

  const text = await http(api.url, 'POST', '/jobs', JSON.stringify(makeSignedSpec()), { 'content-type': 'text/plain' });
  expect(text.status).toBe(415);
  expect(problemOf(text).errors?.[0]?.path).toBe('content-type');

  const unknown = await http(api.url, 'POST', '/jobs', makeSignedSpec({ backend: { provider: 'akash', fallbacks: ['local', 'nowhere'] } }));
  expect(unknown.status).toBe(400);
  expect(problemOf(unknown).errors?.map((e) => e.path)).toEqual(['backend.provider', 'backend.fallbacks.1']);
  expect((await http(api.url, 'GET', '/healthz')).status).toBe(200);
});
