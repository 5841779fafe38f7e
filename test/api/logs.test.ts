/**
 * GET /jobs/:id/logs: server-sent events from the local backend's logs(), live while the job runs, ending when it
 * is terminal; tail, Last-Event-ID resume, a read that fails while following is tried again, and a client that
 * disconnects frees the stream at once.
 */
import { createBackends } from '../../activities/backends/registry';
import type { Backend, DeploymentRef, LogChunk } from '../../activities/backends/types';
import { makeSignedSpec } from '../jobspec/fixtures';
import { startWorker, tempDir, testConfig } from '../helpers/forge';
import { http, problemOf, readSse, startApi, waitForJob, type ApiHarness, type SseEvent } from './harness';

const TQ = 'test-api-logs';
const home = tempDir('forge-api-logs-');
/** A chatty trainer: numbered lines on stdout, one on stderr, progress events, then a pause before it exits. */
const chatty = (lines: number, pauseSeconds: number): string[] => [
  '/bin/sh',
  '-c',
  `echo '{"event":"progress","step":1,"max_steps":2,"loss":0.9}'; i=1; while [ $i -le ${lines} ]; do echo "line $i"; i=$((i+1)); done; ` +
    `echo 'warning: on stderr' >&2; sleep ${pauseSeconds}; echo 'last line'; echo '{"event":"progress","step":2,"max_steps":2,"loss":0.4}'`,
];
const config = testConfig({ local: { trainers: { chatty: chatty(5, 2), pause: chatty(5, 4), long: chatty(3, 60), short: chatty(1500, 0) } } });

let api: ApiHarness;
beforeAll(async () => {
  api = await startApi({ taskQueue: TQ, config, home, logPollMs: 200 });
});
afterAll(async () => {
  await api?.stop();
});

async function submit(image: string, base = api.url): Promise<string> {
  const spec = makeSignedSpec({ trainer: { image } });
  expect((await http(base, 'POST', '/jobs', spec)).status).toBe(201);
  return spec.job_id;
}

const lines = (events: SseEvent[]): string[] => events.filter((e) => e.event === 'log').map((e) => (e.data as { line: string }).line);
const metricValue = async (name: string): Promise<number> => {
  const text = (await http(api.url, 'GET', '/metrics')).text;
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
};

test('follow=true streams a running job live, with its transitions, and ends when it is terminal', async () => {
  const id = await submit('chatty');
  await waitForJob(api.url, id, (s) => s.state === 'RUNNING');
  const seenWhileRunning: string[] = [];
  const { status, contentType, events } = await readSse(`${api.url}/jobs/${id}/logs?follow=true`, {
    until: (e, all) => {
      if (e.event === 'log' && (e.data as { line: string }).line === 'line 5') seenWhileRunning.push(...lines(all));
      return false;
    },
  });
  expect(status).toBe(200);
  expect(contentType).toMatch(/^text\/event-stream/);
  // The first lines arrived before the trainer printed its last one: the stream is live.
  expect(seenWhileRunning).toContain('line 1');
  expect(seenWhileRunning).not.toContain('last line');
  const got = lines(events);
  expect(got).toEqual(expect.arrayContaining(['line 1', 'line 5', 'warning: on stderr', 'last line']));
  expect(events.find((e) => (e.data as { line?: string }).line === 'warning: on stderr')?.data).toMatchObject({ stream: 'stderr', attempt: 1, backend: 'local' });
  expect(events.filter((e) => e.event === 'state').map((e) => (e.data as { state: string }).state)).toContain('COMPLETED');
  expect(events.at(-1)).toMatchObject({ event: 'end', data: { state: 'COMPLETED' } });
});

test('without follow: what is there now, then end; tail=N gives the last N lines', async () => {
  const id = await submit('short');
  await waitForJob(api.url, id, (s) => s.state === 'COMPLETED');
  const all = await readSse(`${api.url}/jobs/${id}/logs`);
  const got = lines(all.events);
  expect(got.filter((l) => l.startsWith('line '))).toHaveLength(1500); // more than one backend page (1000 lines)
  expect(all.events.at(-1)).toMatchObject({ event: 'end', data: { state: 'COMPLETED' } });
  const tail = await readSse(`${api.url}/jobs/${id}/logs?tail=3`);
  expect(lines(tail.events)).toEqual(got.slice(-3));
  expect(lines((await readSse(`${api.url}/jobs/${id}/logs?tail=0`)).events)).toEqual([]);
});

test('Last-Event-ID resumes after the last event received, without repeating or skipping', async () => {
  const id = await submit('short');
  await waitForJob(api.url, id, (s) => s.state === 'COMPLETED');
  const full = lines((await readSse(`${api.url}/jobs/${id}/logs`)).events);
  const first = await readSse(`${api.url}/jobs/${id}/logs`, { until: (e) => e.event === 'log' && e.id !== undefined });
  const lastId = first.events.at(-1)!.id!;
  const rest = await readSse(`${api.url}/jobs/${id}/logs`, { headers: { 'last-event-id': lastId } });
  expect([...lines(first.events), ...lines(rest.events)]).toEqual(full);
});

