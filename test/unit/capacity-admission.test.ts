/**
 * How admitAndSubmit and closeDeployment (activities/control/activities.ts) use a capped backend's admission entity, with the
 * entity's own rule (workflows/capacity/slots.ts) in memory in place of the workflow: the slot is taken before the
 * submit, given back when the deployment is closed or the submit is refused, and a job admitted on one capped backend
 * leaves the queue of the other.
 */
import { CapacityGate, type SlotRequest } from '../../activities/control/capacity';
import type { Backend, DeploymentRef } from '../../activities/backends/types';
import { BackendError } from '../../activities/backends/types';
import { createControlActivities } from '../../activities/control/activities';
import { parseConfig } from '../../common/config';
import { trainingJobSpecSchema } from '../../jobspec/schema';
import { acquire, emptyCapacity, release, type AcquireResult, type CapacityState, type ReleaseRequest } from '../../workflows/capacity/slots';
import { makeSignedSpec, signedOf } from '../jobspec/fixtures';

/** The entity's rule in memory, one state per backend. */
class MemoryGate extends CapacityGate {
  readonly states = new Map<string, CapacityState>();
  constructor() {
    super(60, () => {
      throw new Error('no client in this test');
    });
  }
  state(backend: string): CapacityState {
    const s = this.states.get(backend) ?? emptyCapacity(0);
    this.states.set(backend, s);
    return s;
  }
  override async acquire(backend: string, r: SlotRequest): Promise<AcquireResult> {
    return acquire(this.state(backend), r, Date.now()).result;
  }
  override async release(backend: string, r: ReleaseRequest) {
    return release(this.state(backend), r, Date.now());
  }
}

function fakeBackend(name: string, refuse = false): Backend {
  return {
    name,
    kind: 'fake',
    health: async () => ({ ok: true, detail: 'fake' }),
    quote: async () => ({ available: true, hourlyUsd: name === 'cheap' ? 0 : 1 }),
    submit: async ({ spec }, attempt): Promise<DeploymentRef> => {
      if (refuse) throw new BackendError('NO_CAPACITY', `${name}: no machine after all`);
      return { backend: name, kind: 'fake', id: `${spec.job_id}/${attempt}`, jobId: spec.job_id, attempt, submittedAt: new Date().toISOString(), data: {} };
    },
    status: async () => ({ state: 'RUNNING', costUsd: 0 }),
    logs: async () => ({ lines: [], cursor: '' }),
    collectArtifacts: async () => [],
    close: async () => undefined,
  };
}

/** A backend whose API refuses connections: its submit while `api.down`, its quote too while `api.quoteDown`. */
function flakyBackend(name: string, api: { down: boolean; quoteDown?: boolean }): Backend {
  const b = fakeBackend(name);
  const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
  return {
    ...b,
    quote: async (spec) => {
      if (api.quoteDown) throw refused();
      return b.quote(spec);
    },
    submit: async (signed, attempt, options) => {
      if (api.down) throw refused();
      return b.submit(signed, attempt, options);
    },
  };
}

const local = (max?: number) => ({ kind: 'local', ...(max !== undefined && { max_concurrent: max }), trainers: { x: { command: ['/bin/true'] } } });

function setup(backends: Record<string, Backend>, caps: Record<string, number | undefined>) {
  const gate = new MemoryGate();
  const config = parseConfig({ backends: Object.fromEntries(Object.entries(caps).map(([n, c]) => [n, local(c)])) });
  const acts = createControlActivities({ config, backends: new Map(Object.entries(backends)), pollIntervalMs: () => 1000, fairness: 'owner', capacity: gate });
  const job = (provider: string, fallbacks: string[] = []) => {
    const raw = makeSignedSpec({ backend: { provider, fallbacks } });
    const spec = trainingJobSpecSchema.parse(raw);
    return {
      raw,
      spec,
      submit: () => acts.admitAndSubmit({ candidates: [provider, ...fallbacks], preferred: 0, signed: signedOf(raw), attempt: 1, budgetUsd: 10 }),
    };
  };
  return { gate, acts, job };
}

