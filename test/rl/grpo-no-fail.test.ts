/**
 * grpoRun never ends as a Temporal-Failed execution: its failures (here NO_CAPACITY: no trainer host polls its queue
 * within acquire_timeout_seconds) are returned to trainingJob, which records them like any attempt's failure. The
 * child execution completes. No trainer host, rollout worker or model is needed.
 */
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import type { JobStatus } from '../../workflows/messages';
import { grpoWorkflowId } from '../../common/names';
import { fakeTrainer, startJob, startWorker, states, tempDir, testClient, testConfig, type RunningWorker } from '../helpers/forge';
import { makeBareRepo } from '../helpers/results';
import { queues, recordHistory, rlJobSpec } from './harness';

const home = tempDir('forge-grpo-no-fail-');
const q = queues('test-grpo-no-fail');
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 1) } } }, undefined, {
  // Nobody polls q.grpo: the acquire activity is not started within a second.
  rl: { grpo_task_queue: q.grpo, rollout_task_queue: q.rollout, acquire_timeout_seconds: 1, status_interval_seconds: 0 },
});

let worker: RunningWorker;
let client: Client;
let connection: Connection;

beforeAll(async () => {
  worker = await startWorker(config, home, q.orchestrator);
  ({ client, connection } = await testClient());
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  await connection?.close();
});

test('an rl job whose grpoRun finds no trainer host ends ABANDONED with NO_CAPACITY; the grpoRun child completes, never Failed', async () => {
  const outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
  const spec = rlJobSpec(path.join(home, 'model'), outputRepo, { backend: { provider: 'local', region: 'any', max_cost_usd: 1, max_retries: 0 } });
  const handle = await startJob(client, q.orchestrator, spec);
  const s = (await handle.result()) as JobStatus;
  expect(s.state).toBe('ABANDONED');
  expect(states(s)).toEqual(['CREATED', 'QUEUED', 'FAILED', 'ABANDONED']);
  expect(s.last_error).toMatchObject({ class: 'NO_CAPACITY', backend: 'forge-grpo', attempt: 1 });
  expect(s.last_error!.detail).toMatch(/no trainer host on test-grpo-no-fail-grpo took the run within 1 s/);
  expect(s.deployments).toEqual([expect.objectContaining({ id: grpoWorkflowId(spec.job_id, 1), state: 'FAILED', closed: true })]);

  // The child returned its failure: its execution COMPLETED (before forge-grpo-no-fail it was FAILED).
  const child = client.workflow.getHandle(grpoWorkflowId(spec.job_id, 1));
  expect((await child.describe()).status.name).toBe('COMPLETED');
  expect(await child.result()).toEqual({ ok: false, failure: { class: 'NO_CAPACITY', detail: s.last_error!.detail } });
  recordHistory('trainingJob-rl-abandoned-no-capacity.json', handle.workflowId);
  recordHistory('grpoRun-no-capacity.json', grpoWorkflowId(spec.job_id, 1));
}, 60_000);
