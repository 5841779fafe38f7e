/**
 * Property-based fuzzing (issue 8) with fast-check, against the spec parser and the HTTP API (a real server on
 * 127.0.0.1, over HTTP with keep-alive, on the run's Temporal dev server with no worker on the task queue):
 *   - never a crash (the parser never throws; the server never answers 5xx),
 *   - every rejection names a field (an issue path for the parser; a problem+json `errors` list for the API).
 * Inputs: arbitrary JSON, valid specs with 1–4 random mutations (re-signed half of the time, so that mutations also
 * reach the checks behind the signature; values include control and bidi characters and numbers past every bound),
 * random query strings, job ids, cancel bodies and raw bytes. Every spec the parser accepts is within the bounds.
 * CI runs FORGE_FUZZ_RUNS (default 10 000) spec inputs through the parser and as many POST /jobs bodies through the
 * API; `FORGE_FUZZ_RUNS=100000 npx jest test/fuzz` is the long run (RELIABILITY.md). FORGE_FUZZ_SEED replays a run.
 */
import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import { MAX_FALLBACKS, MAX_HOURS_LIMIT, MAX_RETRIES_LIMIT } from '../../jobspec/constants';
import { findControlCharacters } from '../../jobspec/control-chars';
import { parseTrainingJobSpec } from '../../jobspec/parse';
import type { TrainingJobSpec } from '../../jobspec/schema';
import { generateKeyPair, signSpec, type KeyPair } from '../../jobspec/signing';
import { makeUnsignedSpec } from '../jobspec/fixtures';
import { tempDir, testConfig } from '../helpers/forge';
import { startApi, type ApiHarness } from '../api/harness';

const RUNS = Number(process.env.FORGE_FUZZ_RUNS ?? 10_000);
const SEED = process.env.FORGE_FUZZ_SEED ? Number(process.env.FORGE_FUZZ_SEED) : undefined;
const params = (numRuns: number): fc.Parameters<unknown> => ({ numRuns, ...(SEED !== undefined ? { seed: SEED } : {}), endOnFailure: true });

type JsonObj = Record<string, unknown>;
const KEYS: KeyPair[] = Array.from({ length: 8 }, () => generateKeyPair());

/** Every path (as key lists) of a JSON value, objects and arrays included. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...prefix, i])));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...prefix, k]));
  return out;
}
const SPEC_PATHS = paths(makeUnsignedSpec({}, KEYS[0])).filter((p) => p.length > 0);

/** C0 (NUL, tab, newline), DEL, C1 and the bidi overrides and isolates: no string of a spec may hold one. */
const CONTROLS = ['\u0000', '\u0001', '\t', '\n', '\r', '\u001b', '\u001f', '\u007f', '\u0080', '\u0085', '\u009f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'];
/** A short string with a control character somewhere in it (often inside an otherwise valid value). */
const withControl: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('', 'main', 'local', 'jobs/x', 'file-edit', 'https://git.example.com/x.git'), fc.constantFrom(...CONTROLS), fc.string({ maxLength: 6 }))
  .map(([a, c, b]) => a + c + b);
/** Numbers past every bound a workflow relies on (retries, hours, dates), and near them. */
const huge: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(101, 1e9, 1e10, 2 ** 31, 2 ** 53 - 1, 8761, 8.64e15, 253_402_300_800, 1e300, Number.MAX_VALUE),
  fc.double({ min: 1e6, max: 1e300, noNaN: true }),
  fc.integer({ min: 100, max: 2 ** 53 - 1 }),
);

/** Values that tend to break parsers: extremes, wrong types, odd strings, prototype keys. */
const nasty: fc.Arbitrary<unknown> = fc.oneof(
  withControl,
  huge,
  fc.constantFrom(null, true, false, 0, -1, -0, 1e308, -1e308, 2 ** 53 + 1, 0.1, '', ' ', '\u0000', '\ud800', '💥', '__proto__', 'constructor', '../../etc/passwd', 'a'.repeat(10_000), [], {}, [[[]]], { __proto__: { x: 1 } }),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.jsonValue({ maxDepth: 3 }),
);

