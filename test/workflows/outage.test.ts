/**
 * Jobs in a hostile world (issue 13): a cancel is not a failure, an unexpected error ends the job ABANDONED (INTERNAL)
 * with its deployment closed, and a backend API outage is ridden out within `backend_outage_seconds` — past it the
 * attempt fails LOST and the job fails over; a close that cannot get through is recorded as close pending. In no case
 * does a Temporal execution end Failed. Against the project's stand-in for the Prime Intellect API (answering 503
 * while "down") and the local backend.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import { parseConfig } from '../../common/config';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { generateKeyPair, signCancelRequest } from '../../jobspec/signing';
import { cancelJob } from '../../client/cancel-job';
import type { JobStatus } from '../../workflows/messages';
import { FakePrimeIntellect } from '../fakes/prime-intellect';
import { FAKE_TRAINER, FAST_SETTINGS, fakeTrainer, pollUntil, processAlive, readStarts, startJob, startWorker, states, testClient, waitForStatus, type RunningWorker } from '../helpers/forge';
import { makeSignedSpec } from '../jobspec/fixtures';

const TQ = 'test-outage';
const PI_KEY = 'pit_outage-key-SECRET-93b1c0';
/** The operator's outage budget in this file (seconds): a close then keeps trying for 4 × it. */
const OUTAGE_S = 6;
const home = mkdtempSync(path.join(os.tmpdir(), 'forge-outage-'));
const starts = path.join(home, 'starts.log');
/** A trainer (in a pod or a local process) runs until its job's release file exists. */
const release = (jobId: string): string => path.join(home, `release-${jobId}`);
const held = { programs: { 'forge-trainer': ['/bin/sh', '-c', `exec /bin/sh '${FAKE_TRAINER}' wait-file 0.2 '${home}/release-'"$JOB_ID"`] } };

const pi = new FakePrimeIntellect({
  apiKey: PI_KEY,
  offers: [{ cloudId: 'c1', gpuType: 'CPU_NODE', gpuCount: 1, price: 1.5 }],
  templates: { 'tpl-held': held },
  provisionMs: 100,
});
let worker: RunningWorker | undefined;
let client: Client;
let closeClient: (() => Promise<void>) | undefined;

beforeAll(async () => {
  await pi.start();
  const local = (command: string[]) => ({
    kind: 'local',
    poll_interval_ms: 100,
    trainers: { [DEFAULT_TRAINER_IMAGE]: { command, env: { FORGE_TEST_STARTS: starts } } },
  });
  const config = parseConfig({
    backends: {
      pi: {
        kind: 'prime-intellect',
        api_url: pi.url,
        api_key: PI_KEY,
        hourly_usd: 3,
        poll_interval_ms: 200,
        request_timeout_ms: 2000,
        trainers: { [DEFAULT_TRAINER_IMAGE]: { template_id: 'tpl-held' } },
      },
      local: local(fakeTrainer('ok', 60)),
      'local-b': local(fakeTrainer('ok', 0.2)),
    },
    backend_outage_seconds: OUTAGE_S,
    // Provider, then fallbacks (local-b is cheaper, price order would take it first).
    admission: { order: 'list' },
    ...FAST_SETTINGS,
  });
  worker = await startWorker(config, home, TQ);
  const c = await testClient();
  client = c.client;
  closeClient = () => c.connection.close();
});

afterAll(async () => {
  pi.scenario.down = false;
  await worker?.stop();
  await closeClient?.();
  await pi.stop();
});

afterEach(() => {
  pi.scenario.down = false;
});

const now = () => Math.floor(Date.now() / 1000);

/** Resolves once the execution has closed; its status (Temporal's word) and the job's status query. */
async function ended(handle: WorkflowHandle): Promise<{ execution: string; status: JobStatus }> {
  await handle.result().catch(() => undefined);
  const desc = await handle.describe();
  return { execution: desc.status.name, status: await handle.query<JobStatus>('status') };
}

