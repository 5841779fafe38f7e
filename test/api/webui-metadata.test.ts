/**
 * What the Temporal Web UI shows of a job, read back through the Temporal client against the real dev server: the
 * API's static summary and details, the workflow's current details (the SDK's `__temporal_workflow_metadata` query,
 * which the Web UI reads) at completion, and the summaries of the activity calls in the history.
 */
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { jobWorkflowId } from '../../common/names';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, runJob, tempDir, testConfig } from '../helpers/forge';
import { makeBareRepo } from '../helpers/results';
import { http, startApi, waitForJob, type ApiHarness } from './harness';

const TQ = 'test-api-webui-metadata';
const home = tempDir('forge-api-webui-');
let api: ApiHarness;
let outputRepo: string;

beforeAll(async () => {
  outputRepo = makeBareRepo(path.join(home, 'repos', 'models.git'), { 'README.md': '# models\n' });
  // The trainer runs 2 s, so a follow activity sees it end (one that ended before the submit looked has none).
  const config = testConfig({ local: { trainers: { model: fakeTrainer('model', 2) } } }, undefined, {
    results: { max_minutes: 2, git: { file_roots: [home] } },
  });
  api = await startApi({ taskQueue: TQ, config, home });
});
afterAll(async () => {
  await api?.stop();
  await fs.rm(home, { recursive: true, force: true });
});

function spec() {
  return makeSignedSpec({
    trainer: { image: 'model' },
    objective: { task_types: ['no-such-task-type'], target_metric: 0 },
    artifacts: { output_repo: outputRepo, output_branch: 'jobs/${job_id}', save_checkpoints: false },
  });
}

type Metadata = temporal.api.sdk.v1.IWorkflowMetadata;

function text(p: temporal.api.common.v1.IPayload | null | undefined): string | undefined {
  return p ? defaultPayloadConverter.fromPayload<string>(p) : undefined;
}

async function currentDetails(workflowId: string): Promise<string> {
  const meta = await api.client.workflow.getHandle(workflowId).query<Metadata>('__temporal_workflow_metadata');
  return meta.currentDetails ?? '';
}

async function activitySummaries(workflowId: string): Promise<string[]> {
  const history = await api.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).map((e) => text(e.userMetadata?.summary) ?? '(none)');
}

test('a job submitted through the API: static summary and details, current details at completion, activity summaries', async () => {
  const s = spec();
  const id = jobWorkflowId(s.job_id);
  expect((await http(api.url, 'POST', '/jobs', s)).status).toBe(201);
  await waitForJob<{ state: string }>(api.url, s.job_id, (j) => j.state === 'COMPLETED' || j.state === 'ABANDONED');

  const desc = await api.client.workflow.getHandle(id).describe();
  const shortOwner = `${s.owner_did.slice(0, 'did:key:'.length + 8)}…${s.owner_did.slice(-5)}`;
  const summary = `finetune · ${s.base_model.name} · ${shortOwner}`;
  expect(await desc.staticSummary()).toBe(summary);
  const staticDetails = (await desc.staticDetails())!;
  expect(staticDetails).toContain(`| job | ${s.job_id} |`);
  expect(staticDetails).toContain('| backends | local |');
  expect(staticDetails).toContain(`logs \`GET /jobs/${s.job_id}/logs\``);

  const details = await currentDetails(id);
  expect(details.split('\n')[0]).toBe(`**${summary}**`);
  expect(details).toContain('| state | COMPLETED |');
  expect(details).toContain('| attempt | 1 on local |');
  expect(details).toMatch(/\| cost \| 0\.0000 USD of \d+\.\d\d USD budget \|/);
  expect(details).toMatch(/\| artifacts \| file:\/\/.*models\.git jobs\/.* @ [0-9a-f]{12} \|/);
  expect(details).toContain('| evals | no-such-task-type no eval tasks, not promoted |');
  for (const p of ['', '/logs', '/artifacts', '/curves.svg']) expect(details).toContain(`\`GET /jobs/${s.job_id}${p}\``);

  const summaries = await activitySummaries(id);
  expect(summaries).not.toContain('(none)'); // every activity call says what it does
  expect(summaries).toContainEqual(expect.stringMatching(/^follow attempt 1 on local \(.+\)$/));
  expect(summaries).toContain(`commit the outputs of attempt 1 to ${outputRepo} jobs/${s.job_id}`);
  const child = await activitySummaries(`${id}-integrate`);
  expect(child[0]).toMatch(/^evaluate the trained model \([0-9a-f]{12}\) on no-such-task-type$/);
  expect(child[1]).toMatch(/^offer the trained model \([0-9a-f]{12}\) to the elite registry: no-such-task-type 0\.0% of 0$/);
  const childDetails = await currentDetails(`${id}-integrate`);
  expect(childDetails.split('\n')[0]).toBe(`**Results of job ${s.job_id}**`);
  expect(childDetails).toContain('| stage | done |');
  expect(childDetails).toContain('| evals | no-such-task-type no eval tasks, not promoted |');
});

test('a job started by another client (no static metadata): the workflow\'s first details carry the summary line', async () => {
  const s = spec();
  const id = jobWorkflowId(s.job_id);
  const final = await runJob(api.client, TQ, s);
  expect(final.state).toBe('COMPLETED');
  const desc = await api.client.workflow.getHandle(id).describe();
  expect(await desc.staticSummary()).toBeUndefined();
  const details = await currentDetails(id);
  expect(details.split('\n')[0]).toMatch(new RegExp(`^\\*\\*finetune · ${s.base_model.name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} · did:key:z6Mk.{4}….{5}\\*\\*$`));
  expect(details).toContain('| state | COMPLETED |');
});
