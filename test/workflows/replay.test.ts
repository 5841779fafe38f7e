/**
 * Replays the histories committed in test/histories/ through today's workflow code: a change that is not
 * replay-safe (without `patched()`) fails here, before it can break running jobs.
 *
 * To add histories for new scenarios: `RECORD_HISTORIES=1 npx jest test/workflows/replay.test.ts`, then commit
 * the new files.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Worker } from '@temporalio/worker';
import { generateKeyPair, signCancelRequest } from '../../spec/signing';
import { cancelJob } from '../../client/cancel-job';
import { makeSignedSpec } from '../spec/fixtures';
import { fakeTrainer, startJob, startWorker, tempDir, temporalAddress, testClient, testConfig, waitForStatus } from '../helpers/forge';
import { findTemporalCli } from '../../infra/dev-server';

const DIR = path.resolve(__dirname, '..', 'histories');
const RECORD = process.env.RECORD_HISTORIES === '1';

async function record(): Promise<void> {
  const TQ = 'test-record-histories';
  const home = tempDir('forge-record-');
  const config = testConfig({
    'local-a': { trainers: { ok: fakeTrainer('ok', 0.2), 'fail-once': fakeTrainer('transient-until', 0.1, 2), vanish: fakeTrainer('vanish', 0.1), slow: fakeTrainer('ok', 30), 'exit-3': fakeTrainer('exit', 0.1, 3) } },
    'local-b': { trainers: { vanish: fakeTrainer('ok', 0.2) } },
  });
  const worker = await startWorker(config, home, TQ);
  const { client, connection } = await testClient();
  const keys = generateKeyPair();
  const scenarios: Record<string, ReturnType<typeof makeSignedSpec>> = {
    'completed': makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'local-a' } }),
    'retry-then-completed': makeSignedSpec({ trainer: { image: 'fail-once' }, backend: { provider: 'local-a' } }),
    'failover': makeSignedSpec({ trainer: { image: 'vanish' }, backend: { provider: 'local-a', fallbacks: ['local-b'] } }),
    'abandoned-exit-code': makeSignedSpec({ trainer: { image: 'exit-3' }, backend: { provider: 'local-a' } }),
    'invalid-spec': makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'nowhere' } }),
    'cancelled-by-owner': makeSignedSpec({ trainer: { image: 'slow' }, backend: { provider: 'local-a' } }, keys),
  };
  try {
    for (const [name, spec] of Object.entries(scenarios)) {
      const handle = await startJob(client, TQ, spec);
      if (name === 'cancelled-by-owner') {
        await waitForStatus(handle, (s) => s.state === 'RUNNING');
        await cancelJob(handle, signCancelRequest(spec.job_id, Math.floor(Date.now() / 1000), keys.secretKey));
      }
      await handle.result();
      // The CLI writes the same JSON the Web UI downloads, which is what operators attach to bug reports.
      const json = execFileSync(findTemporalCli(), ['workflow', 'show', '--address', temporalAddress(), '-w', handle.workflowId, '-o', 'json']);
      writeFileSync(path.join(DIR, `trainingJob-${name}.json`), json);
    }
  } finally {
    await worker.stop();
    await connection.close();
  }
}

interface StoredHistory {
  events: { workflowExecutionStartedEventAttributes?: { input?: { payloads?: { data?: string }[] } } }[];
}

/** The workflow checks its own id against the spec's job_id, so replay must use the original id. */
function workflowIdOf(history: StoredHistory, file: string): string {
  const data = history.events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data;
  if (!data) throw new Error(`${file}: no workflow input in the first event`);
  const spec = JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { job_id: string };
  return `job-${spec.job_id}`;
}

test('every committed history replays without non-determinism', async () => {
  if (RECORD) await record();
  const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
  expect(files.length).toBeGreaterThanOrEqual(6);
  const histories = files.map((f) => {
    const history = JSON.parse(readFileSync(path.join(DIR, f), 'utf8')) as StoredHistory;
    return { workflowId: workflowIdOf(history, f), history };
  });
  const failures: string[] = [];
  for await (const r of Worker.runReplayHistories({ workflowBundle: { codePath: process.env.FORGE_TEST_WORKFLOW_BUNDLE! } }, histories)) {
    if (r.error) failures.push(`${r.workflowId}: ${r.error.message}`);
  }
  expect(failures).toEqual([]);
});