function podOf(s: JobStatus, attempt = 1): string {
  const d = s.deployments.find((x) => x.attempt === attempt && x.backend === 'pi');
  if (!d) throw new Error(`no pi deployment for attempt ${attempt}`);
  return d.id;
}

async function runningPiJob(fallbacks: string[] = []) {
  const keys = generateKeyPair();
  const spec = makeSignedSpec({ backend: { provider: 'pi', fallbacks, max_cost_usd: 5 } }, keys);
  const handle = await startJob(client, TQ, spec);
  const status = await waitForStatus(handle, (s) => s.state === 'RUNNING');
  return { keys, spec, handle, pod: podOf(status) };
}

describe('a cancel is the job’s cancellation, not a failed attempt', () => {
  async function runningLocalJob() {
    const keys = generateKeyPair();
    const spec = makeSignedSpec({ backend: { provider: 'local', fallbacks: ['local-b'] } }, keys);
    const handle = await startJob(client, TQ, spec);
    await waitForStatus(handle, (s) => s.state === 'RUNNING' && !!s.deployments[0]?.progress);
    const pid = readStarts(starts).find((x) => x.job === spec.job_id)?.pid;
    expect(pid).toBeDefined();
    return { keys, spec, handle, pid: pid! };
  }

  test('a Temporal cancel of a running job with a fallback records no FAILED or RETRY, ends CANCELLED, trainer gone', async () => {
    const { handle, pid } = await runningLocalJob();
    await handle.cancel();
    expect(await handle.result().catch((e: unknown) => e)).toBeInstanceOf(WorkflowFailedError);
    const { execution, status } = await ended(handle);
    expect(execution).toBe('CANCELLED');
    expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'CANCELLED']);
    expect(status.errors).toEqual([]);
    expect(status.deployments).toHaveLength(1);
    expect(status.deployments.every((d) => d.closed)).toBe(true);
    expect(processAlive(pid)).toBe(false);
  });

  test("the owner's signed cancel records no FAILED or RETRY either", async () => {
    const { keys, spec, handle, pid } = await runningLocalJob();
    const status = await cancelJob(handle, signCancelRequest(spec.job_id, now(), keys.secretKey));
    expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'CANCELLED']);
    expect(status.errors).toEqual([]);
    expect(status.deployments.every((d) => d.closed)).toBe(true);
    expect(processAlive(pid)).toBe(false);
    expect((await ended(handle)).execution).toBe('COMPLETED');
  });
});

test('an unexpected error inside the workflow ends the job ABANDONED (INTERNAL) with its pod deleted, not a stuck workflow task', async () => {
  // A pod that goes back to PROVISIONING and then ACTIVE again makes the workflow record RUNNING twice, a transition
  // its state table does not have (RUNNING → RUNNING): an IllegalTransitionError nobody expected. Before, it failed
  // the workflow task again and again: the job stayed RUNNING forever, its pod billing.
  const { handle, pod } = await runningPiJob();
  pi.pods.get(pod)!.status = 'PROVISIONING';
  await waitForStatus(handle, (s) => s.deployments[0]?.state === 'PENDING');
  pi.pods.get(pod)!.status = 'ACTIVE';
  const { execution, status } = await ended(handle);
  expect(execution).toBe('COMPLETED');
  expect(status.state).toBe('ABANDONED');
  expect(status.last_error).toMatchObject({ class: 'INTERNAL', detail: expect.stringMatching(/IllegalTransitionError: illegal job state transition RUNNING → RUNNING/) });
  expect(status.transitions.at(-1)?.reason).toMatch(/^INTERNAL: unexpected error in the orchestrator: .*every deployment closed/);
  expect(states(status).slice(-2)).toEqual(['FAILED', 'ABANDONED']);
  expect(status.deployments[0]?.closed).toBe(true);
  expect(pi.live).toEqual([]);
});

