/**
 * The job page of the Temporal Web UI, rendered by headless Chromium: a second dev server WITH its Web UI (the run's
 * global server is headless), a job submitted through the API and run to completion, then the workflow's page loaded
 * until its scripts ran (--dump-dom) and checked for the job's summary and details (the User Metadata tab) and the
 * activity summaries (the timeline); its screenshot goes to docs/webui-job.png with FORGE_TEST_UPDATE_SCREENSHOT=1.
 * Skipped, saying so, where no Chromium is installed (apt-get install chromium-headless-shell).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDevServer, type DevServer } from '../../infra/dev-server';
import { jobWorkflowId } from '../../common/names';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, tempDir, testConfig } from '../helpers/forge';
import { freePort } from '../helpers/ports';
import { http, startApi, waitForJob, type ApiHarness } from './harness';

const run = promisify(execFile);
const CHROMIUM = ['/usr/bin/chromium-headless-shell', '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const TQ = 'test-api-webui-page';
const home = tempDir('forge-api-webui-page-');
const maybe = CHROMIUM ? test : test.skip;
if (!CHROMIUM) console.warn('webui-page: no Chromium (apt-get install chromium-headless-shell): the Web UI page test is skipped');

let server: DevServer | undefined;
let api: ApiHarness | undefined;
const globalAddress = process.env.FORGE_TEST_TEMPORAL_ADDRESS;

beforeAll(async () => {
  if (!CHROMIUM) return;
  // A free port can be taken by another test file between the look and the bind (the dev server then exits 2): try
  // again with new ports.
  for (let tries = 1; !server; tries++) {
    const [port, uiPort] = [await freePort(), await freePort()];
    try {
      server = await startDevServer({ port, uiPort, logFile: path.join(home, `temporal-${tries}.log`), readyTimeoutMs: 60_000 });
    } catch (err) {
      if (tries >= 3) throw err;
    }
  }
  // The harness's worker and client connect to FORGE_TEST_TEMPORAL_ADDRESS: this server's, for this file.
  process.env.FORGE_TEST_TEMPORAL_ADDRESS = server.address;
  // The trainer runs 2 s, so a follow activity sees it end (one that ended before the submit looked has none).
  api = await startApi({ taskQueue: TQ, config: testConfig({ local: { trainers: { ok: fakeTrainer('ok', 2) } } }), home });
}, 90_000);
afterAll(async () => {
  await api?.stop();
  await server?.stop();
  if (globalAddress) process.env.FORGE_TEST_TEMPORAL_ADDRESS = globalAddress;
  await fs.rm(home, { recursive: true, force: true });
});

async function chromium(...args: string[]): Promise<string> {
  const { stdout } = await run(
    CHROMIUM!,
    ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1400,1800', '--virtual-time-budget=15000', ...args],
    { timeout: 90_000, maxBuffer: 64 * 1024 * 1024 },
  );
  return stdout;
}

/** The Web UI's Markdown iframes (`<iframe id=… src="/render?content=…">`) by id: the Markdown each renders. */
function renderedFrames(dom: string): Record<string, string> {
  const frames: Record<string, string> = {};
  for (const [tag] of dom.matchAll(/<iframe\b[^>]*>/g)) {
    const id = /\bid="([^"]*)"/.exec(tag)?.[1];
    const src = /\bsrc="([^"]*)"/.exec(tag)?.[1];
    if (!id || !src) continue;
    const content = new URL(src.replace(/&amp;/g, '&'), 'http://ui.invalid').searchParams.get('content');
    if (content !== null) frames[id] = content;
  }
  return frames;
}

maybe(
  "the workflow's page in the Web UI shows the job's summary and its details",
  async () => {
    const spec = makeSignedSpec({ trainer: { image: 'ok' } });
    expect((await http(api!.url, 'POST', '/jobs', spec)).status).toBe(201);
    await waitForJob<{ state: string }>(api!.url, spec.job_id, (s) => s.state === 'COMPLETED');
    const id = jobWorkflowId(spec.job_id);
    const { runId } = await api!.client.workflow.getHandle(id).describe();
    const run = `${server!.uiUrl}/namespaces/default/workflows/${id}/${runId}`;

    // The timeline names each activity call by its summary.
    const timeline = await chromium('--dump-dom', `${run}/timeline`);
    expect(timeline).toMatch(/followDeployment • follow attempt 1 on local/);
    // The User Metadata tab: each Markdown field is an iframe whose src carries the content to render.
    const page = `${run}/user-metadata`;
    const frames = renderedFrames(await chromium('--dump-dom', page));
    expect(frames['user-metadata-summary']).toBe(`finetune · ${spec.base_model.name} · ${spec.owner_did.slice(0, 16)}…${spec.owner_did.slice(-5)}`);
    expect(frames['user-metadata-details']).toContain(`| job | ${spec.job_id} |`);
    const current = frames['user-metadata-current-details'] ?? '';
    expect(current).toContain('| state | COMPLETED |');
    expect(current).toContain('| attempt | 1 on local |');
    // No dollar signs: the UI's renderer reads two in a line as inline math (the cost showed as "\(0.0000 of \)1.00").
    expect(current).not.toContain('$');
    expect(current).toContain(`logs \`GET /jobs/${spec.job_id}/logs\``);

    // FORGE_TEST_UPDATE_SCREENSHOT=1 refreshes the README's picture; otherwise it goes to the test's temp dir.
    const shot = process.env.FORGE_TEST_UPDATE_SCREENSHOT === '1' ? path.join(__dirname, '..', '..', 'docs', 'webui-job.png') : path.join(home, 'webui-job.png');
    mkdirSync(path.dirname(shot), { recursive: true });
    await chromium(`--screenshot=${shot}`, page);
    expect((await fs.stat(shot)).size).toBeGreaterThan(10_000);
  },
  240_000,
);
