/**
 * A job that keeps retrying continues as new between attempts, so its history stays small however many retries its
 * spec allows; the status (every attempt, error and transition) and the cancel update carry across the runs.
 */
import type { Client, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { generateKeyPair, signCancelRequest } from '../../jobspec/signing';
import { cancelJob } from '../../client/cancel-job';
import type { JobStatus } from '../../workflows/messages';
import { fakeTrainer, pollUntil, startJob, tempDir, testConfig, useForge, waitForStatus } from '../helpers/forge';
import { makeSignedSpec } from '../jobspec/fixtures';

const TQ = 'test-continue-as-new';
const home = tempDir('forge-can-');
// A short run (history_events_per_run at its least, 100): several continue-as-new within a few dozen attempts.
const EVENTS_PER_RUN = 100;
const config = testConfig({ local: { trainers: { flaky: fakeTrainer('transient-until', 0, 100_000) } } }, undefined, {
  retry_backoff: { initial_seconds: 0.01, max_seconds: 0.02 },
  history_events_per_run: EVENTS_PER_RUN,
});
const forge = useForge(config, home, TQ);

/** The run ids of a workflow, first to last, and each run's history length. */
async function runsOf(client: Client, workflowId: string, firstRunId: string): Promise<{ runId: string; events: number }[]> {
  const runs: { runId: string; events: number }[] = [];
  for (let runId: string | undefined = firstRunId; runId; ) {
    const events: temporal.api.history.v1.IHistoryEvent[] = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
    runs.push({ runId, events: events.length });
    runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return runs;
}

test('a trainer that always fails with max_retries 30: 31 attempts over several small runs, ABANDONED with every attempt in the status', async () => {
  const spec = makeSignedSpec({ trainer: { image: 'flaky' }, backend: { provider: 'local', max_retries: 30 } });
  const handle = (await startJob(forge.client, TQ, spec)) as WorkflowHandleWithFirstExecutionRunId;
  const status = (await handle.result()) as JobStatus;
  expect(status.state).toBe('ABANDONED');
  expect(status.transitions.at(-1)?.reason).toBe('TRANSIENT: max_retries (30) used up');
  expect(status.attempt).toBe(31);
  expect(status.errors).toHaveLength(31);
  expect(status.errors.map((e) => e.attempt)).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));
  expect(status.deployments).toHaveLength(31);
  expect(status.deployments.every((d) => d.closed)).toBe(true);
  expect(status.transitions.filter((t) => t.state === 'RETRY')).toHaveLength(30);
  expect(status.transitions[0]?.state).toBe('CREATED');
  const runs = await runsOf(forge.client, handle.workflowId, handle.firstExecutionRunId);
  expect(runs.length).toBeGreaterThanOrEqual(3);
  // Each run ends at the first attempt's end past the limit: at most one attempt's events (a few dozen) beyond it.
  for (const r of runs) expect(r.events).toBeLessThan(EVENTS_PER_RUN + 60);
  expect((await handle.describe()).status.name).toBe('COMPLETED');
  expect((await handle.query<JobStatus>('status')).attempt).toBe(31);
}, 240_000);

test('the status query and the signed cancel work in the run after a continue-as-new', async () => {
  const keys = generateKeyPair();
  const spec = makeSignedSpec({ trainer: { image: 'flaky' }, backend: { provider: 'local', max_retries: 100 } }, keys);
  const handle = (await startJob(forge.client, TQ, spec)) as WorkflowHandleWithFirstExecutionRunId;
  await pollUntil(async () => ((await handle.describe()).runId !== handle.firstExecutionRunId ? true : undefined), 'a continue-as-new', 180_000);
  const before = await waitForStatus(handle, (s) => s.attempt > 1);
  expect(before.transitions[0]?.state).toBe('CREATED');
  const status = await cancelJob(handle, signCancelRequest(spec.job_id, Math.floor(Date.now() / 1000), keys.secretKey));
  expect(status.state).toBe('CANCELLED');
  expect(status.attempt).toBeGreaterThanOrEqual(before.attempt);
  expect(status.deployments.every((d) => d.closed)).toBe(true);
}, 240_000);