describe('a Prime Intellect API outage (503 on every request)', () => {
  test('shorter than backend_outage_seconds mid-run: the job completes on attempt 1', async () => {
    const { spec, handle } = await runningPiJob(['local-b']);
    pi.scenario.down = true;
    await new Promise((r) => setTimeout(r, (OUTAGE_S / 2) * 1000));
    pi.scenario.down = false;
    // Answering again: no longer shown as unreachable.
    await waitForStatus(handle, (s) => s.deployments[0]?.state === 'RUNNING' && s.deployments[0].api_unreachable_since === undefined);
    writeFileSync(release(spec.job_id), '');
    const { execution, status } = await ended(handle);
    expect(execution).toBe('COMPLETED');
    expect(status.state).toBe('COMPLETED');
    expect(status.attempt).toBe(1);
    expect(status.errors).toEqual([]);
    expect(status.deployments[0]?.api_unreachable_since).toBeUndefined();
    expect(pi.live).toEqual([]);
  });

  test('longer than backend_outage_seconds: the attempt fails LOST, the pod is deleted once the API is back, the job fails over', async () => {
    const { handle, pod } = await runningPiJob(['local-b']);
    pi.scenario.down = true;
    const since = Date.now();
    // Past a third of the budget the status says since when the API has been unreachable.
    const noticed = await waitForStatus(handle, (s) => !!s.deployments[0]?.api_unreachable_since, 15_000);
    expect(noticed.state).toBe('RUNNING');
    expect(Date.parse(noticed.deployments[0]!.api_unreachable_since!)).toBeGreaterThanOrEqual(since - 1000);
    // The follower gives up after the budget; the close after the attempt then keeps trying (4 × the budget).
    await pollUntil(async () => (pi.requests.some((r) => r.method === 'DELETE' && r.path.endsWith(pod)) ? true : undefined), 'a DELETE of the pod', 30_000);
    expect(Date.now() - since).toBeGreaterThanOrEqual(OUTAGE_S * 1000);
    expect(pi.live.map((p) => p.id)).toEqual([pod]);
    pi.scenario.down = false;
    const { execution, status } = await ended(handle);
    expect(execution).toBe('COMPLETED');
    expect(status.state).toBe('COMPLETED');
    expect(status.errors).toMatchObject([{ class: 'LOST', backend: 'pi', attempt: 1, detail: expect.stringMatching(/^backend pi: API unreachable since .*longer than its outage budget \(backend_outage_seconds 6\)/) }]);
    expect(status.transitions.find((t) => t.state === 'RETRY')?.reason).toMatch(/LOST \(failover\).* → local-b$/);
    expect(status.deployments.map((d) => [d.backend, d.closed])).toEqual([
      ['pi', true],
      ['local-b', true],
    ]);
    expect(pi.live).toEqual([]);
  });

  test('a signed cancel during an outage ends CANCELLED and deletes the pod once the API is back', async () => {
    const { keys, spec, handle, pod } = await runningPiJob();
    pi.scenario.down = true;
    const cancelled = cancelJob(handle, signCancelRequest(spec.job_id, now(), keys.secretKey));
    await new Promise((r) => setTimeout(r, OUTAGE_S * 1000));
    expect(pi.live.map((p) => p.id)).toEqual([pod]);
    pi.scenario.down = false;
    const status = await cancelled;
    expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'CANCELLED']);
    expect(status.deployments[0]).toMatchObject({ closed: true });
    expect(status.deployments[0]?.close_pending).toBeUndefined();
    expect(pi.live).toEqual([]);
    expect((await ended(handle)).execution).toBe('COMPLETED');
  });

  test('a Temporal cancel during an outage longer than the close budget ends CANCELLED with the pod recorded as close pending', async () => {
    const { handle, pod } = await runningPiJob();
    pi.scenario.down = true;
    await handle.cancel();
    const { execution, status } = await ended(handle);
    expect(execution).toBe('CANCELLED');
    expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'CANCELLED']);
    expect(status.deployments[0]).toMatchObject({ closed: false, close_pending: expect.stringMatching(/close failed for 4 × backend_outage_seconds \(24 s\).*the reaper closes it once pi answers/) });
    // Left for the reaper: still there.
    expect(pi.live.map((p) => p.id)).toEqual([pod]);
  }, 120_000);
});
