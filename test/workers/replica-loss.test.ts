/**
 * Replica loss is routine (issue 15): three orchestrator processes (the image's entrypoint, dist/workers/main.js), each
 * with its own FORGE_HOME (an emptyDir each), provisioned as in production (not embedded: one orchestrator key file
 * handed to all of them, a shared registry repository), poll one task queue of one Temporal and run jobs on the fake
 * Prime Intellect API with result integration on (commit + eval) and max_concurrent 2. While pods run, the replica
 * following one of them is SIGKILLed and its FORGE_HOME deleted; later another is drained (SIGTERM). Every job still
 * completes with its artifacts committed and evaluated, each attempt made one pod, none is left, and the live pods
 * (sampled every 100 ms throughout) never exceed the cap.
 */
import { parsePodName } from '../../activities/backends/prime-intellect/pi-api';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { provisionOrchestratorKey } from '../../common/orchestrator-key';
import type { JobStatus } from '../../workflows/messages';
import { jobWorkflowId } from '../../common/names';
import { FakePrimeIntellect } from '../fakes/prime-intellect';
import { FAKE_TRAINER, pollUntil, startJob, states, tempDir, testClient } from '../helpers/forge';
import { exited, spawnWorker } from '../helpers/processes';
import { git, makeBareRepo } from '../helpers/results';
import { makeSignedSpec } from '../jobspec/fixtures';

const TQ = 'test-replica-loss';
const PI_KEY = 'pit_replica-loss-key-0c1d2e';
const CAP = 2;
const root = tempDir('forge-replica-loss-');
const keyFile = path.join(root, 'secrets', 'orchestrator.json');
const configFile = path.join(root, 'config.json');
const outputRepo = makeBareRepo(path.join(root, 'repos', 'models.git'), { 'README.md': '# models\n' });
const registryRepo = makeBareRepo(path.join(root, 'repos', 'registry.git'));

const pi = new FakePrimeIntellect({
  apiKey: PI_KEY,
  offers: [{ cloudId: 'c1', gpuType: 'CPU_NODE', gpuCount: 1, price: 1.5 }],
  // Long enough for a replica to be lost while its pod runs.
  templates: { 'tpl-model': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER, 'model', '4'] } } },
  provisionMs: 200,
});

interface Replica {
  home: string;
  proc: ChildProcess;
  /** The SDK's default worker identity, as activity tasks record it. */
  identity: string;
}
const replicas: Replica[] = [];
let client: Client;
let connection: Connection;

beforeAll(async () => {
  await pi.start();
  provisionOrchestratorKey(keyFile);
  writeFileSync(
    configFile,
    JSON.stringify({
      backends: {
        pi: {
          kind: 'prime-intellect',
          api_url: pi.url,
          api_key: PI_KEY,
          hourly_usd: 3,
          max_concurrent: CAP,
          poll_interval_ms: 100,
          request_timeout_ms: 5000,
          trainers: { model: { template_id: 'tpl-model' } },
        },
      },
      retry_backoff: { initial_seconds: 0.2, max_seconds: 1 },
      // A lost replica's follow is noticed by its heartbeat timeout: short here, not so short that a loaded machine's
      // slow poll of the pod's agent times it out too.
      follow_heartbeat_seconds: 3,
      admission_poll_seconds: 0.5,
      admission: { reclaim_seconds: 2 },
      results: { max_minutes: 2, git: { file_roots: [root] }, registry: { repo: registryRepo } },
    }),
  );
  ({ client, connection } = await testClient());
  for (const i of [0, 1, 2]) {
    const home = path.join(root, `replica-${i}`);
    mkdirSync(home, { recursive: true });
    // Provisioned, not embedded: no replica may make a key of its own (common/provisioning.ts).
    const proc = spawnWorker({ home, configFile, taskQueue: TQ, env: { FORGE_EMBEDDED: '0', FORGE_ORCHESTRATOR_KEY_FILE: keyFile } });
    replicas.push({ home, proc, identity: `${proc.pid}@${os.hostname()}` });
  }
  await pollUntil(async () => {
    const { pollers } = await client.workflowService.describeTaskQueue({
      namespace: 'default',
      taskQueue: { name: TQ },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    });
    return new Set((pollers ?? []).map((p) => p.identity)).size >= replicas.length || undefined;
  }, 'three replicas polling', 150_000); // three processes starting on a loaded 2-core machine took 60 s
}, 180_000);

