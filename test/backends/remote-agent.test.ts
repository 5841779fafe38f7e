/**
 * The forge agent hardened: it serves regular files under its token folder and nothing else (no fifo, no symlink
 * out, no listing); a download larger than the size done.json announced is refused; a retry keeps whole files;
 * the agent token appears in no error message, and the trainer never sees it.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { AgentClient, agentLogLines, collectFromAgent, type AgentDone } from '../../activities/backends/remote/remote-agent';
import { agentCommand } from '../../activities/backends/remote/remote-agent-script';
import { httpRequest } from '../../activities/backends/remote/remote-http';
import type { DeploymentRef } from '../../activities/backends/types';
import { FakeContainer } from '../fakes/container';
import { pollUntil } from '../helpers/forge';
import { freePort } from '../helpers/ports';

const TOKEN = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';

function tmp(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

const ref: DeploymentRef = { backend: 'pi', kind: 'prime-intellect', id: 'pod1', jobId: 'job-1', attempt: 1, submittedAt: new Date().toISOString(), data: {} };

test('the agent serves regular files under its token only: a fifo, a symlink out, a listing, its own fifos and a wrong token are 404 at once', async () => {
  const secret = path.join(tmp('agent-secret-'), 'host-secret');
  writeFileSync(secret, 'host file\n');
  const trainer = [
    'sh',
    '-c',
    `echo "token=\${FORGE_AGENT_TOKEN:-unset}"; o="$FORGE_OUTPUT_DIR"; printf weights > "$o/model.safetensors"; mkfifo "$o/pipe"; ln -s '${secret}' "$o/leak"; mkdir "$o/sub"; echo x > "$o/sub/a.txt"`,
  ];
  const { command, args } = agentCommand(trainer);
  const c = await FakeContainer.start([...command, ...args], { FORGE_AGENT_TOKEN: TOKEN, FORGE_SPEC_B64: Buffer.from('{}').toString('base64') }, { programs: {} });
  try {
    const base = `http://127.0.0.1:${c.port}`;
    const agent = new AgentClient(base, TOKEN, 3000);
    const s = await pollUntil(async () => {
      const st = await agent.state();
      return st.phase === 'done' ? st : undefined;
    }, 'the agent reports done', 20_000);
    // done.json lists the regular files only (hashing a fifo would have hung the agent).
    expect(s.done.exit_code).toBe(0);
    expect(s.done.files.map((f) => f.path)).toEqual(['model.safetensors', 'sub/a.txt']);
    const get = (p: string) => httpRequest({ method: 'GET', url: `${base}/${p}`, timeoutMs: 3000 });
    expect((await get(`${TOKEN}/output/model.safetensors`)).text).toBe('weights');
    for (const p of [`${TOKEN}/output/pipe`, `${TOKEN}/output/leak`, `${TOKEN}/output/`, `${TOKEN}/`, 'out.fifo', 'err.fifo', '', `${'0'.repeat(40)}/done.json`, `${TOKEN}/../out.fifo`]) {
      // A served fifo would hang the request past its timeout (an error, not a 404).
      expect([p, (await get(p)).status]).toEqual([p, 404]);
    }
    // The trainer never sees the token (it could print it into the container log), and a log line that has it anyway
    // is redacted before it leaves the backend.
    expect(c.lines).toContain('token=unset');
    expect(c.lines.join('\n')).not.toContain(TOKEN);
    expect(await agentLogLines([`leaked ${TOKEN} here`], () => TOKEN)).toEqual([{ stream: 'stdout', line: 'leaked [redacted] here' }]);
  } finally {
    c.kill();
  }
});

/** A stand-in agent whose done.json announces `announced` and whose output serves `served`. */
async function lyingAgent(announced: string, served: string, contentLength: boolean): Promise<{ url: string; close(): void }> {
  const done: AgentDone = {
    exit_code: 0,
    finished_at: new Date().toISOString(),
    files: [{ path: 'model.safetensors', size: Buffer.byteLength(announced), sha256: createHash('sha256').update(announced).digest('hex') }],
    stderr_tail: [],
  };
  const server = http.createServer((req, res) => {
    if (req.url === `/${TOKEN}/done.json`) {
      res.end(JSON.stringify(done));
    } else if (req.url === `/${TOKEN}/output/model.safetensors`) {
      if (contentLength) res.setHeader('content-length', Buffer.byteLength(served));
      res.end(served);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, close: () => server.close() };
}

test('an output larger than done.json announced is refused (by Content-Length, or counted), nothing kept, no token in the error', async () => {
  for (const contentLength of [true, false]) {
    const agent = await lyingAgent('small', 'small but then a great deal more', contentLength);
    try {
      const dir = tmp('agent-dl-');
      const err = (await collectFromAgent(async () => new AgentClient(agent.url, TOKEN, 3000), { home: tmp('home-'), ref, dir }).catch((e: unknown) => e)) as Error;
      expect(err).toMatchObject({ name: 'BackendError', failureClass: 'REJECTED' });
      expect(err.message).toMatch(/output\/model\.safetensors is larger than the 5 bytes its done\.json announced; refused/);
      expect(`${err.message}\n${err.stack}`).not.toContain(TOKEN);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      agent.close();
    }
  }
});

test('a retried download keeps a whole file instead of fetching it again; an unreachable agent says so without its token', async () => {
  const agent = await lyingAgent('weights', 'weights', true);
  const dir = tmp('agent-dl-');
  const client = () => Promise.resolve(new AgentClient(agent.url, TOKEN, 3000));
  const progress: number[] = [];
  expect(await collectFromAgent(client, { home: tmp('home-'), ref, dir, onProgress: (p) => progress.push(p.bytes) })).toEqual(['model.safetensors']);
  expect(readFileSync(path.join(dir, 'model.safetensors'), 'utf8')).toBe('weights');
  expect(progress.at(-1)).toBe(7);
  agent.close();
  // The agent is gone now: a whole file already here is kept, but done.json cannot be read.
  const port = await freePort();
  const gone = new AgentClient(`http://127.0.0.1:${port}`, TOKEN, 1000);
  const state = await gone.state();
  expect(state).toMatchObject({ phase: 'unreachable' });
  expect(JSON.stringify(state)).not.toContain(TOKEN);
  const err = (await collectFromAgent(() => Promise.resolve(gone), { home: tmp('home-'), ref, dir }).catch((e: unknown) => e)) as Error;
  expect(err.message).toMatch(/forge agent is unreachable/);
  expect(`${err.message}\n${err.stack}`).not.toContain(TOKEN);
  const down = (await gone.download({ exit_code: 0, finished_at: '', stderr_tail: [], files: [{ path: 'other.bin', size: 1, sha256: '0'.repeat(64) }] }, dir).catch((e: unknown) => e)) as Error;
  expect(down.message).toMatch(/ECONNREFUSED|connect/);
  expect(`${down.message}\n${down.stack}`).not.toContain(TOKEN);
  // The whole file is not fetched again (the agent is gone, yet it is accepted).
  expect(await gone.download({ exit_code: 0, finished_at: '', stderr_tail: [], files: [{ path: 'model.safetensors', size: 7, sha256: createHash('sha256').update('weights').digest('hex') }] }, dir)).toEqual(['model.safetensors']);
});
