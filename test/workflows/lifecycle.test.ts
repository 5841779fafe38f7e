/**
 * The trainingJob lifecycle against a real Temporal dev server and real trainer processes (test/fixtures).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { JobStatus } from '../../workflows/messages';
import { findTemporalCli } from '../../infra/dev-server';
import { ForgeJobState } from '../../workflows/search-attributes';
import { makeSignedSpec } from '../jobspec/fixtures';
import {
  fakeTrainer,
  processAlive,
  readStarts,
  runJob,
  states,
  tempDir,
  temporalAddress,
  testConfig,
  useForge,
} from '../helpers/forge';

const TQ = 'test-lifecycle';
const home = tempDir('forge-lifecycle-');
const starts = `${home}/starts.log`;

// Each image is one trainer behaviour; local-a and local-b are two backends of kind local (for failover).
const config = testConfig(
  {
    'local-a': {
      trainers: {
        ok: fakeTrainer('ok', 0.2),
        'fail-once': fakeTrainer('transient-until', 0.1, 2),
        'always-75': fakeTrainer('exit', 0.1, 75),
        'exit-3': fakeTrainer('exit', 0.1, 3),
        vanish: fakeTrainer('vanish', 0.1),
        slow: fakeTrainer('ok', 30),
      },
    },
    'local-b': { trainers: { vanish: fakeTrainer('ok', 0.2) } },
    pricey: { hourly_usd: 36_000, trainers: { slow: fakeTrainer('ok', 30) } },
    // Logs +1 when it starts and -1 when it ends, to measure how many ran at once.
    single: {
      max_concurrent: 1,
      trainers: { count: ['/bin/sh', '-c', 'echo "$(date +%s%N) 1" >> "$FORGE_TEST_STARTS.count"; sleep 0.7; echo "$(date +%s%N) -1" >> "$FORGE_TEST_STARTS.count"'] },
    },
  },
  starts,
  // The budget test needs an attempt that starts and is stopped mid-run: with the default "fit", admission would
  // refuse the $36,000/h backend up front (that rule is tested in test/workflows/remote-failover.test.ts).
  { admission: { budget: 'stop' } },
);

const forge = useForge(config, home, TQ);

const spec = (image: string, backend: object = {}, extra: object = {}) =>
  makeSignedSpec({ trainer: { image }, backend: { provider: 'local-a', ...backend }, ...extra });

test('a successful job goes CREATED → QUEUED → SUBMITTED → RUNNING → COMPLETED', async () => {
  const s = spec('ok');
  const status = await runJob(forge.client, TQ, s);
  expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
  expect(status).toMatchObject({ job_id: s.job_id, state: 'COMPLETED', attempt: 1, backend: 'local-a', last_error: null });
  expect(status.deployments).toHaveLength(1);
  expect(status.deployments[0]).toMatchObject({ state: 'SUCCEEDED', exit_code: 0, closed: true });
  for (const t of status.transitions) expect(Date.parse(t.at)).not.toBeNaN();

  const desc = await forge.client.workflow.getHandle(`job-${s.job_id}`).describe();
  expect(desc.typedSearchAttributes.get(ForgeJobState)).toBe('COMPLETED');
  expect(desc.searchAttributes).toMatchObject({
    ForgeJobType: ['finetune'],
    ForgeBackend: ['local-a'],
    ForgeOwner: [s.owner_did],
    ForgeBaseModel: ['tiny'],
    ForgeAttempt: [1],
  });
  expect(desc.memo).toMatchObject({ spec: { job_type: 'finetune', backends: ['local-a'] } });
});

test('a transient failure (exit 75) is retried on the same backend and then succeeds', async () => {
  const status = await runJob(forge.client, TQ, spec('fail-once'));
  expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'FAILED', 'RETRY', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
  expect(status.errors.map((e) => [e.class, e.backend])).toEqual([['TRANSIENT', 'local-a']]);
  expect(status.deployments.map((d) => d.backend)).toEqual(['local-a', 'local-a']);
  expect(status.attempt).toBe(2);
});

test('a lost deployment fails over to the next backend', async () => {
  const status = await runJob(forge.client, TQ, spec('vanish', { fallbacks: ['local-b'] }));
  expect(status.state).toBe('COMPLETED');
  expect(status.errors.map((e) => [e.class, e.backend])).toEqual([['LOST', 'local-a']]);
  expect(status.deployments.map((d) => [d.backend, d.state])).toEqual([
    ['local-a', 'FAILED'],
    ['local-b', 'SUCCEEDED'],
  ]);
  expect(status.transitions.find((t) => t.state === 'RETRY')?.reason).toMatch(/failover.*local-b/);
});

test('retries stop at max_retries: ABANDONED', async () => {
  const status = await runJob(forge.client, TQ, spec('always-75', { max_retries: 2 }));
  expect(status.state).toBe('ABANDONED');
  expect(status.deployments).toHaveLength(3);
  expect(status.errors.map((e) => e.class)).toEqual(['TRANSIENT', 'TRANSIENT', 'TRANSIENT']);
  expect(status.transitions.at(-1)?.reason).toMatch(/max_retries \(2\) used up/);
});

test('a permanent trainer failure is not retried', async () => {
  const status = await runJob(forge.client, TQ, spec('exit-3'));
  expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'FAILED', 'ABANDONED']);
  expect(status.last_error).toMatchObject({ class: 'EXIT_CODE', attempt: 1, backend: 'local-a' });
  expect(status.last_error?.detail).toMatch(/3/);
  expect(status.deployments[0]?.exit_code).toBe(3);
});

test('the budget caps the whole job: the running attempt is stopped and the job ABANDONED', async () => {
  // $36,000/h is $10/s: a $2 budget lasts 0.2 s.
  const s = makeSignedSpec({ trainer: { image: 'slow' }, backend: { provider: 'pricey', max_cost_usd: 2 } });
  const started = Date.now();
  const status = await runJob(forge.client, TQ, s);
  expect(Date.now() - started).toBeLessThan(20_000);
  expect(status.state).toBe('ABANDONED');
  expect(status.last_error?.class).toBe('BUDGET');
  expect(status.transitions.at(-1)?.reason).toMatch(/^BUDGET/);
  expect(status.deployments[0]?.closed).toBe(true);
  expect(status.cost_usd).toBeGreaterThanOrEqual(2);
});

test('an attempt that runs past max_hours times out and is retried, then ABANDONED', async () => {
  const s = spec('slow', { max_retries: 1 }, { resources: { gpus: 0, cpus: 1, ram_gb: 1, storage_gb: 1, max_hours: 0.0003 } });
  const status = await runJob(forge.client, TQ, s);
  expect(status.state).toBe('ABANDONED');
  expect(status.errors.map((e) => e.class)).toEqual(['TIMEOUT', 'TIMEOUT']);
  expect(status.deployments.every((d) => d.closed)).toBe(true);
  const pids = readStarts(starts).filter((x) => x.job === s.job_id).map((x) => x.pid);
  expect(pids).toHaveLength(2);
  for (const pid of pids) expect(processAlive(pid)).toBe(false);
});

test('an invalid spec is ABANDONED with INVALID_SPEC and nothing is submitted', async () => {
  const s = spec('ok', {}, { hyperparameters: { learning_rate: 0 } });
  const status = await runJob(forge.client, TQ, s);
  expect(states(status)).toEqual(['ABANDONED']);
  expect(status.last_error?.class).toBe('INVALID_SPEC');
  expect(status.last_error?.detail).toMatch(/hyperparameters\.learning_rate/);
  expect(status.deployments).toHaveLength(0);
  expect(readStarts(starts).some((x) => x.job === s.job_id)).toBe(false);
});

test('a tampered spec (signature no longer matches) is ABANDONED as INVALID_SPEC', async () => {
  const s = { ...spec('ok'), created_at: 1 };
  const status = await runJob(forge.client, TQ, s);
  expect(status.state).toBe('ABANDONED');
  expect(status.last_error?.detail).toMatch(/signature_ed25519/);
});

test('a spec naming a backend the operator did not configure is refused with the field named', async () => {
  const status = await runJob(forge.client, TQ, spec('ok', { provider: 'akash' }));
  expect(status.state).toBe('ABANDONED');
  expect(status.last_error?.detail).toMatch(/backend\.provider: unknown backend "akash"/);
});

test('abandoned jobs are found through the ForgeJobState search attribute', async () => {
  const s = spec('exit-3');
  await runJob(forge.client, TQ, s);
  const ids: string[] = [];
  for (let i = 0; i < 50 && !ids.includes(`job-${s.job_id}`); i++) {
    ids.length = 0;
    for await (const wf of forge.client.workflow.list({ query: `ForgeJobState="ABANDONED" AND TaskQueue="${TQ}"` })) ids.push(wf.workflowId);
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(ids).toContain(`job-${s.job_id}`);
  const completed: string[] = [];
  for await (const wf of forge.client.workflow.list({ query: `ForgeJobState="ABANDONED" AND WorkflowId="job-${s.job_id}"` })) completed.push(wf.workflowId);
  expect(completed).toEqual([`job-${s.job_id}`]);
});

test('max_concurrent holds jobs in QUEUED until the backend has room; all complete', async () => {
  const specs = [0, 1, 2].map(() => makeSignedSpec({ trainer: { image: 'count' }, backend: { provider: 'single' } }));
  const results = await Promise.all(specs.map((s) => runJob(forge.client, TQ, s)));
  expect(results.map((r) => r.state)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED']);
  const events = readFileSync(`${starts}.count`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' ').map(Number) as [number, number])
    .sort((a, b) => a[0] - b[0]);
  expect(events).toHaveLength(6);
  let running = 0;
  let most = 0;
  for (const [, delta] of events) most = Math.max(most, (running += delta));
  expect(most).toBe(1);
});

test('a signed spec started with the Temporal CLI runs through the lifecycle', async () => {
  const s = spec('ok');
  execFileSync(findTemporalCli(), [
    'workflow', 'start', '--address', temporalAddress(),
    '--type', 'trainingJob', '--task-queue', TQ, '--workflow-id', `job-${s.job_id}`, '--input', JSON.stringify(s),
  ]);
  const status = (await forge.client.workflow.getHandle(`job-${s.job_id}`).result()) as JobStatus;
  expect(states(status)).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
});