afterAll(async () => {
  for (const r of replicas) r.proc.kill('SIGKILL');
  await Promise.all(replicas.map((r) => exited(r.proc)));
  await connection?.close();
  await pi.stop();
  rmSync(root, { recursive: true, force: true });
});

/** Pods the account pays for (neither deleted nor vanished), sampled every 100 ms until stopped; returns the most seen. */
function samplePods(): { stop: () => Promise<number> } {
  let running = true;
  let most = 0;
  const loop = (async () => {
    while (running) {
      most = Math.max(most, [...pi.pods.values()].filter((p) => p.status === 'PROVISIONING' || p.status === 'ACTIVE').length);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return most;
    },
  };
}

/** A live replica that is following one of these jobs' pods now (its activity task started there), and that job. */
async function replicaFollowing(jobIds: string[]): Promise<{ replica: Replica; jobId: string }> {
  return pollUntil(async () => {
    for (const jobId of jobIds) {
      const { raw } = await client.workflow.getHandle(jobWorkflowId(jobId)).describe();
      for (const a of raw.pendingActivities ?? []) {
        const replica = replicas.find((r) => r.proc.exitCode === null && r.proc.signalCode === null && r.identity === a.lastWorkerIdentity);
        const started = a.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
        if (a.activityType?.name === 'followDeployment' && started && replica && pi.pods.get(podOf(jobId) ?? '')?.status === 'ACTIVE') return { replica, jobId };
      }
    }
    return undefined;
  }, 'a replica following an ACTIVE pod', 60_000);
}

function podOf(jobId: string): string | undefined {
  return [...pi.pods.values()].find((p) => {
    const mark = parsePodName(p.name);
    return mark?.jobId === jobId && mark.attempt === 1;
  })?.id;
}

/** Pods the fake made, per forge-<job>-<attempt>, and the installation tags their names carried. */
function podsCreated(): { counts: Map<string, number>; tags: Set<string | undefined> } {
  const counts = new Map<string, number>();
  const tags = new Set<string | undefined>();
  for (const r of pi.requests.filter((x) => x.method === 'POST' && x.path.replace(/\/+$/, '') === '/api/v1/pods' && x.status === 200)) {
    const mark = parsePodName((JSON.parse(r.body) as { pod: { name: string } }).pod.name);
    if (!mark) continue;
    const name = `forge-${mark.jobId}-${mark.attempt}`;
    counts.set(name, (counts.get(name) ?? 0) + 1);
    tags.add(mark.tag);
  }
  return { counts, tags };
}

function spec() {
  return makeSignedSpec({
    trainer: { image: 'model' },
    backend: { provider: 'pi', max_cost_usd: 5 },
    objective: { task_types: ['no-such-task-type'], target_metric: 0 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}' },
  });
}

/** What the unfinished jobs wait for, and the replicas' logs (for a failure message). */
async function stuck(): Promise<string> {
  const lines: string[] = [];
  for (const [id, h] of [...handlesSeen.entries()]) {
    const { status, raw } = await h.describe();
    if (status.name === 'COMPLETED') continue;
    const pending = (raw.pendingActivities ?? []).map((a) => `${a.activityType?.name} attempt ${a.attempt} on ${a.lastWorkerIdentity}: ${a.lastFailure?.message ?? ''}`);
    lines.push(`${id} ${status.name} ${JSON.stringify(pending)} ${JSON.stringify(await h.query('status').catch((e: Error) => e.message)).slice(0, 600)}`);
  }
  for (const r of replicas) lines.push(`${r.identity}: ${existsSync(path.join(r.home, 'worker.log')) ? readFileSync(path.join(r.home, 'worker.log'), 'utf8').slice(-1500) : '(gone)'}`);
  lines.push(`pods: ${JSON.stringify([...pi.pods.values()].map((p) => [p.id, p.name, p.status]))}`);
  return lines.join('\n');
}
const handlesSeen = new Map<string, ReturnType<Client['workflow']['getHandle']>>();

/** Runs `n` jobs, doing `lose` to a replica that follows one of their pods; checks everything the issue asks. */
async function runThroughLoss(n: number, lose: (r: Replica) => Promise<void>): Promise<void> {
  const specs = Array.from({ length: n }, spec);
  const sampler = samplePods();
  const handles = await Promise.all(specs.map((s) => startJob(client, TQ, s)));
  handles.forEach((h, i) => handlesSeen.set(specs[i]!.job_id, h));
  const { replica, jobId } = await replicaFollowing(specs.map((s) => s.job_id));
  await lose(replica);
  let guard: NodeJS.Timeout | undefined;
  const finals = (await Promise.race([
    Promise.all(handles.map((h) => h.result())),
    new Promise((_, reject) => {
      guard = setTimeout(() => void stuck().then((d) => reject(new Error(`jobs not done in 90 s:\n${d}`)), reject), 90_000);
    }),
  ]).finally(() => clearTimeout(guard))) as JobStatus[];
  const most = await sampler.stop();

  const repoDir = outputRepo.slice('file://'.length);
  const { counts: created, tags } = podsCreated();
  // Every replica names pods with the one installation tag (from the one provisioned orchestrator key).
  expect([...tags]).toEqual([expect.stringMatching(/^[0-9a-f]{8}$/)]);
  for (const [i, final] of finals.entries()) {
    const s = specs[i]!;
    expect([s.job_id, final.state]).toEqual([s.job_id, 'COMPLETED']);
    expect(states(final)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);
    // No extra deployment: one attempt, one pod made for it, closed.
    expect(final.deployments.map((d) => [d.backend, d.state, d.closed])).toEqual([['pi', 'SUCCEEDED', true]]);
    expect(created.get(`forge-${s.job_id}-1`)).toBe(1);
    expect([...created.keys()].filter((k) => k.startsWith(`forge-${s.job_id}-`))).toEqual([`forge-${s.job_id}-1`]);
    // Committed (the outputs fetched from the pod's agent by whichever replica committed) and evaluated.
    const a = final.artifacts!;
    expect(git(repoDir, 'show', `${a.commit}:models/job-${s.job_id}/model.safetensors`)).toBe(`fake weights of ${s.job_id}\n`);
    expect(final.evals).toEqual([expect.objectContaining({ task_type: 'no-such-task-type', tasks: 0, promoted: false })]);
  }
  // The lost replica's job went on elsewhere: its follow (retried) or a later activity ran on another replica. (A
  // retried activity's started event names only its last attempt's worker.)
  const history = await client.workflow.getHandle(jobWorkflowId(jobId)).fetchHistory();
  const ranOn = new Set((history.events ?? []).map((e) => e.activityTaskStartedEventAttributes?.identity).filter(Boolean));
  expect([...ranOn].filter((i) => i !== replica.identity).length).toBeGreaterThanOrEqual(1);
  // The cap held across replicas and through the loss; it was reached (the sampler saw the pods).
  expect(most).toBe(CAP);
  // Nothing left running or billing.
  expect(pi.live).toEqual([]);
}

test('a replica SIGKILLed while following a pod, its FORGE_HOME deleted: no job lost, no extra pod, the cap held', async () => {
  await runThroughLoss(4, async (r) => {
    r.proc.kill('SIGKILL');
    await exited(r.proc);
    rmSync(r.home, { recursive: true, force: true });
  });
}, 150_000);

test('a replica drained (SIGTERM) while following a pod: no job lost, no extra pod, the cap held', async () => {
  await runThroughLoss(4, async (r) => {
    r.proc.kill('SIGTERM');
    await exited(r.proc);
    expect(r.proc.exitCode).toBe(0);
  });
}, 150_000);
