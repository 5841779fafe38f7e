/**
 * The API's job metrics (issue 8): jobs by state, attempts, cost (from Temporal visibility), submit and poll latency.
 * The namespace is shared with other test files, so the checks are on this file's own jobs: deltas, not totals.
 */
import { JobMetrics } from '../../client/api/job-metrics';
import type { JobStatus } from '../../workflows/messages';
import { Registry } from 'prom-client';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, tempDir, testConfig } from '../helpers/forge';
import { startApi, type ApiHarness } from './harness';

const TQ = 'test-api-job-metrics';
const home = tempDir('forge-api-metrics-');
const config = testConfig({ local: { hourly_usd: 0.9, trainers: { ok: fakeTrainer('ok', 0.5), 'exit-3': fakeTrainer('exit', 0.2, 3) } } });
let api: ApiHarness;
beforeAll(async () => (api = await startApi({ taskQueue: TQ, config, home })));
afterAll(async () => api?.stop());

function sample(text: string, name: string, labels: string): number {
  const escaped = labels.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${name}\\{${escaped}\\} ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition never held');
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('submit and poll latency histograms on /metrics', async () => {
  const spec = makeSignedSpec({ trainer: { image: 'ok' } });
  const post = await fetch(`${api.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
  expect(post.status).toBe(201);
  expect((await fetch(`${api.url}/jobs/${spec.job_id}`)).status).toBe(200);
  expect((await fetch(`${api.url}/jobs/00000000-0000-4000-8000-000000000000`)).status).toBe(404);
  const text = await (await fetch(`${api.url}/metrics`)).text();
  expect(sample(text, 'forge_api_submit_latency_seconds_count', 'status="201"')).toBeGreaterThanOrEqual(1);
  expect(sample(text, 'forge_api_poll_latency_seconds_count', 'status="200"')).toBeGreaterThanOrEqual(1);
  expect(sample(text, 'forge_api_poll_latency_seconds_count', 'status="404"')).toBeGreaterThanOrEqual(1);
  expect(text).toMatch(/^forge_api_submit_latency_seconds_bucket\{le="0\.25",status="201"\} \d+/m);
  // Jobs by state come from visibility on the same scrape.
  expect(text).toMatch(/^forge_jobs\{state="QUEUED"\} \d+/m);
  expect(text).toMatch(/^forge_jobs_by_attempt\{attempt="4\+"\} \d+/m);
});

test('jobs by state, attempts, finished jobs and their cost follow what Temporal knows', async () => {
  const registry = new Registry();
  const metrics = new JobMetrics({ client: api.client, registry, refreshMs: 0, scrapeWaitMs: 10_000 });
  const scrape = async (): Promise<string> => registry.metrics();
  const before = await scrape();

  const ok = makeSignedSpec({ trainer: { image: 'ok' } });
  const failing = makeSignedSpec({ trainer: { image: 'exit-3' }, backend: { provider: 'local', max_retries: 0 } as never });
  for (const s of [ok, failing]) {
    expect((await fetch(`${api.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(s) })).status).toBe(201);
  }
  const results = await Promise.all([ok, failing].map(async (s) => (await api.client.workflow.getHandle(`job-${s.job_id}`).result()) as JobStatus));
  expect(results.map((r) => r.state)).toEqual(['COMPLETED', 'ABANDONED']);

  // Visibility is eventually consistent: scrape until both closed jobs are counted.
  const after = await waitFor(async () => {
    await metrics.maybeRefresh();
    const t = await scrape();
    const done = sample(t, 'forge_jobs_finished_total', 'state="COMPLETED",backend="local"') >= 1 && sample(t, 'forge_jobs_finished_total', 'state="ABANDONED",backend="local"') >= 1;
    return done ? t : undefined;
  });
  expect(sample(after, 'forge_jobs', 'state="COMPLETED"') - sample(before, 'forge_jobs', 'state="COMPLETED"')).toBeGreaterThanOrEqual(1);
  expect(sample(after, 'forge_jobs', 'state="ABANDONED"') - sample(before, 'forge_jobs', 'state="ABANDONED"')).toBeGreaterThanOrEqual(1);
  // $0.90/h (fits max_cost_usd $1 over max_hours 1) for about half a second: little, and more than nothing.
  expect(sample(after, 'forge_job_cost_usd_total', 'state="COMPLETED",backend="local"')).toBeGreaterThan(0);
  expect(after).toMatch(/^forge_job_attempts_count \d+/m);
  expect(Number(/^forge_job_attempts_count (\d+)/m.exec(after)![1])).toBeGreaterThanOrEqual(2);
  expect(Number(/^forge_job_attempts_bucket\{le="1"\} (\d+)/m.exec(after)![1])).toBeGreaterThanOrEqual(2);
  expect(sample(after, 'forge_job_metrics_refresh_errors_total', '')).toBe(0);
  // The abandoned job's failed attempt, by its failure class (from the job's final status).
  const failure = results[1]!.errors[0]!;
  expect(sample(after, 'forge_job_attempt_failures_total', `class="${failure.class}",backend="local"`)).toBeGreaterThanOrEqual(1);

  // A job counted once stays counted once, however many refreshes see it.
  await metrics.maybeRefresh();
  const again = await scrape();
  expect(sample(again, 'forge_jobs_finished_total', 'state="COMPLETED",backend="local"')).toBe(sample(after, 'forge_jobs_finished_total', 'state="COMPLETED",backend="local"'));
}, 60_000);
