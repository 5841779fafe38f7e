/**
 * Tracing (common/tracing.ts): one finetune submitted over HTTP is one trace, from the API's POST /jobs span through
 * the workflow start, the workflow run and its activities to the trainer, which gets TRACEPARENT in its environment.
 * The spans go over real OTLP/HTTP (JSON) to a receiver in this process.
 */
import { readFileSync } from 'node:fs';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { initTracing, type Tracing } from '../../common/tracing';
import { jobWorkflowId } from '../../common/names';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, tempDir, testConfig } from '../helpers/forge';
import { http as request, startApi, type ApiHarness } from './harness';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}
interface OtlpExport {
  resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[];
}

const TQ = 'test-api-tracing';
const home = tempDir('forge-api-tracing-');
const traceparentFile = `${home}/traceparent`;
// The fake trainer, after writing the TRACEPARENT it was given to a file ($0 of sh -c); it runs 2 s, so that the
// follow activity (not the submit) observes its exit.
const [sh = '/bin/sh', script = '', ...args] = fakeTrainer('ok', 2);
const config = testConfig({ local: { trainers: { ok: [sh, '-c', 'echo "$TRACEPARENT" > "$0"; exec /bin/sh "$@"', traceparentFile, script, ...args] } } });

/** Ids as hex whichever way the exporter's JSON encodes them (hex, or base64 of the bytes). */
const hex = (id: string | undefined): string => (!id ? '' : /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, 'base64').toString('hex'));

const spans: OtlpSpan[] = [];
let receiver: Server;
let tracing: Tracing | undefined;
let api: ApiHarness;

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpExport;
        for (const rs of body.resourceSpans ?? [])
          for (const ss of rs.scopeSpans ?? [])
            for (const s of ss.spans ?? []) spans.push({ ...s, traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId) });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  tracing = initTracing('forge-test', { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint });
  // A traced worker bundles its workflows (with the OTel interceptors) at start: slower than the pre-built bundle.
  api = await startApi({ taskQueue: TQ, config, home });
}, 180_000);

afterAll(async () => {
  await api?.stop();
  await tracing?.shutdown();
  await new Promise((resolve) => receiver?.close(resolve));
});

test('POST /jobs → StartWorkflow → RunWorkflow → activities → the trainer’s TRACEPARENT: one trace', async () => {
  expect(tracing).toBeDefined();
  const spec = makeSignedSpec({ trainer: { image: 'ok' } });
  expect((await request(api.url, 'POST', '/jobs', spec)).status).toBe(201);
  await api.client.workflow.getHandle(jobWorkflowId(spec.job_id)).result();

  const post = async (): Promise<OtlpSpan | undefined> => spans.find((s) => s.name === 'POST /jobs');
  const names = (traceId: string): string[] => spans.filter((s) => s.traceId === traceId).map((s) => s.name);
  const want = ['POST /jobs', 'StartWorkflow:trainingJob', 'RunWorkflow:trainingJob', 'RunActivity:acceptAndSubmit', 'RunActivity:followDeployment'];
  // Workflow spans reach the exporter through a sink after each activation: flush until all are in.
  const deadline = Date.now() + 20_000;
  for (;;) {
    await tracing!.forceFlush();
    const root = await post();
    if (root && want.every((n) => names(root.traceId).includes(n))) break;
    if (Date.now() > deadline) throw new Error(`spans never complete; got ${JSON.stringify(spans.map((s) => [s.name, s.traceId]))}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const root = (await post())!;
  const trace = spans.filter((s) => s.traceId === root.traceId);
  expect(trace.map((s) => s.name)).toEqual(expect.arrayContaining(want));
  // Every span of the trace hangs from another of it, up to the POST /jobs root.
  const ids = new Set(trace.map((s) => s.spanId));
  for (const s of trace) if (s !== root) expect(ids.has(s.parentSpanId ?? '')).toBe(true);

  // The trainer got the submit activity's span as its W3C parent.
  const traceparent = readFileSync(traceparentFile, 'utf8').trim();
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(traceparent);
  expect(m).not.toBeNull();
  expect(m![1]).toBe(root.traceId);
  expect(trace.find((s) => s.spanId === m![2])?.name).toBe('RunActivity:acceptAndSubmit');
}, 60_000);
