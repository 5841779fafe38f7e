/**
 * Worker Deployment Versioning (issue 8, docs/operations.md "Rolling out a new workflow version"): a job started on
 * build v1 stays pinned to v1 while v2 becomes the current version; new jobs run on v2; both complete.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import type { Client, Connection, WorkflowHandle } from '@temporalio/client';
import type { JobStatus } from '../../workflows/messages';
import { orchestratorSettings } from '../../workers/config/orchestrator';
import { createOrchestratorWorker } from '../../workers/orchestrator';
import { deploymentOptions, readWorkerProcessEnv } from '../../workers/pool';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, startJob, tempDir, temporalAddress, testClient, testConfig, waitForStatus } from '../helpers/forge';

const TQ = 'test-versioning';
const DEPLOYMENT = 'forge-test-versioning';
const home = tempDir('forge-versioning-');
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 4), quick: fakeTrainer('ok', 0.2) } } });
writeFileSync(path.join(home, 'config.json'), JSON.stringify(config));

let client: Client;
let connection: Connection;
const running: { worker: Worker; done: Promise<void>; native: NativeConnection }[] = [];

async function startVersioned(buildId: string): Promise<Worker> {
  const native = await NativeConnection.connect({ address: temporalAddress() });
  const env = readWorkerProcessEnv({ FORGE_WORKER_DEPLOYMENT: DEPLOYMENT, FORGE_WORKER_BUILD_ID: buildId });
  const worker = await createOrchestratorWorker({
    connection: native,
    namespace: 'default',
    config,
    home,
    taskQueue: TQ,
    workflowBundlePath: process.env.FORGE_TEST_WORKFLOW_BUNDLE,
    settings: orchestratorSettings({ FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS: '1' }),
    deployment: deploymentOptions(env),
  });
  running.push({ worker, done: worker.run(), native });
  return worker;
}

/** What an operator does with `temporal worker deployment set-current-version` (retried until the version registered). */
async function setCurrent(buildId: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await client.workflowService.setWorkerDeploymentCurrentVersion({ namespace: 'default', deploymentName: DEPLOYMENT, buildId, identity: 'test' });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

async function versionOf(handle: WorkflowHandle): Promise<{ buildId?: string; behavior?: string }> {
  const d = await handle.describe();
  const info = d.raw.workflowExecutionInfo?.versioningInfo;
  return { buildId: info?.deploymentVersion?.buildId ?? undefined, behavior: String(info?.behavior ?? '') };
}

beforeAll(async () => {
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // installed by another test in this jest worker
  }
  ({ client, connection } = await testClient());
});
afterAll(async () => {
  for (const r of running) if (r.worker.getState() === 'RUNNING') r.worker.shutdown();
  await Promise.all(running.map((r) => r.done.catch(() => undefined)));
  await Promise.all(running.map((r) => r.native.close()));
  await connection?.close();
});

test('a running job stays on the build that started it while a new build becomes current', async () => {
  await startVersioned('v1');
  await setCurrent('v1');
  const old = await startJob(client, TQ, makeSignedSpec({ trainer: { image: 'ok' } }));
  await waitForStatus(old, (s) => s.state === 'RUNNING');
  expect(await versionOf(old)).toEqual({ buildId: 'v1', behavior: '1' }); // 1 = VERSIONING_BEHAVIOR_PINNED

  await startVersioned('v2');
  await setCurrent('v2');
  const fresh = await startJob(client, TQ, makeSignedSpec({ trainer: { image: 'quick' } }));
  const freshResult = (await fresh.result()) as JobStatus;
  expect(freshResult.state).toBe('COMPLETED');
  expect((await versionOf(fresh)).buildId).toBe('v2');

  // The old job finishes on v1, the build that started it.
  const oldResult = (await old.result()) as JobStatus;
  expect(oldResult.state).toBe('COMPLETED');
  expect((await versionOf(old)).buildId).toBe('v1');
}, 90_000);
