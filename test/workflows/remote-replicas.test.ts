/**
 * Two orchestrator replicas, each with its own FORGE_HOME, against one Temporal and the fake Prime Intellect API:
 * replica A follows a pod to SUCCEEDED and is then lost (its commit fails, it stops, its FORGE_HOME is deleted, as
 * an emptyDir goes with its pod); replica B commits the artifacts, fetching them from the pod's agent, which stayed
 * open until then. Nothing of A's disk is needed; the pod is deleted after the commit; no agent token anywhere.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { agentToken } from '../../activities/backends/remote/remote-agent-script';
import { parseConfig, type ForgeConfig } from '../../common/config';
import type { JobStatus } from '../../workflows/messages';
import { FakePrimeIntellect } from '../fakes/prime-intellect';
import { FAKE_TRAINER, startJob, startWorker, states, tempDir, testClient, type RunningWorker } from '../helpers/forge';
import { git, makeBareRepo } from '../helpers/results';
import { makeSignedSpec } from '../jobspec/fixtures';

const TQ = 'test-remote-replicas';
const PI_KEY = 'pit_replicas-key-SECRET-93ab01';
const root = tempDir('forge-replicas-');
const homeA = path.join(root, 'replica-a');
const homeB = path.join(root, 'replica-b');

const GROWS = [
  'o="$FORGE_OUTPUT_DIR"; printf "weights\\n" > "$o/model.safetensors"',
  '(while [ ! -e "$o/../done.json" ]; do sleep 0.01; done; printf "and a lot more\\n" >> "$o/model.safetensors") >/dev/null 2>&1 &',
  'exit 0',
].join('\n');

const pi = new FakePrimeIntellect({
  apiKey: PI_KEY,
  offers: [{ cloudId: 'c1', gpuType: 'CPU_NODE', gpuCount: 1, price: 1.5 }],
  templates: {
    'tpl-model': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER, 'model', '0.3'] } },
    // A model file that grows once done.json has announced its size: what the commit downloads is larger.
    'tpl-grows': { programs: { 'forge-trainer': ['/bin/sh', '-c', GROWS] } },
  },
  provisionMs: 100,
});

let config: ForgeConfig;
let outputRepo: string;
let client: Client;
let connection: Connection;
const workers: RunningWorker[] = [];

beforeAll(async () => {
  await pi.start();
  await Promise.all([fs.mkdir(homeA), fs.mkdir(homeB)]);
  outputRepo = makeBareRepo(path.join(root, 'repos', 'models.git'), { 'README.md': '# models\n' });
  config = parseConfig({
    backends: {
      pi: {
        kind: 'prime-intellect',
        api_url: pi.url,
        api_key: PI_KEY,
        hourly_usd: 3,
        poll_interval_ms: 100,
        request_timeout_ms: 5000,
        trainers: { model: { template_id: 'tpl-model' }, grows: { template_id: 'tpl-grows' } },
      },
    },
    retry_backoff: { initial_seconds: 0.2, max_seconds: 1 },
    follow_heartbeat_seconds: 3,
    admission_poll_seconds: 0.5,
    results: { max_minutes: 1, git: { file_roots: [root] } },
  });
  ({ client, connection } = await testClient());
});

afterAll(async () => {
  for (const w of workers) await w.stop().catch(() => undefined);
  await connection?.close();
  await pi.stop();
  await fs.rm(root, { recursive: true, force: true });
});

/** The history as text with every base64 payload decoded next to it. */
function historyText(history: unknown): string {
  const json = JSON.stringify(history);
  const decoded = [...json.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8'));
  return `${json}\n${decoded.join('\n')}`;
}

test('replica A follows the pod to SUCCEEDED and is lost before the commit; replica B commits the outputs from the agent; then the pod is deleted', async () => {
  let lostA!: () => void;
  const aReachedCommit = new Promise<void>((resolve) => (lostA = resolve));
  let podAtCommit: string | undefined;
  const a = await startWorker(config, homeA, TQ, {
    beforeArtifactsCommit: (input) => {
      podAtCommit = pi.pods.get(input.deployment.id)?.status;
      lostA();
      throw new Error('injected: replica A is lost before its commit');
    },
  });
  workers.push(a);
  const s = makeSignedSpec({
    trainer: { image: 'model' },
    backend: { provider: 'pi', max_cost_usd: 5 },
    objective: { task_types: ['no-such-task-type'], target_metric: 0 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}' },
  });
  const handle = await startJob(client, TQ, s);
  await aReachedCommit;
  // The attempt SUCCEEDED on A, and its pod is still there for the commit.
  expect(podAtCommit).toBe('ACTIVE');
  await a.stop();
  await fs.rm(homeA, { recursive: true, force: true });
  const b = await startWorker(config, homeB, TQ);
  workers.push(b);

  const final = (await handle.result()) as JobStatus;
  expect(final.state).toBe('COMPLETED');
  expect(states(final)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'EVALUATING', 'COMPLETED']);
  expect(final.deployments.map((d) => [d.backend, d.state, d.closed])).toEqual([['pi', 'SUCCEEDED', true]]);

  // The outputs came from the agent to B: committed, checkpoints left in the container.
  const a1 = final.artifacts!;
  const repoDir = outputRepo.slice('file://'.length);
  const folder = `models/job-${s.job_id}`;
  const listed = git(repoDir, 'ls-tree', '-r', '--name-only', a1.commit).trim().split('\n').sort();
  expect(listed).toEqual(['README.md', ...['config.json', 'manifest.json', 'manifest.sig', 'metrics.json', 'model.safetensors', 'model.sig', 'provenance.intoto.json', 'training_curves.svg', 'training_log.jsonl'].map((f) => `${folder}/${f}`)].sort());
  expect(git(repoDir, 'show', `${a1.commit}:${folder}/model.safetensors`)).toBe(`fake weights of ${s.job_id}\n`);
  // Nothing on A's disk (it is gone); B kept no staged copy from a follower either.
  await expect(fs.access(homeA)).rejects.toThrow();

  // The pod was deleted once, after the commit (it was ACTIVE when the commit began), and nothing is left running.
  const deletes = pi.requests.filter((r) => r.method === 'DELETE');
  expect(deletes.map((r) => r.path)).toEqual([`/api/v1/pods/${final.deployments[0]!.id}`]);
  expect(pi.live).toEqual([]);

  // No credential nor agent token in the history or the status.
  const history = historyText(await handle.fetchHistory());
  for (const secret of [PI_KEY, agentToken(PI_KEY, 'pi', s.job_id, 1)]) {
    expect(history).not.toContain(secret);
    expect(JSON.stringify(final)).not.toContain(secret);
  }
  expect(history).toContain('forge-remote-outputs-from-agent');
});

test('an output larger than the agent announced is refused: the job ends ABANDONED (REJECTED, not retried), its pod deleted, no token in the reason', async () => {
  // Replica B of the test above (the only worker left on the queue).
  const s = makeSignedSpec({
    trainer: { image: 'grows' },
    backend: { provider: 'pi', max_cost_usd: 5 },
    objective: { task_types: ['no-such-task-type'], target_metric: 0 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}' },
  });
  const final = (await (await startJob(client, TQ, s)).result()) as JobStatus;
  expect(final.state).toBe('ABANDONED');
  expect(final.last_error).toMatchObject({ class: 'REJECTED', detail: expect.stringMatching(/output\/model\.safetensors is larger than the 8 bytes its done\.json announced; refused/) });
  expect(final.last_error?.detail).not.toContain(agentToken(PI_KEY, 'pi', s.job_id, 1));
  expect(final.deployments.map((d) => [d.state, d.closed])).toEqual([['SUCCEEDED', true]]);
  expect(pi.live).toEqual([]);
});
