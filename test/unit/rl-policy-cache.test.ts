/**
 * A rollout worker's policy versions (activities/rl/policy-cache.ts): weights are verified against the sha256 the
 * workflow carries before anything can load them (a wrong hash leaves nothing behind), downloaded once however many
 * ask; the inference server switches versions only when no request runs on the loaded one.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LoadedPolicy, PolicyCache, PolicyIntegrityError, WEIGHTS_FILE } from '../../activities/rl/policy-cache';

const good = Buffer.from('weights of version 3');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
let server: http.Server;
let base: string;
let requests = 0;
let announced: string | undefined;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    requests++;
    if (req.headers.authorization !== 'Bearer t0ken') {
      res.writeHead(401).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(announced ? { 'x-forge-sha256': announced } : {}) });
    setTimeout(() => res.end(good), 50);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('PolicyCache', () => {
  it('keeps weights whose bytes hash to the expected sha256, downloading them once for concurrent callers', async () => {
    const cache = new PolicyCache(mkdtempSync(path.join(os.tmpdir(), 'forge-cache-')));
    const policy = { version: 3, url: `${base}/v1/policy/3/model.safetensors`, sha256: sha(good) };
    requests = 0;
    const [a, b] = await Promise.all([cache.ensure(policy, 't0ken'), cache.ensure(policy, 't0ken', undefined, 'prefetch')]);
    expect(a).toBe(b);
    expect(requests).toBe(1);
    expect(readFileSync(path.join(a, WEIGHTS_FILE))).toEqual(good);
    expect(cache.origins.get(policy.sha256)).toBe('activity');
    await cache.ensure(policy, 't0ken');
    expect(requests).toBe(1); // on disk already
  });

  it('refuses weights that do not hash to the expected sha256, and keeps nothing of them', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-cache-'));
    const cache = new PolicyCache(dir);
    const wrong = { version: 3, url: `${base}/v1/policy/3/model.safetensors`, sha256: sha(Buffer.from('other weights')) };
    await expect(cache.ensure(wrong, 't0ken')).rejects.toThrow(PolicyIntegrityError);
    expect(cache.has(wrong.sha256)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
    // The trainer announcing another hash for that URL is refused before a byte is kept.
    announced = sha(Buffer.from('x'));
    await expect(cache.ensure({ ...wrong, sha256: sha(good) }, 't0ken')).rejects.toThrow(/serves sha256/);
    announced = undefined;
    await expect(cache.ensure({ ...wrong, sha256: 'not-a-hash' }, 't0ken')).rejects.toThrow(PolicyIntegrityError);
    await expect(cache.ensure({ ...wrong, sha256: sha(good) }, 'wrong-token')).rejects.toThrow(/HTTP 401/);
    expect(existsSync(path.join(dir, sha(good)))).toBe(false);
  });
});

describe('LoadedPolicy', () => {
  it('runs requests of the loaded version side by side and switches only when none runs', async () => {
    const loaded = new LoadedPolicy();
    const events: string[] = [];
    let running = 0;
    let current: string | null = null;
    const load = (v: string) => async (): Promise<void> => {
      expect(running).toBe(0); // never under a running request
      events.push(`load ${v}`);
      await new Promise((r) => setTimeout(r, 5));
      current = v;
    };
    const request = (v: string, ms: number) =>
      loaded.use(v, load(v), async () => {
        expect(current).toBe(v); // always on the version asked for
        running++;
        events.push(`run ${v}`);
        await new Promise((r) => setTimeout(r, ms));
        running--;
        return v;
      });
    const results = await Promise.all([request('a', 30), request('a', 30), request('b', 10), request('a', 10), request('b', 10)]);
    expect(results).toEqual(['a', 'a', 'b', 'a', 'b']);
    // At most one load per change of version in arrival order (a a b a b: 4).
    expect(events.filter((e) => e.startsWith('load')).length).toBeLessThanOrEqual(4);
    expect(events[0]).toBe('load a');
    expect(loaded.current).not.toBeNull();
  });

  it('a failed load leaves nothing loaded and lets the next caller try again', async () => {
    const loaded = new LoadedPolicy();
    await expect(loaded.use('a', () => Promise.reject(new Error('server down')), async () => 'never')).rejects.toThrow('server down');
    expect(loaded.current).toBeNull();
    await expect(loaded.use('a', async () => undefined, async () => 'ok')).resolves.toBe('ok');
    expect(loaded.current).toBe('a');
  });
});
