/**
 * job_type "rl" through trainingJob: an attempt runs the grpoRun child (id job-<job_id>-grpo-<attempt>) instead of a
 * backend submission, with the same lifecycle (CREATED → QUEUED → SUBMITTED → RUNNING → EVALUATING → COMPLETED), and
 * the final policy goes through the results pipeline like a finetune (committed with its signed manifest, evaluated
 * on the toy suite). A policy that cannot be loaded is a permanent failure (EXIT_CODE, not retried); a cancelled rl
 * job cancels its child, which releases its trainer host: nothing is left running.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { Client, Connection, WorkflowHandle } from '@temporalio/client';
import type { JobStatus } from '../../workflows/messages';
import { fakeTrainer, startJob, startWorker, states, tempDir, testClient, testConfig, waitForStatus, type RunningWorker } from '../helpers/forge';
import { git, makeBareRepo } from '../helpers/results';
import { parseCurvesSvg } from '../helpers/curves-svg';
import {
  expectNoRlSecrets,
  grpoEnv,
  queues,
  readSteps,
  recordHistory,
  rlJobSpec,
  rolloutEnv,
  serveModel,
  startGrpo,
  startRollout,
  tinyModel,
  tinyModelRoot,
  type InProcess,
  type Served,
} from './harness';

const home = tempDir('forge-rl-job-');
const q = queues('test-rl-job');
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 1) } } }, undefined, {
  // The shared tiny model lies outside this file's home: the operator's policy must allow its directory.
  results: { max_minutes: 5, git: { file_roots: [home, tinyModelRoot()] }, evals: { serve_env: { OMP_NUM_THREADS: '1' } } },
  rl: {
    grpo_task_queue: q.grpo,
    rollout_task_queue: q.rollout,
    host_heartbeat_seconds: 4,
    rollout_heartbeat_seconds: 4,
    host_start_timeout_seconds: 10,
    status_interval_seconds: 0,
  },
});

let worker: RunningWorker;
let client: Client;
let connection: Connection;
let served: Served;
let model: string;
let outputRepo: string;
const stops: InProcess<unknown>[] = [];

function rlSpec(overrides: object = {}) {
  return rlJobSpec(model, outputRepo, overrides);
}

function policyProcesses(jobId: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', `grpo-server.*${jobId}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

beforeAll(async () => {
  model = await tinyModel();
  outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
  served = await serveModel(model, path.join(home, 'serve.log'));
  worker = await startWorker(config, home, q.orchestrator);
  ({ client, connection } = await testClient());
  stops.push(await startRollout(rolloutEnv(q, served.url, home, 'r1')));
  stops.push(await startGrpo(grpoEnv(q, home, 'g1', { FORGE_GRPO_MAX_ACTIVITIES: '2' })));
}, 60_000);

afterAll(async () => {
  for (const s of stops.reverse()) await s.stop();
  await worker?.stop();
  await served?.stop();
  await connection?.close();
});

test('an rl job trains with GRPO, then its policy is committed and evaluated like a finetune', async () => {
  const spec = rlSpec();
  const bad = rlSpec({ base_model: { name: path.join(home, 'no-such-model'), source: 'local', revision: 'main' } });
  const [handle, badHandle] = await Promise.all([startJob(client, q.orchestrator, spec), startJob(client, q.orchestrator, bad)]);
  const s = (await handle.result()) as JobStatus;
  expect(s.state).toBe('COMPLETED');
  expect(states(s)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);
  expect(s.backend).toBe('forge-grpo');
  expect(s.deployments).toHaveLength(1);
  expect(s.deployments[0]).toMatchObject({ backend: 'forge-grpo', id: `job-${spec.job_id}-grpo-1`, state: 'SUCCEEDED', closed: true, progress: { step: 8 } });
  expect(s.rl).toMatchObject({ phase: 'done', policy_version: 8, host: 'g1', latest: { step: 8 } });

  // The results pipeline: committed with the signed manifest, one log line per step, evaluated on the toy suite.
  const files = s.artifacts!.files.map((f) => f.path);
  expect(files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'training_log.jsonl', 'metrics.json']));
  expect(s.artifacts!.manifest_sha256).toMatch(/^[0-9a-f]{64}$/);
  const bare = path.join(home, 'repos', 'models.git');
  expect(git(bare, 'ls-tree', '--name-only', s.artifacts!.commit, `models/job-${spec.job_id}/`)).toContain('manifest.sig');
  const log = git(bare, 'show', `${s.artifacts!.commit}:models/job-${spec.job_id}/training_log.jsonl`);
  expect(readSteps(log).map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  // training_curves.svg beside it: mean reward, KL and staleness by step, exactly the log's.
  const curves = parseCurvesSvg(git(bare, 'show', `${s.artifacts!.commit}:models/job-${spec.job_id}/training_curves.svg`)).series;
  expect(curves.get('reward_mean')).toEqual(readSteps(log).map((l) => ({ step: l.step, value: l.reward_mean })));
  expect(curves.get('kl')).toEqual(readSteps(log).map((l) => ({ step: l.step, value: l.kl })));
  expect(curves.get('staleness_mean')).toEqual(readSteps(log).map((l) => ({ step: l.step, value: l.staleness_mean })));
  expect(s.evals).toEqual([expect.objectContaining({ task_type: 'toy', tasks: 20 })]);

  // A policy that cannot be loaded: the trainer says permanent (exit 1) → EXIT_CODE, abandoned without a retry.
  const b = (await badHandle.result()) as JobStatus;
  expect(b.state).toBe('ABANDONED');
  expect(states(b)).toEqual(['CREATED', 'QUEUED', 'FAILED', 'ABANDONED']);
  expect(b.last_error).toMatchObject({ class: 'EXIT_CODE', backend: 'forge-grpo', attempt: 1 });
  expect(b.last_error!.detail).toMatch(/could not load the policy/);
  expect(policyProcesses(spec.job_id)).toEqual([]);
  // No secret in the histories: neither the RL session key nor the token of the session the run held.
  await expectNoRlSecrets(client, [handle.workflowId, `job-${spec.job_id}-grpo-1`], home);
  recordHistory('trainingJob-rl-completed.json', handle.workflowId);
  recordHistory('grpoRun-completed.json', `job-${spec.job_id}-grpo-1`);
  recordHistory('trainingJob-rl-abandoned-exit-code.json', badHandle.workflowId);
});

test('a trainer host that drains (SIGTERM) hands its run to another host: checkpoint at its version, nothing redone', async () => {
  const spec = rlSpec({
    objective: { optimize_for: 'success_rate', task_types: ['toy'], target_metric: 0.5, max_steps: 10 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: false, checkpoint_interval_steps: 100 },
  });
  const handle = await startJob(client, q.orchestrator, spec);
  await waitForStatus(handle, (st) => (st.rl?.latest?.step ?? 0) >= 3, 60_000);
  const g2 = await startGrpo(grpoEnv(q, home, 'g2'));
  stops.push(g2);
  await stops.find((s) => s.value !== g2.value && 'host' in (s.value as object))!.stop(); // g1 drains and stops
  const s = (await handle.result()) as JobStatus;
  expect(s.state).toBe('COMPLETED');
  expect(s.rl).toMatchObject({ phase: 'done', host: 'g2', host_losses: 1, steps_redone: 0, policy_version: 10 });
  expect(states(s)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);
});

test('cancelling an rl job cancels its grpoRun child, which releases the trainer host: nothing left running', async () => {
  const spec = rlSpec({ objective: { optimize_for: 'success_rate', task_types: ['toy'], target_metric: 0.5, max_steps: 500 } });
  const handle: WorkflowHandle = await startJob(client, q.orchestrator, spec);
  await waitForStatus(handle, (st) => st.state === 'RUNNING' && (st.rl?.latest?.step ?? 0) >= 2, 60_000);
  expect(policyProcesses(spec.job_id).length).toBeGreaterThan(0);
  await handle.cancel();
  await expect(handle.result()).rejects.toThrow();
  const st = await handle.query<JobStatus>('status');
  expect(st.state).toBe('CANCELLED');
  expect(st.deployments.every((d) => d.closed)).toBe(true);
  const child = await client.workflow.getHandle(`job-${spec.job_id}-grpo-1`).describe();
  expect(child.status.name).toBe('CANCELLED');
  // The child waited for its host's release before it ended: no policy process, no rollout still running.
  expect(policyProcesses(spec.job_id)).toEqual([]);
  const history = await client.workflow.getHandle(`job-${spec.job_id}-grpo-1`).fetchHistory();
  const scheduled = new Set((history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).map((e) => String(e.eventId)));
  const ended = new Set(
    (history.events ?? [])
      .map((e) =>
        e.activityTaskCompletedEventAttributes?.scheduledEventId ??
        e.activityTaskFailedEventAttributes?.scheduledEventId ??
        e.activityTaskCanceledEventAttributes?.scheduledEventId ??
        e.activityTaskTimedOutEventAttributes?.scheduledEventId ??
        e.activityTaskCancelRequestedEventAttributes?.scheduledEventId,
      )
      .filter((x) => x !== undefined && x !== null)
      .map(String),
  );
  expect([...scheduled].filter((id) => !ended.has(id))).toEqual([]);
  recordHistory('trainingJob-rl-cancelled.json', handle.workflowId);
});
