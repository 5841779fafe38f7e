/**
 * Result integration with a stand-in trainer (fast: no model to serve, a task type without eval tasks): artifacts
 * committed with the exact layout and a manifest that verifies independently (node:crypto, not our signing code),
 * an activity failing right after its push retried into one commit, notifications that arrive signed, and a dead
 * relay or webhook that does not fail the job. Git LFS output repos (and git-lfs missing) are in lfs.test.ts.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { base58 } from '@scure/base';
import { nip19 } from 'nostr-tools';
import type { ArtifactsRecord } from '../../activities/artifacts';
import { parseCurvesSvg } from '../helpers/curves-svg';
import { makeSignedSpec } from '../jobspec/fixtures';
import { generateKeyPair, signCancelRequest, type KeyPair } from '../../jobspec/signing';
import type { JobStatus } from '../../workflows/messages';
import { fakeTrainer, runJob, startJob, startWorker, waitForStatus, states, tempDir, testClient, testConfig, type RunningWorker } from '../helpers/forge';
import { freePort } from '../helpers/ports';
import { git, gitBytes, makeBareRepo, startRelay, startWebhookReceiver, type TestRelay, type WebhookReceiver } from '../helpers/results';
import type { Client, Connection } from '@temporalio/client';

const TQ = 'test-results-pipeline';
const home = tempDir('forge-results-');
const SECRET = 'webhook-secret-of-the-test-0123456789';
const recipient = nip19.npubEncode('f'.repeat(64));

let relay: TestRelay;
let webhook: WebhookReceiver;
let worker: RunningWorker;
let client: Client;
let connection: Connection;
let deadPort: number;
let outputRepo: string;
/** Job ids whose artifact activity fails once right after the push (a worker lost at that moment). */
const failAfterPush = new Set<string>();
const pushes: ArtifactsRecord[] = [];

beforeAll(async () => {
  [relay, deadPort] = await Promise.all([startRelay(), freePort()]);
  webhook = await startWebhookReceiver(path.join(home, 'tls'), SECRET);
  outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
  const config = testConfig({ local: { trainers: { model: fakeTrainer('model', 0), fail: fakeTrainer('exit', 0, 3), slow: fakeTrainer('ok', 120) } } }, undefined, {
    results: {
      max_minutes: 2,
      git: { file_roots: [home] },
      notifications: {
        nostr: { relays: [`ws://127.0.0.1:${deadPort}`, relay.url], timeout_ms: 2000 },
        webhook: { secret: SECRET, ca_file: webhook.caFile, timeout_ms: 2000 },
        retry: { maximum_attempts: 2, initial_interval_seconds: 0.1, maximum_interval_seconds: 0.2 },
      },
    },
  });
  worker = await startWorker(config, home, TQ, {
    afterArtifactsPush: (record) => {
      pushes.push(record);
      const jobId = record.path.replace('models/job-', '');
      if (failAfterPush.delete(jobId)) throw new Error('injected: the worker was lost right after the push');
    },
  });
  ({ client, connection } = await testClient());
});
afterAll(async () => {
  await worker?.stop();
  await connection?.close();
  await relay?.close();
  await webhook?.close();
  await fs.rm(home, { recursive: true, force: true });
});

function spec(overrides: object, keys?: KeyPair) {
  return makeSignedSpec({
    trainer: { image: 'model' },
    objective: { task_types: ['no-such-task-type'], target_metric: 0 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: true },
    ...overrides,
  }, keys);
}

/** Ed25519 verification with node:crypto alone: the did:key's 32 bytes as an SPKI key. */
function independentlyVerified(did: string, message: Buffer, signatureB64url: string): boolean {
  const raw = base58.decode(did.slice('did:key:z'.length)).slice(2);
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(raw)]);
  return verify(null, message, createPublicKey({ key: spki, format: 'der', type: 'spki' }), Buffer.from(signatureB64url.trim(), 'base64url'));
}

