/**
 * acceptSpec (common/accept-spec.ts), the one check of a submitted spec for POST /jobs and the validateSpec activity:
 * a typed SignedSpec, or typed errors that each name their field.
 */
import { acceptSpec, type AcceptPolicy } from '../../common/accept-spec';
import { parseConfig } from '../../common/config';
import { specHash } from '../../jobspec/parse';
import { generateKeyPair } from '../../jobspec/signing';
import { makeSignedSpec } from '../jobspec/fixtures';
import { tempDir } from '../helpers/forge';

const home = tempDir('accept-spec-');
const policy = (extra: object = {}): AcceptPolicy => ({
  config: parseConfig({ backends: { local: { kind: 'local' } }, results: { enabled: false }, ...extra }),
  backends: new Map([['local', {}]]),
  home,
});

test('a valid signed spec comes back as one SignedSpec: typed spec, raw JSON, its sha256', () => {
  const raw = makeSignedSpec();
  const a = acceptSpec(raw, policy());
  expect(a).toEqual({ ok: true, signed: { spec: expect.objectContaining({ job_id: raw.job_id }), raw, sha256: specHash(raw) } });
});

test('a schema failure stops there: no spec, errors of kind schema naming the field', () => {
  const a = acceptSpec({ ...makeSignedSpec(), job_type: 'bake' }, policy());
  expect(a.ok).toBe(false);
  if (a.ok) return;
  expect(a.spec).toBeUndefined();
  expect(a.errors).toEqual([expect.objectContaining({ kind: 'schema', path: 'job_type' })]);
});

test('signature, owner and backend errors come together, with the parsed spec; the policy waits for them', () => {
  const raw = makeSignedSpec({ backend: { fallbacks: ['runpod'] } });
  const a = acceptSpec({ ...raw, created_at: raw.created_at - 1 }, policy({ allowed_owners: [generateKeyPair().did] }));
  expect(a.ok).toBe(false);
  if (a.ok) return;
  expect(a.spec?.job_id).toBe(raw.job_id);
  expect(a.errors.map((e) => [e.kind, e.path])).toEqual([
    ['signature', 'signature_ed25519'],
    ['owner-not-allowed', 'owner_did'],
    ['unknown-backend', 'backend.fallbacks.0'],
  ]);
});

test("the operator's policy refuses a signed spec from a known owner, naming the field", () => {
  const a = acceptSpec(makeSignedSpec({ resources: { max_hours: 2 } }), policy({ max_job_hours: 1 }));
  expect(a.ok).toBe(false);
  if (a.ok) return;
  expect(a.errors).toEqual([expect.objectContaining({ kind: 'policy', path: 'resources.max_hours' })]);
});
