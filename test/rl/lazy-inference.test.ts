/**
 * The embedded stack's inference front (workers/lazy-inference.ts) against a stand-in for `forge-trainer serve` (a
 * small Node server with the same start-up event): nothing runs until the first request; requests are relayed with
 * their bearer token; after the idle time the server is stopped; the next request starts it again and it gets the
 * weights it last loaded before anything else.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LazyInference } from '../../workers/lazy-inference';
import { tempDir } from '../helpers/forge';

const dir = tempDir('forge-lazy-inference-');
const FAKE = path.join(dir, 'fake-serve.js');
writeFileSync(
  FAKE,
  `const http = require('http');
const seen = [];
const model = process.argv[process.argv.indexOf('--model') + 1];
http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    if (req.url === '/seen') return res.end(JSON.stringify(seen));
    seen.push({ url: req.url, auth: req.headers.authorization || null, body });
    if (req.url === '/update_weights_from_disk' && req.headers.authorization !== 'Bearer ' + process.env.FORGE_INFERENCE_ADMIN_TOKEN) {
      res.writeHead(401);
      return res.end(JSON.stringify({ error: { message: 'missing or wrong bearer token' } }));
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ success: true, model }));
  });
}).listen(0, '127.0.0.1', function () {
  console.log(JSON.stringify({ event: 'serving', url: 'http://127.0.0.1:' + this.address().port }));
});
`,
);

const TOKEN = 'a-test-admin-token-of-some-length';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('starts the server at the first request, stops it when idle, and restores its weights when started again', async () => {
  let idleStops = 0;
  let modelsMade = 0;
  const lazy = new LazyInference({
    command: [process.execPath, FAKE, 'serve'],
    model: () => {
      modelsMade++;
      return Promise.resolve(path.join(dir, 'model'));
    },
    adminToken: TOKEN,
    idleMs: 1500,
    logFile: path.join(dir, 'serve.log'),
    onIdleStop: () => idleStops++,
  });
  const url = await lazy.listen();
  try {
    expect(lazy.starts).toBe(0);
    expect(await lazy.pid()).toBeUndefined();

    const post = (p: string, body: object, token = TOKEN): Promise<Response> =>
      fetch(`${url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
    // Two requests at once: one server.
    const [load, refused] = await Promise.all([post('/update_weights_from_disk', { model_path: '/cache/v3', weight_version: '3:abc' }), post('/update_weights_from_disk', { model_path: '/x' }, 'wrong')]);
    expect(load.status).toBe(200);
    expect(refused.status).toBe(401); // the server's answer, relayed as it is
    expect(lazy.starts).toBe(1);
    const first = (await lazy.pid())!;
    expect(alive(first)).toBe(true);
    expect(await (await post('/v1/completions', { prompt: 'p', n: 2 })).json()).toEqual({ success: true, model: path.join(dir, 'model') });

    // Idle: stopped.
    const deadline = Date.now() + 10_000;
    while (idleStops === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(idleStops).toBe(1);
    expect(await lazy.pid()).toBeUndefined();
    expect(alive(first)).toBe(false);

    // The next request starts it again, the last accepted weights loaded first.
    expect((await post('/v1/completions', { prompt: 'q', n: 1 })).status).toBe(200);
    expect(lazy.starts).toBe(2);
    const seen = (await (await fetch(`${url}/seen`)).json()) as { url: string; auth: string | null; body: string }[];
    expect(seen.map((s) => s.url)).toEqual(['/update_weights_from_disk', '/v1/completions']);
    expect(JSON.parse(seen[0]!.body)).toEqual({ model_path: '/cache/v3', weight_version: '3:abc' });
    expect(seen[0]!.auth).toBe(`Bearer ${TOKEN}`);
    expect(modelsMade).toBe(2);
  } finally {
    await lazy.close();
  }
  expect(existsSync(path.join(dir, 'serve.log'))).toBe(true);
});

test('a server that cannot start answers 503 (retryable for the rollout), and the next request tries again', async () => {
  const lazy = new LazyInference({
    command: [path.join(dir, 'no-such-trainer'), 'serve'],
    model: () => Promise.resolve(dir),
    adminToken: TOKEN,
    idleMs: 60_000,
    logFile: path.join(dir, 'missing.log'),
  });
  const url = await lazy.listen();
  try {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${url}/v1/completions`, { method: 'POST', body: '{}' });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/cannot run .*no-such-trainer.*npm run bootstrap/);
    }
    expect(lazy.starts).toBe(2);
  } finally {
    await lazy.close();
  }
});