type Mutation = { kind: 'set'; path: (string | number)[]; value: unknown } | { kind: 'delete'; path: (string | number)[] } | { kind: 'add'; path: (string | number)[]; key: string; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), path: fc.constantFrom(...SPEC_PATHS), value: nasty }),
  fc.record({ kind: fc.constant('delete' as const), path: fc.constantFrom(...SPEC_PATHS) }),
  fc.record({ kind: fc.constant('add' as const), path: fc.constantFrom([], ...SPEC_PATHS), key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'prototype')), value: nasty }),
);

function applyMutation(spec: JsonObj, m: Mutation): void {
  const parentPath = m.kind === 'add' ? m.path : m.path.slice(0, -1);
  let parent: unknown = spec;
  for (const k of parentPath) parent = parent && typeof parent === 'object' ? (parent as JsonObj)[k as string] : undefined;
  if (!parent || typeof parent !== 'object') return;
  const target = parent as JsonObj;
  if (m.kind === 'add') Object.defineProperty(target, m.key, { value: m.value, enumerable: true, configurable: true, writable: true });
  else if (m.kind === 'delete') delete target[String(m.path[m.path.length - 1])];
  else target[String(m.path[m.path.length - 1])] = m.value;
}

/** A valid spec, mutated, then signed (or not) by the owner it names (or not). */
const mutatedSpec: fc.Arbitrary<unknown> = fc
  .record({
    key: fc.constantFrom(...KEYS),
    mutations: fc.array(mutation, { minLength: 1, maxLength: 4 }),
    sign: fc.constantFrom('owner', 'none', 'stale'),
  })
  .map(({ key, mutations, sign }) => {
    const spec = structuredClone(makeUnsignedSpec({ job_id: randomUUID() }, key)) as JsonObj;
    for (const m of mutations) applyMutation(spec, m);
    if (sign === 'none') return spec;
    if (sign === 'stale') return { ...spec, signature_ed25519: 'A'.repeat(86) };
    try {
      return signSpec(spec as Parameters<typeof signSpec>[0], key.secretKey);
    } catch {
      return spec; // not canonicalizable (e.g. a lone surrogate): send it unsigned
    }
  });

const specInput: fc.Arbitrary<unknown> = fc.oneof({ weight: 4, arbitrary: mutatedSpec }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) });

/** What every accepted spec satisfies, so that no workflow trips over it (issue 13 point 4, issue 14 point 2). */
function withinBounds(spec: TrainingJobSpec): boolean {
  if (findControlCharacters(spec).length > 0) throw new Error(`accepted a control character: ${JSON.stringify(findControlCharacters(spec))}`);
  const { max_retries: retries, fallbacks = [] } = spec.backend;
  if (retries > MAX_RETRIES_LIMIT || fallbacks.length > MAX_FALLBACKS || spec.resources.max_hours > MAX_HOURS_LIMIT) {
    throw new Error(`accepted out of bounds: max_retries ${retries}, ${fallbacks.length} fallbacks, max_hours ${spec.resources.max_hours}`);
  }
  // The date computations of the workflow (a deadline max_hours from now) and of anyone showing created_at.
  new Date(Date.now() + spec.resources.max_hours * 3600_000).toISOString();
  new Date(spec.created_at * 1000).toISOString();
  return true;
}

describe('spec parser', () => {
  test(`${RUNS} generated inputs: never throws; every rejection names a field`, () => {
    let rejected = 0;
    fc.assert(
      fc.property(specInput, (input) => {
        const r = parseTrainingJobSpec(input);
        if (r.ok) return withinBounds(r.spec);
        rejected++;
        return r.issues.length > 0 && r.issues.every((i) => typeof i.path === 'string' && i.path.length > 0 && typeof i.message === 'string' && i.message.length > 0);
      }),
      params(RUNS),
    );
    expect(rejected).toBeGreaterThan(RUNS / 2);
  });
});

