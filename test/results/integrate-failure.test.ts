/**
 * integrateResults never ends Temporal-Failed: a promotion the registry refuses (here: a registry repository outside
 * the operator's file_roots) comes back to the parent as the child's result, and the job ends ABANDONED with it.
 */
import path from 'node:path';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, startJob, states, tempDir, testConfig, useForge } from '../helpers/forge';
import { makeBareRepo } from '../helpers/results';
import type { JobStatus } from '../../workflows/messages';
import { integrateWorkflowId } from '../../common/names';

const TQ = 'test-integrate-failure';
const home = tempDir('forge-integrate-failure-');
const outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
const elsewhere = makeBareRepo(path.join(tempDir('forge-elsewhere-'), 'registry.git'));
const config = testConfig({ local: { trainers: { model: fakeTrainer('model', 0) } } }, undefined, {
  results: { max_minutes: 2, git: { file_roots: [home] }, registry: { repo: elsewhere } },
});
const forge = useForge(config, home, TQ);

test('a refused promotion: the integrate child completes, the job ends ABANDONED with the reason', async () => {
  const spec = makeSignedSpec({
    trainer: { image: 'model' },
    objective: { task_types: ['no-such-task-type'], target_metric: 0 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}' },
  });
  const handle = await startJob(forge.client, TQ, spec);
  const status = (await handle.result()) as JobStatus;
  expect(states(status).slice(-3)).toEqual(['EVALUATING', 'FAILED', 'ABANDONED']);
  expect(status.last_error).toMatchObject({ class: 'REJECTED', detail: expect.stringMatching(/^evaluation failed: .*file_roots/) });
  const child = await forge.client.workflow.getHandle(integrateWorkflowId(spec.job_id)).describe();
  expect(child.status.name).toBe('COMPLETED');
});
