/**
 * GET /jobs/:id (running, closed, unknown, no worker), GET /jobs (filters, paging, injection attempts) and
 * POST /jobs/:id/cancel (202, 403, 409, 404, 400) over real HTTP against the real dev server.
 */
import { generateKeyPair, signCancelRequest, type KeyPair } from '../../jobspec/signing';
import type { JobStatus } from '../../workflows/messages';
import { jobWorkflowId } from '../../common/names';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, processAlive, readStarts, startJob, tempDir, testConfig } from '../helpers/forge';
import { http, problemOf, startApi, waitForJob, type ApiHarness } from './harness';

const TQ = 'test-api-jobs';
const home = tempDir('forge-api-jobs-');
const starts = `${home}/starts.log`;
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 0), slow: fakeTrainer('ok', 60) } } }, starts);

let api: ApiHarness;
beforeAll(async () => {
  api = await startApi({ taskQueue: TQ, config, home });
});
afterAll(async () => {
  await api?.stop();
});

const now = (): number => Math.floor(Date.now() / 1000);

async function submit(image: 'ok' | 'slow', keys: KeyPair = generateKeyPair()) {
  const spec = makeSignedSpec({ trainer: { image } }, keys);
  const r = await http(api.url, 'POST', '/jobs', spec);
  expect(r.status).toBe(201);
  return { spec, keys };
}

