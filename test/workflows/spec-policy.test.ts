/**
 * The workflow validates itself: a bare Temporal client that starts `trainingJob` with a spec its owner validly
 * signed, but which breaks the schema's bounds or the operator's policy, gets a job that ends ABANDONED with
 * INVALID_SPEC naming the field, and nothing is submitted or started (issue 14 points 2 and 7, issue 13 point 4).
 */
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import type { JobStatus } from '../../workflows/messages';
import { generateKeyPair } from '../../jobspec/signing';
import { deepMerge, makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, readStarts, startJob, states, tempDir, testConfig, useForge } from '../helpers/forge';

const TQ = 'test-spec-policy';
const home = tempDir('forge-spec-policy-');
const starts = path.join(home, 'starts.txt');
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 0.2), fail: fakeTrainer('exit', 0, 3) } } }, starts, {
  // Result integration on (the default): the output repo and branch are checked too.
  results: { git: { file_roots: [home], output_repos: ['git@github.com:acme/'] } },
});
const forge = useForge(config, home, TQ);
const keys = generateKeyPair();
const OUTPUT = { artifacts: { output_repo: `file://${home}/models.git` } };
const signed = (overrides: object) => makeSignedSpec(deepMerge({ ...OUTPUT, trainer: { image: 'ok' } }, overrides), keys);

/** The job's end, or a failure naming what it was doing: a workflow task failing forever never ends by itself. */
async function endOf(handle: WorkflowHandle, ms = 20_000): Promise<JobStatus> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      handle.result() as Promise<JobStatus>,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${handle.workflowId} did not end within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const holes: [string, object, string][] = [
  ['a NUL and a bidi override in base_model.name', { base_model: { name: '\u202e\u0000evil' } }, 'base_model.name'],
  ['backend.max_retries 1e9', { backend: { max_retries: 1e9 } }, 'backend.max_retries'],
  // Today's code made `new Date(now + max_hours h)` throw after the trainer started: a workflow task failing forever.
  ['resources.max_hours 1e10', { resources: { max_hours: 1e10 } }, 'resources.max_hours'],
  ["resources.max_hours over the operator's max_job_hours", { resources: { max_hours: 1000 } }, 'resources.max_hours'],
  ['20 fallbacks', { backend: { fallbacks: Array.from({ length: 20 }, (_, i) => `b${i}`) } }, 'backend.fallbacks'],
  ['output_branch main', { artifacts: { output_branch: 'main' } }, 'artifacts.output_branch'],
  ['output_repo outside the allow rules', { artifacts: { output_repo: 'https://github.com/victim/app.git' } }, 'artifacts.output_repo'],
  ['base_model local /etc', { base_model: { name: '/etc', source: 'local' } }, 'base_model.name'],
  ['data.repo file:///etc', { data: { repo: 'file:///etc' } }, 'data.repo'],
  ['an ssh output repo with no credential', { artifacts: { output_repo: 'git@github.com:acme/models.git' } }, 'artifacts.output_repo'],
];

test.each(holes)('%s: ABANDONED with INVALID_SPEC naming the field, nothing started', async (_name, overrides, field) => {
  const spec = signed(overrides);
  const status = await endOf(await startJob(forge.client, TQ, spec));
  expect(states(status)).toEqual(['ABANDONED']);
  expect(status.last_error?.class).toBe('INVALID_SPEC');
  expect(status.last_error?.detail).toContain(`${field}: `);
  expect(status.deployments).toHaveLength(0);
  expect(readStarts(starts).some((x) => x.job === spec.job_id)).toBe(false);
});

test('a spec within the policy runs as before', async () => {
  // A trainer that exits 3: it ran (one deployment), and there is nothing to commit.
  const spec = signed({ trainer: { image: 'fail' } });
  const status = await endOf(await startJob(forge.client, TQ, spec), 60_000);
  expect(status.last_error?.class).toBe('EXIT_CODE');
  expect(status.deployments).toHaveLength(1);
  expect(readStarts(starts).some((x) => x.job === spec.job_id)).toBe(true);
});