test('the slot is taken before the submit and given back at the close; the next job waits until then', async () => {
  const { gate, acts, job } = setup({ pi: fakeBackend('pi') }, { pi: 1 });
  const a = job('pi');
  const first = await a.submit();
  expect(first && 'submission' in first).toBe(true);
  expect(gate.state('pi').holders.map((h) => h.workflowId)).toEqual([`job-${a.spec.job_id}`]);
  const b = job('pi');
  expect(await b.submit()).toBeNull(); // queued at the entity
  expect(gate.state('pi').waiters.map((w) => w.workflowId)).toEqual([`job-${b.spec.job_id}`]);
  await acts.closeDeployment((first as { submission: { deployment: DeploymentRef } }).submission.deployment);
  expect(gate.state('pi').holders).toEqual([expect.objectContaining({ workflowId: `job-${b.spec.job_id}`, seen: false })]);
  expect(await b.submit()).toMatchObject({ index: 0, submission: { deployment: { jobId: b.spec.job_id } } });
});

test('a refused submit gives the slot back at once', async () => {
  const { gate, job } = setup({ pi: fakeBackend('pi', true) }, { pi: 1 });
  expect(await job('pi').submit()).toMatchObject({ failure: { class: 'NO_CAPACITY' } });
  expect(gate.state('pi').holders).toEqual([]);
});

test('admitted on one capped backend, the job leaves the queue of the other', async () => {
  const { gate, job } = setup({ cheap: fakeBackend('cheap'), pi: fakeBackend('pi') }, { cheap: 1, pi: 1 });
  await job('cheap').submit(); // fills cheap
  const b = job('cheap', ['pi']);
  // Cheapest first: queued on cheap, then admitted on pi.
  expect(await b.submit()).toMatchObject({ index: 1 });
  expect(gate.state('cheap').waiters).toEqual([]);
  expect(gate.state('pi').holders.map((h) => h.workflowId)).toEqual([`job-${b.spec.job_id}`]);
});

test('a backend without max_concurrent never asks the entity', async () => {
  const { gate, job } = setup({ free: fakeBackend('free') }, { free: undefined });
  expect(await job('free').submit()).toMatchObject({ index: 0 });
  expect(gate.states.size).toBe(0);
});

test('a transient submit error keeps the slot for the same attempt; the next attempt gives it back even while it waits elsewhere', async () => {
  const api = { down: true, quoteDown: false };
  const { gate, acts, job } = setup({ pi: flakyBackend('pi', api), akash: fakeBackend('akash') }, { pi: 1, akash: 1 });
  const a = job('pi', ['akash']);
  const attempt = (n: number, preferred: number) =>
    acts.admitAndSubmit({ candidates: ['pi', 'akash'], preferred, signed: signedOf(a.raw), attempt: n, budgetUsd: 10 });
  // akash is full; attempt 1 takes pi's slot, then pi's API goes down under its submit: the job waits, holding the slot.
  expect(await job('akash').submit()).toMatchObject({ index: 0 });
  expect(await attempt(1, 0)).toBeNull();
  expect(gate.state('pi').holders).toEqual([expect.objectContaining({ workflowId: `job-${a.spec.job_id}`, attempt: 1 })]);
  // Another job finds pi full: the slot stays the attempt's (its retried submit reuses it).
  const b = job('pi');
  expect(await b.submit()).toBeNull();
  // pi stays down (quotes fail too): attempt 1 gives up (LOST after pi's outage budget); attempt 2 fails over to
  // akash, where it waits for room, and never asks pi again.
  api.quoteDown = true;
  expect(await attempt(2, 1)).toBeNull();
  // pi's slot of attempt 1 went back (to the job waiting there), not held while attempt 2 waits on akash.
  expect(gate.state('pi').holders.map((h) => h.workflowId)).toEqual([`job-${b.spec.job_id}`]);
  Object.assign(api, { down: false, quoteDown: false });
  expect(await b.submit()).toMatchObject({ index: 0, submission: { deployment: { jobId: b.spec.job_id } } });
});

test('a transient submit error: the retried submit of the same attempt reuses its slot', async () => {
  const api = { down: true };
  const flaky = flakyBackend('pi', api);
  const { gate, job } = setup({ pi: flaky }, { pi: 1 });
  const a = job('pi');
  expect(await a.submit()).toBeNull();
  api.down = false;
  expect(await a.submit()).toMatchObject({ index: 0, submission: { deployment: { attempt: 1 } } });
  expect(gate.state('pi').holders).toEqual([expect.objectContaining({ workflowId: `job-${a.spec.job_id}`, attempt: 1 })]);
});
