/**
 * Malformed and hostile bodies for POST /jobs: each is answered 4xx with a problem+json naming the field at fault,
 * and the server goes on serving (a valid spec is still accepted at the end).
 */
import { generateKeyPair } from '../../jobspec/signing';
import { jobWorkflowId } from '../../common/names';
import { deepMerge, makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, tempDir, testConfig } from '../helpers/forge';
import { http, problemOf, startApi, type ApiHarness } from './harness';

const TQ = 'test-api-hostile';
const home = tempDir('forge-api-hostile-');
// Result integration on (the default), so the output repo and branch are checked too: ssh repos of acme are allowed
// but no credential is configured for them; https repos of git.example.com are allowed with a token.
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 1) } } }, undefined, {
  results: {
    git: {
      file_roots: [home],
      output_repos: ['git@github.com:acme/', 'https://git.example.com/models/'],
      credentials: [{ match: 'https://git.example.com/', token: 'test-token' }],
    },
  },
});
/** Where this file's valid specs put their output: a file:// repository under the operator's root. */
const OUTPUT = { artifacts: { output_repo: `file://${home}/models.git` } };

let api: ApiHarness;
beforeAll(async () => {
  api = await startApi({ taskQueue: TQ, config, home, worker: false });
});
afterAll(async () => {
  await api?.stop();
});

const keys = generateKeyPair();
const base = (): Record<string, unknown> => makeSignedSpec(OUTPUT, keys) as unknown as Record<string, unknown>;
/** Validly signed by the owner: only the schema's bounds or the operator's policy can refuse it. */
const signed = (overrides: object): Record<string, unknown> =>
  makeSignedSpec(deepMerge(OUTPUT, overrides), keys) as unknown as Record<string, unknown>;
