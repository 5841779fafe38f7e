/**
 * The reaper on the remote backends, against the project's fakes and a real dev server: a Prime Intellect pod
 * named like a forge attempt whose job does not exist is deleted, a pod without the forge name is untouched; an
 * Akash (console) deployment of a forge attempt whose job does not exist is closed, one of the same account that is
 * no attempt of this orchestrator is untouched; a deployment made by a replica whose FORGE_HOME vanished (and whose
 * job was terminated) is found from the Console's listing alone and closed by a reaper on another replica; with
 * installations sharing the accounts, each reaper closes only its own installation's.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { AkashBackend } from '../../activities/backends/akash/akash';
import { akashSdlOptions, buildSdl } from '../../activities/backends/akash/akash-sdl';
import { PrimeIntellectBackend } from '../../activities/backends/prime-intellect/prime-intellect';
import { parsePodName } from '../../activities/backends/prime-intellect/pi-api';
import { ourInstallationTag } from '../../activities/backends/installation';
import type { ReapReport } from '../../activities/reaper';
import { parseConfig, type ForgeConfig } from '../../common/config';
import { trainingJobSpecSchema } from '../../jobspec/schema';
import { jobWorkflowId, REAPER_SCHEDULE_ID, WORKFLOW_TYPE_REAPER } from '../../common/names';
import { FakeAkashConsole } from '../fakes/akash-console';
import { FAKE_TRAINER_SH } from '../fakes/container';
import { FakePrimeIntellect } from '../fakes/prime-intellect';
import { makeSignedSpec, signedOf } from '../jobspec/fixtures';
import { startWorker, testClient, type RunningWorker } from '../helpers/forge';

const TQ = 'test-reaper-remote';
const PI_KEY = 'pit_secret_reaper_0123456789';
const AKASH_KEY = 'ak-console-reaper-0123456789';
const OWNER = 'akash1owner000000000000000000000000000000000';

function tmp(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

function keyFile(secret: string): string {
  const file = path.join(tmp('reaper-key-'), 'key');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return file;
}

const pi = new FakePrimeIntellect({
  apiKey: PI_KEY,
  offers: [{ cloudId: 'cheap', gpuType: 'H100_80GB', gpuCount: 1, price: 1.9 }],
  templates: { 'tpl-slow': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', '30'] } } },
});
const akash = new FakeAkashConsole({ apiKey: AKASH_KEY, owner: OWNER, providers: [], bids: [] });
const home = tmp('forge-reaper-remote-');
let config: ForgeConfig;
let worker: RunningWorker | undefined;
let client: Client;
let connection: Connection | undefined;

beforeAll(async () => {
  await Promise.all([pi.start(), akash.start()]);
  config = parseConfig({
    backends: {
      pi: { kind: 'prime-intellect', api_url: pi.url, api_key_file: keyFile(PI_KEY), hourly_usd: 3, request_timeout_ms: 5000, trainers: { slow: { template_id: 'tpl-slow' } } },
      akash: {
        kind: 'akash',
        mode: 'console',
        hourly_usd: 2,
        akt_usd: 3,
        request_timeout_ms: 5000,
        console: { url: akash.url, api_key_file: keyFile(AKASH_KEY) },
        trainers: { slow: { image: 'forge/trainer-slow' } },
      },
    },
    results: { enabled: false },
    reaper: { grace_seconds: 0 },
  });
  worker = await startWorker(config, home, TQ);
  ({ client, connection } = await testClient());
});

afterAll(async () => {
  await worker?.stop();
  await connection?.close();
  await Promise.all([pi.stop(), akash.stop()]);
});

function job(provider: string) {
  const raw = makeSignedSpec({
    trainer: { image: 'slow' },
    resources: { gpus: 1, gpu_type: 'h100', gpu_mem_gb: 80, cpus: 4, ram_gb: 16, storage_gb: 50, max_hours: 1 },
    backend: { provider, max_cost_usd: 20 },
  });
  return { raw, spec: trainingJobSpecSchema.parse(raw) };
}

function reap(dryRun = false): Promise<ReapReport> {
  return client.workflow.execute(WORKFLOW_TYPE_REAPER, { taskQueue: TQ, workflowId: `${REAPER_SCHEDULE_ID}-remote-${Date.now()}`, args: [{ dryRun }] });
}

test('a forge-named pod of a job that does not exist is deleted; a pod without the forge name is untouched', async () => {
  const piConfig = config.backends.pi;
  if (piConfig?.kind !== 'prime-intellect') throw new Error('prime-intellect config');
  const backend = new PrimeIntellectBackend('pi', piConfig, home);
  const { raw, spec } = job('pi');
  const orphan = await backend.submit(signedOf(raw), 1); // no workflow job-<id> was ever started
  const res = await fetch(`${pi.url}/api/v1/pods/`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PI_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ pod: { name: 'my-notebook', cloudId: 'cheap', gpuType: 'H100_80GB', gpuCount: 1, customTemplateId: 'tpl-slow' }, provider: { type: 'runpod' } }),
  });
  const mine = (await res.json()) as { id: string };

  const report = await reap();
  const piItems = report.items.filter((i) => i.open.ref.backend === 'pi');
  expect(piItems).toEqual([expect.objectContaining({ closed: true, decision: expect.objectContaining({ reap: true, reason: 'job-not-found' }) })]);
  expect(piItems[0]!.open).toMatchObject({ jobId: spec.job_id, attempt: 1, ref: { id: orphan.id } });
  expect(pi.pods.get(orphan.id)?.status).toBe('TERMINATED');
  expect(pi.pods.get(mine.id)?.status).not.toBe('TERMINATED');
  expect(pi.requests.some((r) => r.method === 'DELETE' && r.path.endsWith(`/${mine.id}`))).toBe(false);
});

test('an Akash deployment of a forge attempt whose job does not exist is closed; another deployment of the account is untouched', async () => {
  const backendConfig = config.backends.akash;
  if (backendConfig?.kind !== 'akash') throw new Error('akash config');
  const backend = new AkashBackend('akash', backendConfig, home);
  const { raw } = job('akash');
  const orphan = await backend.submit(signedOf(raw), 1);
  // The same account deploys something of its own (a forge-like SDL, but without the forge mark on its group).
  const other = job('akash');
  const built = await buildSdl(other.spec, akashSdlOptions(backendConfig, { signed: signedOf(other.raw), attempt: 1, token: 'someone-else', capUsd: 1, groupMark: false }));
  const res = await fetch(`${akash.url}/v1/deployments`, {
    method: 'POST',
    headers: { 'x-api-key': AKASH_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ data: { sdl: built.yaml, deposit: 5 } }),
  });
  const foreign = ((await res.json()) as { data: { dseq: string } }).data.dseq;
  expect(akash.open.sort()).toEqual([String(orphan.data.dseq), foreign].sort());

  const dry = await reap(true);
  expect(dry.items.filter((i) => i.open.ref.backend === 'akash').map((i) => i.open.ref.id)).toEqual([orphan.id]);
  expect(akash.open).toContain(String(orphan.data.dseq));

  const report = await reap();
  const akashItems = report.items.filter((i) => i.open.ref.backend === 'akash');
  expect(akashItems).toEqual([expect.objectContaining({ closed: true, decision: expect.objectContaining({ reason: 'job-not-found' }) })]);
  expect(akash.open).toEqual([foreign]);
});

test("a lost replica's Akash deployment (its FORGE_HOME gone, its job terminated) is closed by a reaper on another replica", async () => {
  const backendConfig = config.backends.akash;
  if (backendConfig?.kind !== 'akash') throw new Error('akash config');
  const before = [...akash.open];
  // Replica A, with its own FORGE_HOME, creates attempt 2 of a job whose workflow then is terminated (never ran here).
  const homeA = tmp('forge-replica-a-');
  const { raw, spec } = job('akash');
  const handle = await client.workflow.start('trainingJob', { taskQueue: `${TQ}-no-worker`, workflowId: jobWorkflowId(spec.job_id), args: [raw] });
  const orphan = await new AkashBackend('akash', backendConfig, homeA).submit(signedOf(raw), 2);
  await handle.terminate('the operator terminated it');
  rmSync(homeA, { recursive: true, force: true }); // the replica's emptyDir is gone with it
  expect(akash.open).toContain(String(orphan.data.dseq));

  // The reaper runs on replica B (the worker, FORGE_HOME `home`), which never saw that deployment.
  const report = await reap();
  const items = report.items.filter((i) => i.open.ref.backend === 'akash');
  expect(items).toEqual([expect.objectContaining({ closed: true, decision: expect.objectContaining({ reap: true, reason: 'job-closed' }) })]);
  expect(items[0]!.open).toMatchObject({ jobId: spec.job_id, attempt: 2, ref: { id: orphan.id } });
  expect(akash.open.filter((d) => !before.includes(d))).toEqual([]);
});

test("installations sharing the provider accounts: a reaper closes its own installation's orphans, never another's", async () => {
  const piConfig = config.backends.pi;
  const akashConfig = config.backends.akash;
  if (piConfig?.kind !== 'prime-intellect' || akashConfig?.kind !== 'akash') throw new Error('backend configs');
  const ours = ourInstallationTag(home); // the worker's: from the orchestrator key it runs with
  const theirs = ours === 'deadbeef' ? 'feedface' : 'deadbeef'; // staging, say, on the same wallet and team
  const otherHome = tmp('forge-other-installation-');
  const make = async (tag: string) => {
    const pod = await new PrimeIntellectBackend('pi', piConfig, tag === ours ? home : otherHome, tag).submit(signedOf(job('pi').raw), 1);
    const dep = await new AkashBackend('akash', akashConfig, tag === ours ? home : otherHome, { installation: tag }).submit(signedOf(job('akash').raw), 1);
    return { pod, dep };
  };
  // Jobs that do not exist in this Temporal: orphans to their own installation's reaper, and running jobs to the other.
  const mine = await make(ours);
  const other = await make(theirs);
  expect(parsePodName(pi.pods.get(other.pod.id)!.name)).toMatchObject({ tag: theirs });

  const report = await reap();
  const closed = report.items.filter((i) => i.closed).map((i) => i.open.ref.id);
  expect(closed.sort()).toEqual([mine.pod.id, mine.dep.id].sort());
  expect(report.items.map((i) => i.open.ref.id)).not.toEqual(expect.arrayContaining([other.pod.id]));
  expect(report.items.map((i) => i.open.ref.id)).not.toEqual(expect.arrayContaining([other.dep.id]));
  expect(pi.pods.get(other.pod.id)?.status).not.toBe('TERMINATED');
  expect(akash.open).toContain(String(other.dep.data.dseq));
  expect(akash.open).not.toContain(String(mine.dep.data.dseq));
  // The other installation's own reaper would find exactly its two.
  const theirListing = [
    ...(await new PrimeIntellectBackend('pi', piConfig, otherHome, theirs).listOpen()),
    ...(await new AkashBackend('akash', akashConfig, otherHome, { installation: theirs }).listOpen()),
  ];
  expect(theirListing.map((o) => o.ref.id).sort()).toEqual([other.pod.id, other.dep.id].sort());
});

test("after a key rotation, what the old key started is reaped once its tag is in reaper.earlier_tags, and not before", async () => {
  const piConfig = config.backends.pi;
  const akashConfig = config.backends.akash;
  if (piConfig?.kind !== 'prime-intellect' || akashConfig?.kind !== 'akash') throw new Error('backend configs');
  const old = ourInstallationTag(home);
  const rotatedHome = tmp('forge-rotated-key-'); // the same installation, with a new orchestrator key: a new tag
  expect(ourInstallationTag(rotatedHome)).not.toBe(old);
  // Started under the old key; their jobs do not exist (orphans). The new key's replicas have no record of them.
  const pod = await new PrimeIntellectBackend('pi', piConfig, home, old).submit(signedOf(job('pi').raw), 1);
  const dep = await new AkashBackend('akash', akashConfig, home, { installation: old }).submit(signedOf(job('akash').raw), 1);
  const queue = `${TQ}-rotated`;
  const reapWith = async (earlier: string[]): Promise<ReapReport> => {
    const rotated = await startWorker({ ...config, reaper: { ...config.reaper, earlier_tags: earlier } }, rotatedHome, queue);
    try {
      return await client.workflow.execute(WORKFLOW_TYPE_REAPER, { taskQueue: queue, workflowId: `${REAPER_SCHEDULE_ID}-rotated-${Date.now()}`, args: [{ dryRun: false }] });
    } finally {
      await rotated.stop();
    }
  };

  const before = await reapWith([]);
  expect(before.items.map((i) => i.open.ref.id)).not.toEqual(expect.arrayContaining([pod.id]));
  expect(before.items.map((i) => i.open.ref.id)).not.toEqual(expect.arrayContaining([dep.id]));
  expect(pi.pods.get(pod.id)?.status).not.toBe('TERMINATED');
  expect(akash.open).toContain(String(dep.data.dseq));

  const after = await reapWith([old]);
  const closed = after.items.filter((i) => i.closed).map((i) => i.open.ref.id);
  expect(closed).toEqual(expect.arrayContaining([pod.id, dep.id]));
  expect(pi.pods.get(pod.id)?.status).toBe('TERMINATED');
  expect(akash.open).not.toContain(String(dep.data.dseq));
});
