/**
 * `npm start` as a user runs it (dev server with a file database + worker), killed with SIGKILL while trainers
 * run, then started again on the same FORGE_HOME: every job completes, and a trainer that finished while nothing
 * was watching is recognized with its real exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { JobStatus } from '../../workflows/messages';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, readStarts, startJob, tempDir, testConfig, waitForStatus } from '../helpers/forge';
import { freePort } from '../helpers/ports';

const ROOT = path.resolve(__dirname, '..', '..');
const home = tempDir('forge-stack-');
const starts = path.join(home, 'starts.log');
const configFile = path.join(home, 'config.json');
writeFileSync(
  configFile,
  JSON.stringify(
    testConfig({ local: { trainers: { ok: fakeTrainer('ok', 8), quick: fakeTrainer('ok', 2), 'exit-3': fakeTrainer('exit', 2, 3) } } }, starts),
  ),
);

let stack: ChildProcess | undefined;
let output = '';

async function startStack(port: number, uiPort: number, apiPort: number): Promise<ChildProcess> {
  output = '';
  const p = spawn('npm', ['start', '--silent'], {
    cwd: ROOT,
    detached: true, // its own process group: the test kills the whole stack at once, as a crash would
    stdio: ['ignore', 'pipe', 'pipe'],
    // FORGE_EMBEDDED cleared: npm start itself says it is the embedded stack (its orchestrator key is made at start).
    env: { ...process.env, FORGE_EMBEDDED: '', FORGE_HOME: home, FORGE_CONFIG: configFile, FORGE_TEMPORAL_PORT: String(port), FORGE_UI_PORT: String(uiPort), FORGE_API_PORT: String(apiPort), TEMPORAL_ADDRESS: '' },
  });
  p.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 90_000;
  while (!output.includes('ready')) {
    if (p.exitCode !== null) throw new Error(`npm start exited ${p.exitCode}:\n${output}`);
    if (Date.now() > deadline) throw new Error(`npm start not ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return p;
}

function killGroup(p: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-p.pid!, signal);
  } catch {
    // already gone
  }
}

afterAll(() => {
  if (stack) killGroup(stack, 'SIGKILL');
});

test('SIGKILL of the whole stack while trainers run, then npm start again: every job ends right', async () => {
  const port = await freePort();
  const uiPort = await freePort();
  const apiPort = await freePort();
  stack = await startStack(port, uiPort, apiPort);
  expect(output).toContain(`127.0.0.1:${port}`);
  expect(output).toContain(`http://127.0.0.1:${uiPort}`);
  const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
  expect(ui.status).toBe(200);
  // The HTTP API is part of the stack: its URL is in the banner and it reaches Temporal.
  expect(output).toContain(`API:        http://127.0.0.1:${apiPort}`);
  expect((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).status).toBe(200);
  expect(existsSync(path.join(home, 'keys', 'orchestrator.json'))).toBe(true);
  // The reaper's schedule is made by npm start (and found as it is on the restart below).
  expect(output).toContain('[forge] reaper schedule forge-reaper created: every 300 s on forge-orchestrator');

  let connection = await Connection.connect({ address: `127.0.0.1:${port}` });
  let client = new Client({ connection });
  const specs = [
    makeSignedSpec({ trainer: { image: 'ok' } }),
    makeSignedSpec({ trainer: { image: 'quick' } }),
    makeSignedSpec({ trainer: { image: 'exit-3' } }),
  ];
  const handles = await Promise.all(specs.map((s) => startJob(client, 'forge-orchestrator', s)));
  await Promise.all(handles.map((h) => waitForStatus(h, (s) => s.state === 'RUNNING')));
  await connection.close();

  killGroup(stack, 'SIGKILL');
  // 'quick' and 'exit-3' finish while nothing watches; 'ok' is still running when the stack comes back.
  await new Promise((r) => setTimeout(r, 3500));
  stack = await startStack(port, uiPort, apiPort);
  expect(output).toContain('[forge] reaper schedule forge-reaper unchanged: every 300 s on forge-orchestrator');

  connection = await Connection.connect({ address: `127.0.0.1:${port}` });
  client = new Client({ connection });
  const results = (await Promise.all(specs.map((s) => client.workflow.getHandle(`job-${s.job_id}`).result()))) as JobStatus[];
  expect(results.map((r) => r.state)).toEqual(['COMPLETED', 'COMPLETED', 'ABANDONED']);
  expect(results[2]?.last_error?.class).toBe('EXIT_CODE');
  expect(results[2]?.deployments[0]?.exit_code).toBe(3);
  const lines = readStarts(starts);
  for (const s of specs) expect(lines.filter((l) => l.job === s.job_id)).toHaveLength(1);
  await connection.close();
  // The restarted API answers for jobs started before the crash.
  const viaApi = await Promise.all(specs.map(async (s) => ((await (await fetch(`http://127.0.0.1:${apiPort}/jobs/${s.job_id}`)).json()) as JobStatus).state));
  expect(viaApi).toEqual(['COMPLETED', 'COMPLETED', 'ABANDONED']);

  // Ctrl-C stops everything cleanly: the worker first, then the dev server, and the port is free again.
  const exitedStack = new Promise<void>((resolve) => stack!.once('exit', () => resolve()));
  killGroup(stack, 'SIGINT');
  await exitedStack;
  stack = undefined;
  expect(output).toContain('[forge] stopped');
  await expect(Connection.connect({ address: `127.0.0.1:${port}`, connectTimeout: 1000 })).rejects.toThrow();
  await expect(fetch(`http://127.0.0.1:${apiPort}/healthz`)).rejects.toThrow();
}, 240_000);

test('npm start refuses a bad FORGE_CONFIG before starting anything, naming the key', async () => {
  const bad = path.join(home, 'bad-config.json');
  writeFileSync(bad, JSON.stringify({ backends: { local: { kind: 'local', hourly_usd: -3 } } }));
  const port = await freePort();
  const p = spawn(process.execPath, [path.join(ROOT, 'dist', 'infra', 'start-stack.js')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORGE_HOME: home, FORGE_CONFIG: bad, FORGE_TEMPORAL_PORT: String(port) },
  });
  let err = '';
  p.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => p.once('exit', (c) => resolve(c)));
  expect(code).toBe(1);
  expect(err).toMatch(/backends\.local\.hourly_usd/);
  await expect(Connection.connect({ address: `127.0.0.1:${port}`, connectTimeout: 500 })).rejects.toThrow();
});
