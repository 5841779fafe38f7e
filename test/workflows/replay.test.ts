/**
 * Replays the histories committed in test/histories/ through today's workflow code: a change that is not
 * replay-safe (without `patched()`) fails here, before it can break running jobs.
 *
 * To add histories for new scenarios: `RECORD_HISTORIES=1 npx jest test/workflows/replay.test.ts`, then commit
 * the new files. It records only scenarios that have no file yet: the old files are the proof that histories made by
 * older workflow code still replay. `RECORD_HISTORIES=all` records every scenario again.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Worker } from '@temporalio/worker';
import type { WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { generateKeyPair, signCancelRequest } from '../../jobspec/signing';
import { cancelJob } from '../../client/cancel-job';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, startJob, startWorker, tempDir, temporalAddress, testClient, testConfig, waitForStatus } from '../helpers/forge';
import { findTemporalCli } from '../../infra/dev-server';
import { nip19 } from 'nostr-tools';
import { grpoWorkflowId, integrateWorkflowId } from '../../common/names';
import { makeBareRepo } from '../helpers/results';

const DIR = path.resolve(__dirname, '..', 'histories');
const RECORD = process.env.RECORD_HISTORIES === '1' || process.env.RECORD_HISTORIES === 'all';
const RECORD_ALL = process.env.RECORD_HISTORIES === 'all';

async function record(): Promise<void> {
  const TQ = 'test-record-histories';
  const home = tempDir('forge-record-');
  const config = testConfig({
    'local-a': { trainers: { ok: fakeTrainer('ok', 0.2), 'fail-once': fakeTrainer('transient-until', 0.1, 2), vanish: fakeTrainer('vanish', 0.1), slow: fakeTrainer('ok', 30), 'exit-3': fakeTrainer('exit', 0.1, 3), instant: ['/bin/true'], 'always-75': fakeTrainer('transient-until', 0, 100_000) } },
    'local-b': { trainers: { vanish: fakeTrainer('ok', 0.2) } },
  });
  // Result integration (artifacts, evals, registry, notifications) runs on a worker of its own queue: a stand-in
  // trainer that writes a model, a task type without eval tasks (nothing to serve), notifications that cannot be sent.
  const TQ_RESULTS = `${TQ}-results`;
  const outputRepo = makeBareRepo(path.join(home, 'models.git'), { 'README.md': '# models\n' });
  const resultsConfig = testConfig({ 'local-a': { trainers: { model: fakeTrainer('model', 0.2), ok: fakeTrainer('ok', 0.2), slow: fakeTrainer('ok', 30) } } }, undefined, {
    results: { git: { file_roots: [home] }, notifications: { retry: { maximum_attempts: 2, initial_interval_seconds: 0.1 } } },
  });
  // Evaluation as attempts on the backend (patch forge-eval-on-backend): the stand-in trainer writes no rows, which a
  // suite without task files for the job's type does not owe.
  const TQ_EVAL_BACKEND = `${TQ}-eval-backend`;
  const evalBackendConfig = testConfig({ 'local-a': { trainers: { model: fakeTrainer('model', 0.2), ok: fakeTrainer('ok', 0.2) } } }, undefined, {
    results: { git: { file_roots: [home] }, evaluation: { where: 'backend' }, notifications: { retry: { maximum_attempts: 2, initial_interval_seconds: 0.1 } } },
  });
  const worker = await startWorker(config, home, TQ);
  const resultsWorker = await startWorker(resultsConfig, home, TQ_RESULTS);
  const evalBackendWorker = await startWorker(evalBackendConfig, home, TQ_EVAL_BACKEND);
  const { client, connection } = await testClient();
  const keys = generateKeyPair();
  const scenarios: Record<string, ReturnType<typeof makeSignedSpec>> = {
    'completed': makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'local-a' } }),
    'retry-then-completed': makeSignedSpec({ trainer: { image: 'fail-once' }, backend: { provider: 'local-a' } }),
    'failover': makeSignedSpec({ trainer: { image: 'vanish' }, backend: { provider: 'local-a', fallbacks: ['local-b'] } }),
    'abandoned-exit-code': makeSignedSpec({ trainer: { image: 'exit-3' }, backend: { provider: 'local-a' } }),
    'invalid-spec': makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'nowhere' } }),
    'cancelled-by-owner': makeSignedSpec({ trainer: { image: 'slow' }, backend: { provider: 'local-a' } }, keys),
    // Recorded after validation and the first submission became one local activity (patch forge-accept-and-submit).
    'accept-and-submit-completed': makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'local-a' } }),
    'accept-and-submit-failover': makeSignedSpec({ trainer: { image: 'vanish' }, backend: { provider: 'local-a', fallbacks: ['local-b'] } }),
    'accept-and-submit-invalid-spec': makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'nowhere' } }),
    'accept-and-submit-refused': makeSignedSpec({ trainer: { image: 'no-such-image' }, backend: { provider: 'local-a' } }),
    // A trainer that ended before the submit looked: the submit closes it, the job ends in its first workflow task.
    'ended-at-submit': makeSignedSpec({ trainer: { image: 'instant' }, backend: { provider: 'local-a' } }),
    // Recorded after a cancel stopped recording FAILED and RETRY first and closing became an ordinary activity
    // (patches forge-cancel-not-failure, forge-internal-abandon, forge-close-activity).
    // More retries than one run's history holds: the first run continues as new (patch forge-continue-as-new); both
    // the first run and the last (started from the carried status) are recorded.
    'continued-as-new': makeSignedSpec({ trainer: { image: 'always-75' }, backend: { provider: 'local-a', max_retries: 60 } }),
    'cancelled-by-owner-no-failure': makeSignedSpec({ trainer: { image: 'slow' }, backend: { provider: 'local-a', fallbacks: ['local-b'] } }, keys),
  };
  const resultSpec = (overrides: object, signer?: typeof keys) =>
    makeSignedSpec({
      backend: { provider: 'local-a' },
      objective: { task_types: ['no-eval-tasks'], target_metric: 0 },
      artifacts: { output_repo: outputRepo },
      notifications: { on_complete: `nostr:${nip19.npubEncode('a'.repeat(64))}`, on_failure: `nostr:${nip19.npubEncode('b'.repeat(64))}` },
      ...overrides,
    }, signer);
  const resultScenarios: Record<string, ReturnType<typeof makeSignedSpec>> = {
    'results-completed': resultSpec({ trainer: { image: 'model' } }),
    'results-no-model-abandoned': resultSpec({ trainer: { image: 'ok' } }),
    'eval-job': resultSpec({ job_type: 'eval' }),
    // Recorded after eval jobs stopped passing through EVALUATING (patch forge-eval-jobs-run).
    'eval-job-run': resultSpec({ job_type: 'eval' }),
    // Recorded after a cancelled job notifies its owner too (patch forge-notify-cancel: job.cancelled to on_failure).
    'cancelled-by-owner-notified': resultSpec({ trainer: { image: 'slow' } }, keys),
  };
  const evalBackendScenarios: Record<string, ReturnType<typeof makeSignedSpec>> = {
    'eval-job-on-backend': resultSpec({ job_type: 'eval', trainer: { image: 'ok' } }),
    'results-eval-on-backend': resultSpec({ trainer: { image: 'model' } }),
  };
  const todo = [
    ...Object.entries(scenarios).map(([name, spec]) => ({ name, spec, queue: TQ })),
    ...Object.entries(resultScenarios).map(([name, spec]) => ({ name, spec, queue: TQ_RESULTS })),
    ...Object.entries(evalBackendScenarios).map(([name, spec]) => ({ name, spec, queue: TQ_EVAL_BACKEND })),
  ].filter(({ name }) => RECORD_ALL || !existsSync(path.join(DIR, `trainingJob-${name}.json`)));
  const show = (workflowId: string, runId?: string): Buffer =>
    execFileSync(findTemporalCli(), ['workflow', 'show', '--address', temporalAddress(), '-w', workflowId, ...(runId ? ['-r', runId] : []), '-o', 'json']);
  try {
    for (const { name, spec, queue } of todo) {
      const handle = await startJob(client, queue, spec);
      if (name.startsWith('cancelled-by-owner')) {
        await waitForStatus(handle, (s) => s.state === 'RUNNING');
        await cancelJob(handle, signCancelRequest(spec.job_id, Math.floor(Date.now() / 1000), keys.secretKey));
      }
      await handle.result();
      // The CLI writes the same JSON the Web UI downloads, which is what operators attach to bug reports.
      writeFileSync(path.join(DIR, `trainingJob-${name}.json`), show(handle.workflowId));
      const firstRunId = (handle as WorkflowHandleWithFirstExecutionRunId).firstExecutionRunId;
      if (name === 'continued-as-new') writeFileSync(path.join(DIR, `trainingJob-${name}-first-run.json`), show(handle.workflowId, firstRunId));
      if (name === 'results-completed') writeFileSync(path.join(DIR, 'integrateResults-completed.json'), show(integrateWorkflowId(spec.job_id)));
    }
  } finally {
    await evalBackendWorker.stop();
    await resultsWorker.stop();
    await worker.stop();
    await connection.close();
  }
}

interface StoredHistory {
  events: { workflowExecutionStartedEventAttributes?: { input?: { payloads?: { data?: string }[] } } }[];
}

/** trainingJob checks its own id against the spec's job_id, so replay must use the original id. */
function workflowIdOf(history: StoredHistory, file: string): string {
  const data = history.events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data;
  if (!data) throw new Error(`${file}: no workflow input in the first event`);
  const input = JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { job_id?: string; spec?: { job_id: string }; jobId?: string; attempt?: number };
  // integrateResults takes {spec, ...}: its id is the child's. grpoRun takes {jobId, attempt, ...} (test/rl/rl-job.test.ts records it).
  if (input.jobId && input.attempt) return grpoWorkflowId(input.jobId, input.attempt);
  return input.spec ? integrateWorkflowId(input.spec.job_id) : `job-${input.job_id}`;
}

test('every committed history replays without non-determinism', async () => {
  if (RECORD) await record();
  const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
  expect(files.length).toBeGreaterThanOrEqual(10);
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