describe('HTTP API', () => {
  const TQ = 'test-fuzz-api';
  const home = tempDir('forge-fuzz-');
  let api: ApiHarness;
  const started: string[] = [];
  beforeAll(async () => {
    api = await startApi({ taskQueue: TQ, config: testConfig({ local: { trainers: { ok: ['/bin/true'] } } }), home, worker: false });
  });
  afterAll(async () => {
    // The few fully valid specs started workflows (no worker polls this queue): end them.
    await Promise.all(started.map((id) => api.client.workflow.getHandle(id).terminate('fuzz test done').catch(() => undefined)));
    await api?.stop();
  });

  interface Answer {
    status: number;
    type: string;
    body: JsonObj;
  }
  /** One request over HTTP (fastify.inject would need light-my-request's ESM-only cookie in Jest's CommonJS). */
  const call = async (method: string, path: string, payload?: string): Promise<Answer> => {
    const res = await fetch(`${api.url}${path}`, {
      method,
      ...(payload !== undefined ? { body: payload, headers: { 'content-type': 'application/json' } } : {}),
    });
    const text = await res.text();
    let body: JsonObj = {};
    try {
      body = JSON.parse(text) as JsonObj;
    } catch {
      // SSE or text
    }
    return { status: res.status, type: res.headers.get('content-type') ?? '', body };
  };
  /** No 5xx; a 4xx is problem+json and (unless it is about the route or the job as a whole) names its fields. */
  const wellFormed = (a: Answer, mustName: boolean): boolean => {
    if (a.status >= 500) throw new Error(`${a.status}: ${JSON.stringify(a.body).slice(0, 500)}`);
    if (a.status < 400) return true;
    if (!a.type.startsWith('application/problem+json')) throw new Error(`${a.status} with content-type ${a.type}`);
    if (!mustName) return true;
    const errors = a.body.errors as { path?: unknown; detail?: unknown }[] | undefined;
    const ok = Array.isArray(errors) && errors.length > 0 && errors.every((e) => typeof e.path === 'string' && e.path.length > 0 && typeof e.detail === 'string');
    if (!ok) throw new Error(`${a.status} names no field: ${JSON.stringify(a.body).slice(0, 500)}`);
    return true;
  };

  test(`POST /jobs: ${RUNS} generated bodies, never a 5xx, every refusal names a field`, async () => {
    const counts: Record<number, number> = {};
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 20, arbitrary: specInput.map((v) => JSON.stringify(v) ?? 'null') }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) }), async (body) => {
        const r = await call('POST', '/jobs', body);
        counts[r.status] = (counts[r.status] ?? 0) + 1;
        if (r.status === 201) started.push(String(r.body.workflow_id));
        return wellFormed(r, true);
      }),
      params(RUNS),
    );
    // The generator reaches past the schema: refusals of every kind, and some specs that pass everything.
    expect(counts[400]).toBeGreaterThan(RUNS / 4);
    expect(counts[401]).toBeGreaterThan(0);
    expect((counts[201] ?? 0) + (counts[200] ?? 0)).toBeGreaterThan(0);
  }, 600_000);

  test('GET /jobs filters, job ids, cancel bodies and raw bytes: never a 5xx', async () => {
    const n = Math.max(200, Math.floor(RUNS / 10));
    const anyString = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('RUNNING', 'QUEUED,RUNNING', 'finetune', 'local', "local' OR 1=1", 'did:key:z6Mk', '%00', '..%2F..'));
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom('state', 'job_type', 'backend', 'owner', 'page_size', 'page_token', 'x'), anyString, { maxKeys: 4 }),
        async (query) => {
          const r = await call('GET', `/jobs?${new URLSearchParams(query).toString()}`);
          return wellFormed(r, r.status === 400);
        },
      ),
      params(n),
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 80 })), async (id) => {
        const r = await call('GET', `/jobs/${encodeURIComponent(id)}`);
        return wellFormed(r, r.status === 400);
      }),
      params(n),
    );
    await fc.assert(
      fc.asyncProperty(fc.uuid(), fc.jsonValue({ maxDepth: 3 }), async (id, body) => {
        const r = await call('POST', `/jobs/${id}/cancel`, JSON.stringify(body) ?? 'null');
        return wellFormed(r, r.status === 400);
      }),
      params(n),
    );
  }, 300_000);
});
