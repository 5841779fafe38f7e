/**
 * The admission entity itself (workflows/backend-capacity.ts) against the real dev server: polls that change nothing
 * leave no history, continue-as-new carries the slots over, a release of an unknown job is a no-op, and the entity
 * ends once nothing has been held or asked for a while.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WorkflowNotFoundError } from '@temporalio/client';
import { findTemporalCli } from '../../infra/dev-server';
import { CapacityGate } from '../../activities/control/capacity';
import { capacityQuery } from '../../workflows/capacity/messages';
import type { CapacityState } from '../../workflows/capacity/slots';
import { capacityTaskQueue, capacityWorkflowId } from '../../common/names';
import { fakeTrainer, pollUntil, tempDir, temporalAddress, testConfig, useForge } from '../helpers/forge';

const TQ = 'test-backend-capacity';
// A capped backend: the worker then also polls the entities' own queue (capacityTaskQueue).
const forge = useForge(testConfig({ local: { max_concurrent: 1, trainers: { ok: fakeTrainer('ok', 0) } } }), tempDir('forge-capacity-'), TQ);

const slot = (workflowId: string, owner: string) => ({ workflowId, owner, cap: 1, claimMs: 60_000 });

test('polls that change nothing leave no history; continue-as-new carries the slots; an unknown release is a no-op', async () => {
  const id = capacityWorkflowId('entity-a', TQ);
  await forge.client.workflow.start('backendCapacity', { taskQueue: capacityTaskQueue(TQ), workflowId: id, args: [{ backend: 'entity-a', cap: 1, reclaimSeconds: 60, continueAfterUpdates: 4 }] });
  const gate = new CapacityGate(60, () => forge.client, () => TQ);
  expect(await gate.acquire('entity-a', slot('job-a', 'A'))).toMatchObject({ granted: true });
  expect(await gate.acquire('entity-a', slot('job-b', 'B'))).toMatchObject({ granted: false, position: 1, waiting: 1 });
  const handle = forge.client.workflow.getHandle(id);
  const events = async (): Promise<number> => (await handle.fetchHistory()).events?.length ?? 0;
  const before = await events();
  for (let i = 0; i < 5; i++) expect(await gate.acquire('entity-a', slot('job-b', 'B'))).toMatchObject({ granted: false, position: 1 });
  expect(await events()).toBe(before);
  expect(await gate.release('entity-a', { workflowId: 'job-unknown' })).toEqual({ released: 0 });
  expect(await events()).toBe(before);

  const firstRun = (await handle.describe()).runId;
  expect(await gate.acquire('entity-a', slot('job-c', 'C'))).toMatchObject({ granted: false, position: 2 });
  // The 4th accepted Update: the entity continues as new with its state.
  expect(await gate.acquire('entity-a', slot('job-d', 'A'))).toMatchObject({ granted: false, position: 3 });
  await pollUntil(async () => ((await forge.client.workflow.getHandle(id).describe()).runId !== firstRun ? true : undefined), 'a new run');
  const carried = (await forge.client.workflow.getHandle(id).query(capacityQuery)) as CapacityState;
  expect(carried.holders.map((h) => h.workflowId)).toEqual(['job-a']);
  expect(carried.waiters.map((w) => w.workflowId).sort()).toEqual(['job-b', 'job-c', 'job-d']);

  // Fair order survives: B and C (never served) before A's second job.
  const holder = async (): Promise<string[]> =>
    ((await forge.client.workflow.getHandle(id).query(capacityQuery)) as CapacityState).holders.map((h) => h.workflowId);
  expect(await gate.release('entity-a', { workflowId: 'job-a' })).toEqual({ released: 1 });
  expect(await holder()).toEqual(['job-b']);
  expect(await gate.acquire('entity-a', slot('job-b', 'B'))).toMatchObject({ granted: true });
  expect(await gate.release('entity-a', { workflowId: 'job-b' })).toEqual({ released: 1 });
  expect(await holder()).toEqual(['job-c']);
  expect(await gate.release('entity-a', { workflowId: 'job-c' })).toEqual({ released: 1 });
  expect(await holder()).toEqual(['job-d']);
  expect(await gate.release('entity-a', { workflowId: 'job-d' })).toEqual({ released: 1 });

  // Asks made at the same moment travel in one Update: 12 jobs at once (Temporal allows 10 Updates in flight).
  const burst = await Promise.all(Array.from({ length: 12 }, (_, i) => gate.acquire('entity-a', slot(`job-burst-${i}`, `O${i % 3}`))));
  expect(burst.filter((r) => r.granted)).toHaveLength(1);
  const after = (await forge.client.workflow.getHandle(id).query(capacityQuery)) as CapacityState;
  expect([after.holders.length, after.waiters.length]).toEqual([1, 11]);
}, 60_000);

test('started by the first acquire (update-with-start); ends when idle; started again by the next', async () => {
  const gate = new CapacityGate(1, () => forge.client, () => TQ);
  expect(await gate.acquire('entity-b', slot('job-x', 'A'))).toMatchObject({ granted: true });
  expect(await gate.release('entity-b', { workflowId: 'job-x' })).toMatchObject({ released: 1 });
  const handle = forge.client.workflow.getHandle(capacityWorkflowId('entity-b', TQ));
  await pollUntil(async () => ((await handle.describe()).status.name === 'COMPLETED' ? true : undefined), 'the idle entity ending', 20_000);
  // A whole run (start, batches, timers, the reclaim activity, its end) for test/workflows/replay.test.ts.
  const recorded = path.resolve(__dirname, '..', 'histories', 'backendCapacity-idle-end.json');
  if (process.env.RECORD_HISTORIES && !existsSync(recorded)) {
    const runId = (await handle.describe()).runId;
    writeFileSync(recorded, execFileSync(findTemporalCli(), ['workflow', 'show', '--address', temporalAddress(), '-w', handle.workflowId, '-r', runId, '-o', 'json']));
  }
  // Releasing into an ended entity is a no-op; the next acquire starts a new run.
  expect(await gate.release('entity-b', { workflowId: 'job-x' })).toEqual({ released: 0 });
  expect(await gate.acquire('entity-b', slot('job-y', 'A'))).toMatchObject({ granted: true });
  expect((await handle.describe()).status.name).toBe('RUNNING');
  await gate.release('entity-b', { workflowId: 'job-y' });
  await expect(forge.client.workflow.getHandle(capacityWorkflowId('entity-never', TQ)).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
}, 60_000);