test('a client that disconnects frees the stream (open streams back to 0) and the server goes on', async () => {
  const id = await submit('long');
  await waitForJob(api.url, id, (s) => s.state === 'RUNNING');
  const before = await metricValue('forge_api_log_streams_open');
  const controller = new AbortController();
  const reading = readSse(`${api.url}/jobs/${id}/logs?follow=true`, { signal: controller.signal });
  const deadline = Date.now() + 5000;
  while ((await metricValue('forge_api_log_streams_open')) < before + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(await metricValue('forge_api_log_streams_open')).toBe(before + 1);
  controller.abort();
  await reading;
  const freed = Date.now() + 5000;
  while ((await metricValue('forge_api_log_streams_open')) !== before && Date.now() < freed) await new Promise((r) => setTimeout(r, 50));
  expect(await metricValue('forge_api_log_streams_open')).toBe(before);
  expect((await http(api.url, 'GET', '/healthz')).status).toBe(200);
  await api.client.workflow.getHandle(`job-${id}`).cancel();
});

test('an unknown job → 404 problem, a bad query → 400 naming it, before any stream starts', async () => {
  const unknown = await http(api.url, 'GET', '/jobs/00000000-0000-4000-8000-00000000f00d/logs?follow=true');
  expect(unknown.status).toBe(404);
  problemOf(unknown);
  const bad = await http(api.url, 'GET', '/jobs/00000000-0000-4000-8000-00000000f00d/logs?tail=-1&follow=maybe');
  expect(bad.status).toBe(400);
  expect(problemOf(bad).errors?.map((e) => e.path).sort()).toEqual(['follow', 'tail']);
});

test('a follow survives the orchestrator worker going away and coming back', async () => {
  const queue = `${TQ}-restart`;
  const own = await startApi({ taskQueue: queue, config, home, worker: false, queryTimeoutMs: 500, logPollMs: 200 });
  let worker = await startWorker(config, home, queue);
  try {
    const id = await submit('pause', own.url);
    await waitForJob(own.url, id, (s) => s.state === 'RUNNING');
    const reading = readSse(`${own.url}/jobs/${id}/logs?follow=true`);
    await new Promise((r) => setTimeout(r, 300));
    await worker.stop(); // the trainer runs on (its own process group); status queries now time out
    await new Promise((r) => setTimeout(r, 1500));
    worker = await startWorker(config, home, queue);
    const { events } = await reading;
    expect(lines(events)).toEqual(expect.arrayContaining(['line 1', 'last line']));
    expect(events.at(-1)).toMatchObject({ event: 'end', data: { state: 'COMPLETED' } });
  } finally {
    await worker.stop();
    await own.stop();
  }
});

/** The local backend as an API reads it, but whose log reads fail when `fails(call)` says so (call counts from 1). */
function flakyLogs(fails: (call: number) => boolean): ReadonlyMap<string, Backend> {
  const real = createBackends(config, home).get('local')!;
  let calls = 0;
  const logs = async (ref: DeploymentRef, cursor?: string): Promise<LogChunk> => {
    if (fails(++calls)) throw new Error(`backend local: no answer within 500 ms (read ${calls})`);
    return real.logs(ref, cursor);
  };
  return new Map([['local', new Proxy(real, { get: (target, key, receiver) => (key === 'logs' ? logs : Reflect.get(target, key, receiver)) })]]);
}

const errors = (events: SseEvent[]): { detail: string; retrying: boolean }[] =>
  events.filter((e) => e.event === 'error').map((e) => e.data as { detail: string; retrying: boolean });

test('while following, a read that fails is tried again: the lines after it still arrive, and the error said so once', async () => {
  // The API's read of the log fails three times in a row after its first page (an orchestrator worker restarting).
  const own = await startApi({ taskQueue: TQ, config, home, worker: false, logPollMs: 200, backends: flakyLogs((call) => call >= 2 && call <= 4) });
  try {
    const id = await submit('pause', own.url);
    await waitForJob(own.url, id, (s) => s.state === 'RUNNING');
    const { events } = await readSse(`${own.url}/jobs/${id}/logs?follow=true`);
    const got = lines(events);
    expect(got).toEqual(expect.arrayContaining(['line 1', 'line 5', 'warning: on stderr', 'last line']));
    expect(new Set(got).size).toBe(got.length); // nothing sent twice
    expect(errors(events)).toEqual([{ attempt: 1, backend: 'local', detail: expect.stringContaining('no answer within 500 ms'), retrying: true }]);
    expect(events.at(-1)).toMatchObject({ event: 'end', data: { state: 'COMPLETED' } });
  } finally {
    await own.stop();
  }
});

test('while following, a log that stays unreadable ends with a final error that says it gave up, then end', async () => {
  const own = await startApi({ taskQueue: TQ, config, home, worker: false, logPollMs: 100, backends: flakyLogs((call) => call >= 2) });
  try {
    const id = await submit('chatty', own.url);
    await waitForJob(own.url, id, (s) => s.state === 'RUNNING');
    const { events } = await readSse(`${own.url}/jobs/${id}/logs?follow=true`);
    expect(lines(events)).not.toContain('last line');
    const said = errors(events);
    expect(said[0]).toMatchObject({ retrying: true });
    expect(said.at(-1)).toMatchObject({ retrying: false, detail: expect.stringMatching(/no answer within 500 ms .*\(gave up after \d+ tries\)$/) });
    expect(said).toHaveLength(2);
    expect(events.at(-1)).toMatchObject({ event: 'end', data: { state: 'COMPLETED' } });
  } finally {
    await own.stop();
  }
});