test('a finished job: artifacts committed with the exact layout, a manifest that verifies independently, one commit despite a retried push, a signed Nostr note', async () => {
  const s = spec({ notifications: { on_complete: `nostr:${recipient}` } });
  failAfterPush.add(s.job_id);
  const final = await runJob(client, TQ, s);
  expect(final.state).toBe('COMPLETED');
  expect(states(final)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);

  const a = final.artifacts!;
  const repoDir = outputRepo.slice('file://'.length);
  const folder = `models/job-${s.job_id}`;
  expect(a).toMatchObject({ repo: outputRepo, branch: `jobs/${s.job_id}`, path: folder, lfs: [] });
  // The retry's record (read back from the pushed commit) still points at the provenance, by path and sha256.
  expect(a.provenance).toEqual({
    path: `${folder}/provenance.intoto.json`,
    sha256: createHash('sha256').update(gitBytes(outputRepo.slice('file://'.length), 'show', `${a.commit}:${folder}/provenance.intoto.json`)).digest('hex'),
  });
  // The activity failed once after pushing; its retry found the commit instead of making a second one.
  expect(pushes.filter((p) => p.path === folder)).toHaveLength(1);
  expect(git(repoDir, 'rev-parse', `refs/heads/jobs/${s.job_id}`).trim()).toBe(a.commit);
  expect(git(repoDir, 'rev-parse', `refs/forge/jobs/${s.job_id}`).trim()).toBe(a.commit);
  expect(git(repoDir, 'rev-list', '--count', `main..jobs/${s.job_id}`).trim()).toBe('1');
  expect(git(repoDir, 'log', '-1', '--format=%B', a.commit)).toMatch(new RegExp(`Forge-Job: ${s.job_id}`));

  // Exactly these files: no half-written checkpoint, the manifest, its signature, model.sig and the provenance beside the outputs.
  const listed = git(repoDir, 'ls-tree', '-r', '--name-only', a.commit).trim().split('\n').sort();
  expect(listed).toEqual(
    ['README.md', ...['checkpoints/step-00000002/trainer_state.json', 'config.json', 'manifest.json', 'manifest.sig', 'metrics.json', 'model.safetensors', 'model.sig', 'provenance.intoto.json', 'training_curves.svg', 'training_log.jsonl'].map((f) => `${folder}/${f}`)].sort(),
  );

  const manifestBytes = gitBytes(repoDir, 'show', `${a.commit}:${folder}/manifest.json`);
  const sig = gitBytes(repoDir, 'show', `${a.commit}:${folder}/manifest.sig`).toString('utf8');
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { signer_did: string; job_id: string; spec_sha256: string; attempt: number; backend: string; files: { path: string; sha256: string; size: number }[] };
  expect(independentlyVerified(manifest.signer_did, manifestBytes, sig)).toBe(true);
  expect(independentlyVerified(manifest.signer_did, Buffer.concat([manifestBytes, Buffer.from(' ')]), sig)).toBe(false);
  expect(manifest).toMatchObject({ job_id: s.job_id, attempt: 1, backend: 'local', signer_did: a.signer_did });
  expect(createHash('sha256').update(manifestBytes).digest('hex')).toBe(a.manifest_sha256);
  for (const f of manifest.files) {
    const bytes = gitBytes(repoDir, 'show', `${a.commit}:${folder}/${f.path}`);
    expect({ path: f.path, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }).toEqual(f);
  }
  expect(manifest.files.map((f) => f.path)).toEqual(['checkpoints/step-00000002/trainer_state.json', 'config.json', 'metrics.json', 'model.safetensors', 'training_curves.svg', 'training_log.jsonl']);
  // The training curve, rendered from the committed training log (the fake trainer's one progress line).
  const curves = parseCurvesSvg(gitBytes(repoDir, 'show', `${a.commit}:${folder}/training_curves.svg`).toString('utf8'));
  expect(curves.series.get('train_loss')).toEqual([{ step: 2, value: 0.4 }]);

  // A task type without eval tasks: evaluated as such, not promoted, and the job still completes.
  expect(final.evals).toEqual([expect.objectContaining({ task_type: 'no-such-task-type', tasks: 0, promoted: false })]);

  // The note reached the live relay (the dead one did not matter), signed by the orchestrator's Nostr key.
  expect(final.notifications).toEqual([expect.objectContaining({ event: 'job.completed', target: `nostr:${recipient}`, delivered: true })]);
  const note = relay.events.find((e) => e.tags.some(([k, v]) => k === 'forge_job' && v === s.job_id))!;
  expect(note.tags).toContainEqual(['p', 'f'.repeat(64)]);
  expect(note.content).toMatch(new RegExp(`job ${s.job_id} COMPLETED`));
  expect(note.content).toContain(a.commit.slice(0, 12));
  expect(relay.refused).toEqual([]);
});

test('a failed job: a signed webhook on_failure; a dead webhook is recorded, the job unaffected', async () => {
  const failing = spec({ trainer: { image: 'fail' }, notifications: { on_failure: `${webhook.url}/hooks/forge?token=abc` } });
  const final = await runJob(client, TQ, failing);
  expect(final.state).toBe('ABANDONED');
  expect(final.notifications).toEqual([expect.objectContaining({ event: 'job.failed', target: `${webhook.url}/…`, delivered: true })]);
  const d = webhook.deliveries.find((x) => x.body.includes(failing.job_id))!;
  expect(d.signed).toBe(true);
  expect(d.headers['x-forge-event']).toBe('job.failed');
  expect(d.headers['x-forge-delivery']).toBe(`${failing.job_id}:job.failed`);
  expect(JSON.parse(d.body)).toMatchObject({ event: 'job.failed', job_id: failing.job_id, state: 'ABANDONED', last_error: { class: 'EXIT_CODE' } });

  const dead = spec({ notifications: { on_complete: `https://127.0.0.1:${deadPort}/hook` } });
  const done = await runJob(client, TQ, dead);
  expect(done.state).toBe('COMPLETED');
  expect(done.notifications).toEqual([expect.objectContaining({ delivered: false, detail: expect.stringMatching(/ECONNREFUSED/) })]);
});

