/**
 * Cancellation: the owner's signed cancel (Update with a validator) and a plain Temporal cancellation both end in
 * CANCELLED with the trainer process really gone; a bad or stale signature is refused and the job goes on.
 */
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { generateKeyPair, signCancelRequest } from '../../jobspec/signing';
import type { JobStatus } from '../../workflows/messages';
import { cancelJob } from '../../client/cancel-job';
import { ForgeJobState } from '../../workflows/search-attributes';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, processAlive, readStarts, startJob, tempDir, testConfig, useForge, waitForStatus } from '../helpers/forge';

const TQ = 'test-cancel';
const home = tempDir('forge-cancel-');
const starts = `${home}/starts.log`;
const config = testConfig({ local: { trainers: { slow: fakeTrainer('ok', 60) } } }, starts);

const forge = useForge(config, home, TQ);

const now = () => Math.floor(Date.now() / 1000);

async function runningJob() {
  const keys = generateKeyPair();
  const spec = makeSignedSpec({ trainer: { image: 'slow' } }, keys);
  const handle = await startJob(forge.client, TQ, spec);
  // Progress shows once the trainer printed its first line, after it logged its pid.
  const status = await waitForStatus(handle, (s) => s.state === 'RUNNING' && !!s.deployments[0]?.progress);
  const pid = readStarts(starts).find((x) => x.job === spec.job_id)?.pid;
  expect(pid).toBeDefined();
  expect(processAlive(pid!)).toBe(true);
  return { keys, spec, handle, status, pid: pid! };
}

test('the status query reports a running job with its deployment and progress', async () => {
  const { handle, spec, keys } = await runningJob();
  const s = await waitForStatus(handle, (x) => x.deployments[0]?.progress !== null);
  expect(s).toMatchObject({ job_id: spec.job_id, state: 'RUNNING', attempt: 1, backend: 'local' });
  expect(s.deployments[0]?.progress).toMatchObject({ step: 1, maxSteps: 2 });
  await cancelJob(handle, signCancelRequest(spec.job_id, now(), keys.secretKey));
});

test("the owner's signed cancel ends the job CANCELLED and kills the trainer", async () => {
  const { keys, spec, handle, pid } = await runningJob();
  const status: JobStatus = await cancelJob(handle, signCancelRequest(spec.job_id, now(), keys.secretKey));
  expect(status.state).toBe('CANCELLED');
  expect(status.transitions.at(-1)?.reason).toMatch(/cancelled by its owner did:key:/);
  expect(status.deployments[0]?.closed).toBe(true);
  expect(processAlive(pid)).toBe(false);
  const result = (await handle.result()) as JobStatus;
  expect(result.state).toBe('CANCELLED');
  expect((await handle.describe()).typedSearchAttributes.get(ForgeJobState)).toBe('CANCELLED');
});

test('a cancel signed by someone else, stale, or for another job is refused and the job goes on', async () => {
  const { keys, spec, handle, pid } = await runningJob();
  const stranger = generateKeyPair();
  const refused = [
    signCancelRequest(spec.job_id, now(), stranger.secretKey),
    signCancelRequest(spec.job_id, now() - 600, keys.secretKey),
    signCancelRequest('00000000-0000-4000-8000-000000000000', now(), keys.secretKey),
    { ...signCancelRequest(spec.job_id, now(), keys.secretKey), signature_ed25519: 'AAAA' },
  ];
  for (const req of refused) {
    await expect(cancelJob(handle, req)).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
  }
  const s = await handle.query<JobStatus>('status');
  expect(s.state).toBe('RUNNING');
  expect(processAlive(pid)).toBe(true);
  // Refused updates leave no trace in history.
  const history = await handle.fetchHistory();
  expect(history.events?.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes)).toHaveLength(0);
  await cancelJob(handle, signCancelRequest(spec.job_id, now(), keys.secretKey));
  expect(processAlive(pid)).toBe(false);
});

test('a Temporal cancellation (Web UI / CLI) ends in CANCELLED with nothing left running', async () => {
  const { handle, pid } = await runningJob();
  await handle.cancel();
  const err = await handle.result().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const desc = await handle.describe();
  expect(desc.status.name).toBe('CANCELLED');
  expect(desc.typedSearchAttributes.get(ForgeJobState)).toBe('CANCELLED');
  const s = await handle.query<JobStatus>('status');
  expect(s.state).toBe('CANCELLED');
  expect(s.transitions.at(-1)?.reason).toMatch(/Temporal/);
  expect(s.deployments.every((d) => d.closed)).toBe(true);
  expect(processAlive(pid)).toBe(false);
});