const withFields = (overrides: object): Record<string, unknown> => deepMerge(base(), overrides);
const without = (...path: string[]): Record<string, unknown> => {
  const spec = base();
  let node = spec;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
  delete node[path.at(-1)!];
  return spec;
};
/** Raw JSON text (JSON.stringify itself would overflow the stack): `{"a":[{"a":[ … ]}]}`, depth levels. */
const nestedText = (depth: number): string => '{"a":['.repeat(depth / 2) + '"bottom"' + ']}'.repeat(depth / 2);
/** A valid signed spec's JSON text with `key` set to raw JSON text. */
const withRaw = (key: string, rawValue: string): string => {
  const { [key]: _dropped, ...rest } = base();
  return JSON.stringify(rest).replace(/^\{/, `{"${key}":${rawValue},`);
};
const rawNested = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`;

interface Case {
  name: string;
  body: unknown;
  /** Expected status; 400 unless said. */
  status?: number;
  /** A field path the problem must name. */
  field: string;
  contentType?: string;
}

const other = makeSignedSpec({ ...OUTPUT, objective: { max_steps: 77 } }, keys);

/**
 * Issue 14's holes, each in a spec its owner signed: refused with the field named (400 when the spec breaks the
 * schema's bounds, 403 when the operator's policy forbids it), and no workflow started.
 */
const holes: Case[] = [
  { name: 'a NUL and a bidi override in base_model.name', body: signed({ base_model: { name: '\u202e\u0000evil' } }), field: 'base_model.name' },
  { name: 'backend.max_retries 1e9', body: signed({ backend: { max_retries: 1e9 } }), field: 'backend.max_retries' },
  { name: 'resources.max_hours 1e10', body: signed({ resources: { max_hours: 1e10 } }), field: 'resources.max_hours' },
  { name: "resources.max_hours over the operator's max_job_hours", body: signed({ resources: { max_hours: 721 } }), status: 403, field: 'resources.max_hours' },
  { name: 'output_branch main', body: signed({ artifacts: { output_branch: 'main' } }), status: 403, field: 'artifacts.output_branch' },
  { name: 'output_branch outside jobs/', body: signed({ artifacts: { output_branch: 'release/${job_id}' } }), status: 403, field: 'artifacts.output_branch' },
  { name: 'output_repo outside the allow rules', body: signed({ artifacts: { output_repo: 'https://github.com/victim/app.git' } }), status: 403, field: 'artifacts.output_repo' },
  { name: 'output_repo a file:// repo outside the roots', body: signed({ artifacts: { output_repo: 'file:///root/code.git' } }), status: 403, field: 'artifacts.output_repo' },
  { name: 'base_model local /etc', body: signed({ base_model: { name: '/etc', source: 'local' } }), status: 403, field: 'base_model.name' },
  { name: 'base_model local climbing out of FORGE_HOME', body: signed({ base_model: { name: `${home}/../../etc`, source: 'local' } }), status: 403, field: 'base_model.name' },
  { name: 'an eval job of a local model outside the roots', body: signed({ job_type: 'eval', base_model: { name: '/usr/share', source: 'local' } }), status: 403, field: 'base_model.name' },
  { name: 'data.repo file:///etc', body: signed({ data: { repo: 'file:///etc' } }), status: 403, field: 'data.repo' },
  { name: 'an ssh output repo with no credential', body: signed({ artifacts: { output_repo: 'git@github.com:acme/models.git' } }), status: 403, field: 'artifacts.output_repo' },
];
const cases: Case[] = [
  { name: 'JSON null', body: 'null', field: '(root)' },
  { name: 'a JSON array', body: [], field: '(root)' },
  { name: 'a JSON string', body: '"spec"', field: '(root)' },
  { name: 'a JSON number', body: '42', field: '(root)' },
  { name: 'an empty object', body: {}, field: 'job_id' },
  { name: 'invalid JSON', body: '{"job_id": ', field: '(root)' },
  { name: 'trailing garbage', body: '{}x', field: '(root)' },
  { name: 'an empty body', body: '', field: '(root)' },
  { name: 'job_id a number', body: withFields({ job_id: 5 }), field: 'job_id' },
  { name: 'job_id upper-case', body: withFields({ job_id: 'AAAAAAAA-0000-4000-8000-000000000000' }), field: 'job_id' },
  { name: 'job_id a ../ path', body: withFields({ job_id: '../../../etc/passwd' }), field: 'job_id' },
  { name: 'job_id a huge string', body: withFields({ job_id: 'a'.repeat(200_000) }), field: 'job_id' },
  { name: 'job_id in Arabic-Indic digits', body: withFields({ job_id: '١٢٣٤٥٦٧٨-0000-4000-8000-000000000000' }), field: 'job_id' },
  { name: 'owner_did not a did:key', body: withFields({ owner_did: 'did:web:evil.example' }), field: 'owner_did' },
  { name: 'owner_did not a curve point', body: withFields({ owner_did: 'did:key:z6Mkaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }), field: 'owner_did' },
  { name: 'created_at negative', body: withFields({ created_at: -1 }), field: 'created_at' },
  { name: 'created_at fractional', body: withFields({ created_at: 1.5 }), field: 'created_at' },
  { name: 'created_at a string', body: withFields({ created_at: '2024-01-01' }), field: 'created_at' },
  { name: 'job_type unknown', body: withFields({ job_type: 'pretrain' }), field: 'job_type' },
  { name: 'job_type in full-width unicode', body: withFields({ job_type: 'ｆｉｎｅｔｕｎｅ' }), field: 'job_type' },
  { name: 'base_model missing', body: without('base_model'), field: 'base_model' },
  { name: 'base_model.name empty', body: withFields({ base_model: { name: '' } }), field: 'base_model.name' },
  { name: 'base_model.source ftp', body: withFields({ base_model: { source: 'ftp' } }), field: 'base_model.source' },
  { name: 'objective.task_types empty', body: withFields({ objective: { task_types: [] } }), field: 'objective.task_types' },
  { name: 'objective.max_steps 0', body: withFields({ objective: { max_steps: 0 } }), field: 'objective.max_steps' },
  { name: 'objective.max_steps 1e400 (Infinity)', body: JSON.stringify(withFields({ objective: { max_steps: 1 } })).replace('"max_steps":1', '"max_steps":1e400'), field: 'objective.max_steps' },
  { name: 'data.branch --upload-pack=x', body: withFields({ data: { branch: '--upload-pack=x' } }), field: 'data.branch' },
  { name: 'data.branch with ..', body: withFields({ data: { branch: 'main/../../evil' } }), field: 'data.branch' },
  { name: 'data.branch with a NUL', body: withFields({ data: { branch: 'main\u0000' } }), field: 'data.branch' },
  { name: 'data.repo an ext:: helper', body: withFields({ data: { repo: 'ext::sh -c touch% /tmp/pwned' } }), field: 'data.repo' },
  { name: 'data.repo plain http', body: withFields({ data: { repo: 'http://insecure.example/x.git' } }), field: 'data.repo' },
  { name: 'data.repo with credentials', body: withFields({ data: { repo: 'https://user:pass@github.com/x.git' } }), field: 'data.repo' },
  { name: 'data.repo starting with -', body: withFields({ data: { repo: '-oProxyCommand=evil' } }), field: 'data.repo' },
  { name: 'data.path ../ escape', body: withFields({ data: { path: '../../secrets' } }), field: 'data.path' },
  { name: 'data.path absolute', body: withFields({ data: { path: '/etc/passwd' } }), field: 'data.path' },
  { name: 'data.validation_split 1', body: withFields({ data: { validation_split: 1 } }), field: 'data.validation_split' },
  { name: 'learning_rate negative', body: withFields({ hyperparameters: { learning_rate: -1 } }), field: 'hyperparameters.learning_rate' },
  { name: 'batch_size a string', body: withFields({ hyperparameters: { batch_size: '4' } }), field: 'hyperparameters.batch_size' },
  { name: 'gpus without gpu_type', body: withFields({ resources: { gpus: 1 } }), field: 'resources.gpu_type' },
  { name: 'max_hours 0', body: withFields({ resources: { max_hours: 0 } }), field: 'resources.max_hours' },
  { name: 'backend.provider with an emoji', body: withFields({ backend: { provider: 'local🔥' } }), field: 'backend.provider' },
  { name: 'backend.fallbacks duplicated', body: withFields({ backend: { fallbacks: ['a', 'a'] } }), field: 'backend.fallbacks.1' },
  { name: 'max_cost_usd negative', body: withFields({ backend: { max_cost_usd: -5 } }), field: 'backend.max_cost_usd' },
  { name: 'output_branch with ..', body: withFields({ artifacts: { output_branch: 'jobs/${job_id}/../../main' } }), field: 'artifacts.output_branch' },
  { name: 'output_branch starting with -', body: withFields({ artifacts: { output_branch: '-f' } }), field: 'artifacts.output_branch' },
  { name: 'trainer.image with spaces', body: withFields({ trainer: { image: 'evil; rm -rf /' } }), field: 'trainer.image' },
  { name: 'notifications.on_complete empty', body: withFields({ notifications: { on_complete: '' } }), field: 'notifications.on_complete' },
  { name: '$schema a number', body: withFields({ $schema: 7 }), field: '$schema' },
  { name: 'an unknown top-level key', body: withFields({ evil: true }), field: 'evil' },
  { name: 'an unknown nested key', body: withFields({ hyperparameters: { lr_hack: 1 } }), field: 'hyperparameters.lr_hack' },
  { name: 'a __proto__ key', body: JSON.stringify(base()).replace('{', '{"__proto__":{"polluted":true},'), field: '(root)' },
  { name: 'a constructor.prototype key', body: JSON.stringify(base()).replace('{', '{"constructor":{"prototype":{"polluted":true}},'), field: '(root)' },
  { name: 'deep nesting under an unknown key', body: withRaw('deep', nestedText(20_000)), field: 'deep' },
  { name: 'deep nesting as a field value', body: withRaw('notifications', rawNested(20_000)), field: 'notifications' },
  { name: 'a 100 000-deep raw array', body: rawNested(100_000), field: '(root)' },
  { name: '30 000 bad task types', body: withFields({ objective: { task_types: Array.from({ length: 30_000 }, () => 1) } }), field: 'objective.task_types.0' },
  { name: 'signature missing', body: without('signature_ed25519'), field: 'signature_ed25519' },
  { name: 'signature not base64url', body: withFields({ signature_ed25519: 'abc==!' }), field: 'signature_ed25519' },
  { name: 'a forged signature', body: withFields({ signature_ed25519: 'A'.repeat(86) }), status: 401, field: 'signature_ed25519' },
  { name: 'a signature over a different spec', body: withFields({ signature_ed25519: other.signature_ed25519 }), status: 401, field: 'signature_ed25519' },
  { name: 'a signature by a key other than owner_did', body: withFields({ owner_did: generateKeyPair().did }), status: 401, field: 'signature_ed25519' },
  { name: 'a spec changed after signing', body: withFields({ resources: { max_hours: 1000 } }), status: 401, field: 'signature_ed25519' },
  { name: 'a unicode-escaped change after signing', body: JSON.stringify(base()).replace('"file-edit"', '"file-\\u0065dit\\u200b"'), status: 401, field: 'signature_ed25519' },
  { name: 'XML', body: '<job/>', contentType: 'application/xml', status: 415, field: 'content-type' },
];

cases.push(...holes);

test('the hostile set has at least 40 bodies', () => {
  expect(cases.length).toBeGreaterThanOrEqual(40);
});

test.each(cases)('$name → 4xx problem naming $field', async ({ body, status = 400, field, contentType }) => {
  const r = await http(api.url, 'POST', '/jobs', body, contentType ? { 'content-type': contentType } : { 'content-type': 'application/json' });
  expect(r.status).toBe(status);
  const p = problemOf(r);
  expect(p.detail.length).toBeGreaterThan(0);
  expect(p.errors?.map((e) => e.path)).toContain(field);
  expect(r.text.length).toBeLessThan(64 * 1024);
});

test('a refused hole started nothing: no workflow exists for any of their job ids', async () => {
  for (const { body } of holes) {
    const jobId = (body as { job_id: string }).job_id;
    await expect(api.client.workflow.getHandle(jobWorkflowId(jobId)).describe()).rejects.toThrow(/not found/i);
  }
});

test('37 000 fallbacks in a 256 KiB body are refused before the signature, naming the field', async () => {
  const fallbacks = Array.from({ length: 37_000 }, (_, i) => `b${i.toString(36)}`);
  const body = JSON.stringify(signed({ backend: { fallbacks } }));
  expect(body.length).toBeLessThan(256 * 1024);
  const r = await http(api.url, 'POST', '/jobs', body);
  expect(r.status).toBe(400);
  expect(problemOf(r).errors?.map((e) => e.path)).toContain('backend.fallbacks');
  // How fast: test/jobspec/bounds.test.ts checks the one-pass duplicate check with 370,000 fallbacks.
});

test('a policy refusal is a 403 problem of its own type, saying what to do', async () => {
  const r = await http(api.url, 'POST', '/jobs', signed({ artifacts: { output_repo: 'git@github.com:acme/models.git' } }));
  expect(r.status).toBe(403);
  const p = problemOf(r);
  expect(p.type).toBe('https://chrysalis-forge.dev/problems/policy-refused');
  expect(p.errors?.[0]?.detail).toMatch(/no ssh_key_file credential .* results\.git\.credentials/);
});

test('after all of them the server still serves, and a valid spec is accepted', async () => {
  expect((await http(api.url, 'GET', '/healthz')).status).toBe(200);
  const spec = makeSignedSpec({ ...OUTPUT, trainer: { image: 'ok' } });
  const r = await http(api.url, 'POST', '/jobs', spec);
  expect(r.status).toBe(201);
  await api.client.workflow.getHandle(jobWorkflowId(spec.job_id)).terminate('test over');
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
});