describe('GET /jobs/:id', () => {
  test('a running job: the status query with deployments and progress', async () => {
    const { spec, keys } = await submit('slow');
    const s = await waitForJob<JobStatus>(api.url, spec.job_id, (x) => x.state === 'RUNNING' && x.deployments[0]?.progress !== null);
    expect(s).toMatchObject({ job_id: spec.job_id, job_type: 'finetune', owner_did: keys.did, attempt: 1, backend: 'local' });
    expect(s.transitions.map((t) => t.state)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING']);
    expect(s.deployments[0]?.progress).toMatchObject({ step: 1, maxSteps: 2, loss: 0.9 });
    await api.client.workflow.getHandle(jobWorkflowId(spec.job_id)).cancel();
  });

  test('a closed job answers too (completed from its result, cancelled from the query)', async () => {
    const { spec } = await submit('ok');
    await api.client.workflow.getHandle(jobWorkflowId(spec.job_id)).result();
    const r = await http(api.url, 'GET', `/jobs/${spec.job_id}`);
    expect(r.status).toBe(200);
    expect((r.json as JobStatus).state).toBe('COMPLETED');

    const slow = await submit('slow');
    await waitForJob<JobStatus>(api.url, slow.spec.job_id, (x) => x.state === 'RUNNING');
    const handle = api.client.workflow.getHandle(jobWorkflowId(slow.spec.job_id));
    await handle.cancel();
    await handle.result().catch(() => undefined);
    const cancelled = await http(api.url, 'GET', `/jobs/${slow.spec.job_id}`);
    expect((cancelled.json as JobStatus).state).toBe('CANCELLED');
  });

  test('an unknown id → 404, a malformed id → 400, both naming id', async () => {
    const unknown = await http(api.url, 'GET', '/jobs/00000000-0000-4000-8000-00000000dead');
    expect(unknown.status).toBe(404);
    expect(problemOf(unknown).errors?.[0]).toMatchObject({ in: 'path', path: 'id' });
    for (const bad of ['abc', '..%2F..%2Fetc%2Fpasswd', 'AAAAAAAA-0000-4000-8000-000000000000', '%00']) {
      const r = await http(api.url, 'GET', `/jobs/${bad}`);
      expect(r.status).toBe(400);
      expect(problemOf(r).errors?.[0]).toMatchObject({ in: 'path', path: 'id' });
    }
  });

  test('no worker answering the status query → 504 problem, bounded by the timeout', async () => {
    const lonely = await startApi({ taskQueue: `${TQ}-nobody`, config, home, worker: false, queryTimeoutMs: 1000 });
    try {
      const spec = makeSignedSpec();
      expect((await http(lonely.url, 'POST', '/jobs', spec)).status).toBe(201);
      const started = Date.now();
      const r = await http(lonely.url, 'GET', `/jobs/${spec.job_id}`);
      expect(r.status).toBe(504);
      expect(problemOf(r).type).toMatch(/timeout$/);
      expect(Date.now() - started).toBeLessThan(5000);
      await lonely.client.workflow.getHandle(jobWorkflowId(spec.job_id)).terminate('test over');
    } finally {
      await lonely.stop();
    }
  });
});

describe('GET /jobs', () => {
  const owner = generateKeyPair();
  const ids: string[] = [];
  beforeAll(async () => {
    for (const image of ['ok', 'ok', 'slow'] as const) ids.push((await submit(image, owner)).spec.job_id);
    await submit('ok'); // another owner
    await waitForJob(api.url, ids[0]!, (s) => s.state === 'COMPLETED');
    await waitForJob(api.url, ids[1]!, (s) => s.state === 'COMPLETED');
    await waitForJob(api.url, ids[2]!, (s) => s.state === 'RUNNING');
  });
  afterAll(async () => {
    await api.client.workflow.getHandle(jobWorkflowId(ids[2]!)).cancel();
  });

  type Page = {
    jobs: { job_id: string; state: string; owner_did: string; status_url: string; workflow_status: string }[];
    next_page_token: string | null;
  };
  /** Visibility is eventually consistent: poll until the listing shows what we expect. */
  async function list(query: string, predicate: (p: Page) => boolean): Promise<Page> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await http(api.url, 'GET', `/jobs?${query}`);
      expect(r.status).toBe(200);
      const page = r.json as Page;
      if (predicate(page) || Date.now() > deadline) return page;
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  test('filters by owner, state (one or several), job type and backend', async () => {
    const o = encodeURIComponent(owner.did);
    const all = await list(`owner=${o}`, (p) => p.jobs.length === 3);
    expect(all.jobs.map((j) => j.job_id).sort()).toEqual([...ids].sort());
    expect(all.jobs.every((j) => j.owner_did === owner.did && j.status_url.endsWith(`/jobs/${j.job_id}`))).toBe(true);
    const done = await list(`owner=${o}&state=COMPLETED`, (p) => p.jobs.length === 2);
    expect(done.jobs.map((j) => j.job_id).sort()).toEqual([ids[0], ids[1]].sort());
    expect(done.jobs.every((j) => j.workflow_status === 'COMPLETED')).toBe(true);
    const running = await list(`owner=${o}&state=RUNNING`, (p) => p.jobs.length === 1);
    expect(running.jobs[0]?.job_id).toBe(ids[2]);
    expect((await list(`owner=${o}&state=RUNNING,COMPLETED&job_type=finetune&backend=local`, (p) => p.jobs.length === 3)).jobs).toHaveLength(3);
    expect((await list(`owner=${o}&job_type=rl`, () => true)).jobs).toHaveLength(0);
  });

  test('pages with page_size and next_page_token', async () => {
    const o = encodeURIComponent(owner.did);
    await list(`owner=${o}`, (p) => p.jobs.length === 3);
    const seen: string[] = [];
    let token: string | null = null;
    let pages = 0;
    do {
      const r = await http(api.url, 'GET', `/jobs?owner=${o}&page_size=1${token ? `&page_token=${token}` : ''}`);
      expect(r.status).toBe(200);
      const page = r.json as Page;
      seen.push(...page.jobs.map((j) => j.job_id));
      token = page.next_page_token;
      pages++;
    } while (token && pages < 10);
    expect(seen.sort()).toEqual([...ids].sort());
  });

  test('query injection and bad filters → 400 naming the parameter', async () => {
    const attempts: [string, string][] = [
      [`owner=${encodeURIComponent(`${owner.did}' OR WorkflowType != 'x`)}`, 'owner'],
      [`owner=${encodeURIComponent(`${owner.did}") OR ("a"="a`)}`, 'owner'],
      [`state=${encodeURIComponent("RUNNING' OR 'a'='a")}`, 'state'],
      [`state=RUNNING,NOPE`, 'state'],
      [`backend=${encodeURIComponent("local' OR ForgeBackend != '")}`, 'backend'],
      [`job_type=${encodeURIComponent('finetune\\')}`, 'job_type'],
      ['page_size=0', 'page_size'],
      ['page_size=abc', 'page_size'],
      ['page_token=not%20a%20token', 'page_token'],
      ['sql=1', 'sql'],
    ];
    for (const [query, field] of attempts) {
      const r = await http(api.url, 'GET', `/jobs?${query}`);
      expect(r.status).toBe(400);
      expect(problemOf(r).errors?.map((e) => e.path)).toContain(field);
    }
    const garbage = await http(api.url, 'GET', `/jobs?page_token=${Buffer.from([0xff, 0x00, 0x13, 0x37]).toString('base64url')}`);
    expect(garbage.status).toBe(400);
    expect(problemOf(garbage).errors?.[0]?.path).toBe('page_token');
  });
});

describe('POST /jobs/:id/cancel', () => {
  test("the owner's signed cancel → 202, the job ends CANCELLED with its trainer gone; again → 409", async () => {
    const { spec, keys } = await submit('slow');
    // Progress shows once the trainer printed its first line, after it logged its pid.
    await waitForJob<JobStatus>(api.url, spec.job_id, (s) => s.state === 'RUNNING' && !!s.deployments[0]?.progress);
    const pid = readStarts(starts).find((s) => s.job === spec.job_id)?.pid;
    expect(pid).toBeDefined();
    const req = signCancelRequest(spec.job_id, now(), keys.secretKey);
    const r = await http(api.url, 'POST', `/jobs/${spec.job_id}/cancel`, req);
    expect(r.status).toBe(202);
    expect(r.json).toMatchObject({ job_id: spec.job_id, status_url: `${api.url}/jobs/${spec.job_id}` });
    const s = await waitForJob<JobStatus>(api.url, spec.job_id, (x) => x.state === 'CANCELLED');
    expect(s.transitions.at(-1)?.reason).toMatch(/cancelled by its owner/);
    expect(processAlive(pid!)).toBe(false);
    await api.client.workflow.getHandle(jobWorkflowId(spec.job_id)).result();
    const again = await http(api.url, 'POST', `/jobs/${spec.job_id}/cancel`, signCancelRequest(spec.job_id, now(), keys.secretKey));
    expect(again.status).toBe(409);
    expect(problemOf(again)).toMatchObject({ state: 'CANCELLED' });
  });

  test('a stranger, a stale request or a forged signature → 403 naming the field; the job goes on', async () => {
    const { spec, keys } = await submit('slow');
    await waitForJob<JobStatus>(api.url, spec.job_id, (s) => s.state === 'RUNNING');
    const refused: [object, string][] = [
      [signCancelRequest(spec.job_id, now(), generateKeyPair().secretKey), 'signature_ed25519'],
      [signCancelRequest(spec.job_id, now() - 3600, keys.secretKey), 'issued_at'],
      [{ ...signCancelRequest(spec.job_id, now(), keys.secretKey), signature_ed25519: 'A'.repeat(86) }, 'signature_ed25519'],
    ];
    for (const [body, field] of refused) {
      const r = await http(api.url, 'POST', `/jobs/${spec.job_id}/cancel`, body);
      expect(r.status).toBe(403);
      const p = problemOf(r);
      expect(p.type).toMatch(/cancel-refused$/);
      expect(p.errors?.[0]?.path).toBe(field);
    }
    expect((await http(api.url, 'GET', `/jobs/${spec.job_id}`)).json).toMatchObject({ state: 'RUNNING' });
    expect((await http(api.url, 'POST', `/jobs/${spec.job_id}/cancel`, signCancelRequest(spec.job_id, now(), keys.secretKey))).status).toBe(202);
  });

  test('a finished job → 409; an unknown job → 404; a request for another job or malformed → 400', async () => {
    const { spec, keys } = await submit('ok');
    await api.client.workflow.getHandle(jobWorkflowId(spec.job_id)).result();
    const done = await http(api.url, 'POST', `/jobs/${spec.job_id}/cancel`, signCancelRequest(spec.job_id, now(), keys.secretKey));
    expect(done.status).toBe(409);
    expect(problemOf(done).type).toMatch(/already-terminal$/);

    const ghost = '00000000-0000-4000-8000-00000000beef';
    const unknown = await http(api.url, 'POST', `/jobs/${ghost}/cancel`, signCancelRequest(ghost, now(), keys.secretKey));
    expect(unknown.status).toBe(404);

    const mismatch = await http(api.url, 'POST', `/jobs/${spec.job_id}/cancel`, signCancelRequest(ghost, now(), keys.secretKey));
    expect(mismatch.status).toBe(400);
    expect(problemOf(mismatch).errors?.[0]?.path).toBe('job_id');

    const { signature_ed25519: _s, ...unsigned } = signCancelRequest(spec.job_id, now(), keys.secretKey);
    const malformed = await http(api.url, 'POST', `/jobs/${spec.job_id}/cancel`, { ...unsigned, action: 'delete', extra: 1 });
    expect(malformed.status).toBe(400);
    expect(problemOf(malformed).errors?.map((e) => e.path).sort()).toEqual(['action', 'extra', 'signature_ed25519']);
  });

  test('a job started directly on a queue no worker polls: cancel answers 504 in bounded time', async () => {
    const lonely = await startApi({ taskQueue: `${TQ}-nobody2`, config, home, worker: false, queryTimeoutMs: 1000 });
    try {
      const keys = generateKeyPair();
      const spec = makeSignedSpec({}, keys);
      const handle = await startJob(lonely.client, `${TQ}-nobody2`, spec);
      const r = await http(lonely.url, 'POST', `/jobs/${spec.job_id}/cancel`, signCancelRequest(spec.job_id, now(), keys.secretKey));
      expect(r.status).toBe(504);
      await handle.terminate('test over');
    } finally {
      await lonely.stop();
    }
  });
});