test('a cancelled job: its owner is told (job.cancelled) at on_cancel, or else at on_failure, after the clean-up', async () => {
  // A signed cancel by the owner, with an on_cancel target.
  const keys = generateKeyPair();
  const byOwner = spec({ trainer: { image: 'slow' }, notifications: { on_failure: `${webhook.url}/hooks/failed`, on_cancel: `${webhook.url}/hooks/cancelled` } }, keys);
  const h1 = await startJob(client, TQ, byOwner);
  await waitForStatus(h1, (s) => s.state === 'RUNNING');
  await h1.executeUpdate('cancel', { args: [signCancelRequest(byOwner.job_id, Math.floor(Date.now() / 1000), keys.secretKey)] });
  const s1 = (await h1.result()) as JobStatus;
  expect(s1.state).toBe('CANCELLED');
  expect(s1.deployments.every((d) => d.closed)).toBe(true);
  expect(s1.notifications).toEqual([expect.objectContaining({ event: 'job.cancelled', delivered: true })]);
  const d1 = webhook.deliveries.find((x) => x.body.includes(byOwner.job_id))!;
  expect(d1.headers['x-forge-event']).toBe('job.cancelled');
  expect(JSON.parse(d1.body)).toMatchObject({ event: 'job.cancelled', job_id: byOwner.job_id, state: 'CANCELLED', reason: expect.stringMatching(/cancelled by its owner/) });

  // A Temporal cancellation (Web UI, CLI): no on_cancel, so on_failure hears of it; the execution still ends Canceled.
  const byTemporal = spec({ trainer: { image: 'slow' }, notifications: { on_failure: `${webhook.url}/hooks/failed` } });
  const h2 = await startJob(client, TQ, byTemporal);
  await waitForStatus(h2, (s) => s.state === 'RUNNING');
  await h2.cancel();
  await expect(h2.result()).rejects.toThrow();
  const s2 = await h2.query<JobStatus>('status');
  expect(s2.state).toBe('CANCELLED');
  expect(s2.notifications).toEqual([expect.objectContaining({ event: 'job.cancelled', delivered: true })]);
  const d2 = webhook.deliveries.find((x) => x.body.includes(byTemporal.job_id))!;
  expect(d2.signed).toBe(true);
  expect(JSON.parse(d2.body)).toMatchObject({ event: 'job.cancelled', state: 'CANCELLED', reason: expect.stringMatching(/through Temporal/) });
});

test("a remote whose default branch (HEAD) is the job's output branch: REJECTED, nothing pushed there", async () => {
  // The policy keeps output branches under jobs/, and main/master are refused outright; a remote may still name a
  // jobs/ branch as its HEAD, and that branch is never a job's to move.
  const s = spec({});
  const branch = `jobs/${s.job_id}`;
  const repoDir = path.join(home, 'repos', 'head-is-jobs.git');
  const repo = makeBareRepo(repoDir, { 'README.md': '# default branch under jobs/\n' });
  git(repoDir, 'branch', branch, 'main');
  git(repoDir, 'symbolic-ref', 'HEAD', `refs/heads/${branch}`);
  const before = git(repoDir, 'rev-parse', branch).trim();
  const job = spec({ job_id: s.job_id, artifacts: { output_repo: repo } });
  const done = await runJob(client, TQ, job);
  expect(done.state).toBe('ABANDONED');
  expect(done.last_error).toMatchObject({ class: 'REJECTED', detail: expect.stringMatching(/is the default branch \(HEAD\)/) });
  expect(git(repoDir, 'rev-parse', branch).trim()).toBe(before);
});

test('an output repo outside the operator file_roots is refused before it runs; one that does not exist: REJECTED at once, not retried', async () => {
  const elsewhere = makeBareRepo(path.join(tempDir('forge-elsewhere-'), 'x.git'));
  const [outside, missing] = await Promise.all([
    runJob(client, TQ, spec({ artifacts: { output_repo: elsewhere } })),
    runJob(client, TQ, spec({ artifacts: { output_repo: `file://${path.join(home, 'repos', 'missing.git')}` } })),
  ]);
  expect(outside.state).toBe('ABANDONED');
  // The operator's policy (jobspec/policy.ts) refuses it at validation: no attempt ran.
  expect(outside.last_error).toMatchObject({ class: 'INVALID_SPEC', detail: expect.stringMatching(/artifacts\.output_repo: .*outside the operator's results.git.file_roots/) });
  expect(outside.deployments).toEqual([]);
  expect(missing.state).toBe('ABANDONED');
  expect(missing.last_error).toMatchObject({ class: 'REJECTED', detail: expect.stringMatching(/does not appear to be a git repository/) });
});
