import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { base64urlnopad } from '@scure/base';
import { canonicalize } from '../../jobspec/canonical-json';
import {
  generateKeyPair,
  publicKeyFromSecretKey,
  signAction,
  signBytes,
  signCancelRequest,
  signSpec,
  specSigningPayload,
  verifyAction,
  verifyBytes,
  verifyCancelRequest,
  verifySpecSignature,
} from '../../jobspec/signing';
import { deepMerge, makeSignedSpec, makeUnsignedSpec } from './fixtures';

const RFC8032_VECTORS = [
  {
    name: 'TEST 1',
    secretKey: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature:
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    name: 'TEST 2',
    secretKey: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature:
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
];

describe('Ed25519 over bytes', () => {
  it.each(RFC8032_VECTORS)('matches RFC 8032 §7.1 $name', (v) => {
    const secretKey = hexToBytes(v.secretKey);
    expect(bytesToHex(publicKeyFromSecretKey(secretKey))).toBe(v.publicKey);
    const signature = signBytes(hexToBytes(v.message), secretKey);
    expect(bytesToHex(base64urlnopad.decode(signature))).toBe(v.signature);
    expect(signature).toMatch(/^[A-Za-z0-9_-]{86}$/); // base64url, no padding
    expect(verifyBytes(signature, hexToBytes(v.message), hexToBytes(v.publicKey))).toBe(true);
    expect(verifyBytes(signature, Uint8Array.of(1), hexToBytes(v.publicKey))).toBe(false);
  });

  it('answers false, never throws, on malformed input', () => {
    const { secretKey, publicKey } = generateKeyPair();
    const message = Uint8Array.of(1, 2, 3);
    const signature = signBytes(message, secretKey);
    expect(verifyBytes(`${signature}=`, message, publicKey)).toBe(false);
    expect(verifyBytes('not base64url!', message, publicKey)).toBe(false);
    expect(verifyBytes(signature.slice(0, 40), message, publicKey)).toBe(false);
    expect(verifyBytes('', message, publicKey)).toBe(false);
    expect(verifyBytes(signature, message, publicKey.slice(1))).toBe(false);
    expect(verifyBytes(signature, message, new Uint8Array(32).fill(0xff))).toBe(false);
  });
});

describe('spec signatures', () => {
  it('signs the canonical JSON without the signature field', () => {
    const keys = generateKeyPair();
    const signed = makeSignedSpec({}, keys);
    const { signature_ed25519: signature, ...unsigned } = signed;
    const payload = new TextDecoder().decode(specSigningPayload(signed));
    expect(payload).toBe(canonicalize(unsigned));
    expect(verifyBytes(signature, new TextEncoder().encode(canonicalize(unsigned)), keys.publicKey)).toBe(true);
    expect(verifySpecSignature(signed)).toEqual({ ok: true });
  });

  it('ignores an existing signature when signing', () => {
    const keys = generateKeyPair();
    const unsigned = makeUnsignedSpec({}, keys);
    const once = signSpec(unsigned, keys.secretKey);
    const again = signSpec({ ...unsigned, signature_ed25519: 'stale' }, keys.secretKey);
    expect(again.signature_ed25519).toBe(once.signature_ed25519);
  });

  it('still verifies after keys are reordered, since the payload is canonical', () => {
    const signed = makeSignedSpec();
    const reversed = (value: Record<string, unknown>): Record<string, unknown> =>
      Object.fromEntries(
        Object.entries(value)
          .reverse()
          .map(([k, v]) => [k, typeof v === 'object' && v !== null && !Array.isArray(v) ? reversed(v as Record<string, unknown>) : v]),
      );
    const reordered = reversed(signed);
    expect(Object.keys(reordered)[0]).toBe('signature_ed25519');
    expect(verifySpecSignature(reordered)).toEqual({ ok: true });
    expect(verifySpecSignature(JSON.parse(JSON.stringify(reordered)))).toEqual({ ok: true });
  });

  it.each<[string, object]>([
    ['job_id', { job_id: '00000000-0000-4000-8000-000000000000' }],
    ['created_at', { created_at: 1 }],
    ['job_type', { job_type: 'eval' }],
    ['a nested number', { hyperparameters: { learning_rate: 2e-5 } }],
    ['an array element', { objective: { task_types: ['vcs'] } }],
    ['the data repo', { data: { repo: 'file:///tmp/other' } }],
    ['the budget', { backend: { max_cost_usd: 1000 } }],
    ['the trainer image', { trainer: { image: 'evil/trainer:latest' } }],
    ['an added field', { notifications: { on_complete: 'nostr:npub1x' } }],
    ['a removed field', { $schema: undefined }],
    ['owner_did (another valid key)', { owner_did: generateKeyPair().did }],
  ])('detects a change to %s', (_name, change) => {
    const signed = makeSignedSpec();
    expect(verifySpecSignature(signed)).toEqual({ ok: true });
    const tampered = deepMerge(signed, change);
    expect(verifySpecSignature(tampered)).toEqual({
      ok: false,
      reason: 'signature_ed25519: signature does not match owner_did',
    });
  });

  it('rejects a signature made by another key', () => {
    const owner = generateKeyPair();
    const other = generateKeyPair();
    const spec = signSpec(makeUnsignedSpec({}, owner), other.secretKey);
    expect(verifySpecSignature(spec)).toEqual({ ok: false, reason: 'signature_ed25519: signature does not match owner_did' });
  });

  it.each<[string, unknown, RegExp]>([
    ['a non-object', 'spec', /^\(root\): /],
    ['an array', [], /^\(root\): /],
    ['null', null, /^\(root\): /],
    ['a missing owner_did', { ...makeSignedSpec(), owner_did: undefined }, /^owner_did: missing/],
    ['an owner_did of another method', { ...makeSignedSpec(), owner_did: 'did:web:example.com' }, /^owner_did: not a did:key/],
    ['a missing signature', { ...makeSignedSpec(), signature_ed25519: undefined }, /^signature_ed25519: missing/],
    ['a malformed signature', { ...makeSignedSpec(), signature_ed25519: '!!' }, /^signature_ed25519: signature does not match/],
    ['a value JSON cannot hold', { ...makeSignedSpec(), created_at: NaN }, /^\(root\): canonicalize: created_at is NaN/],
  ])('refuses %s, naming the field', (_name, spec, reason) => {
    const result = verifySpecSignature(spec);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });
});

describe('cancel requests', () => {
  const jobId = '7f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
  const now = 1_750_000_000;
  const owner = generateKeyPair();
  const expected = { jobId, ownerDid: owner.did, nowSeconds: now };

  it('accepts a fresh request from the owner', () => {
    const req = signCancelRequest(jobId, now - 10, owner.secretKey);
    expect(req).toMatchObject({ job_id: jobId, action: 'cancel', issued_at: now - 10 });
    expect(verifyCancelRequest(req, expected)).toEqual({ ok: true });
  });

  it('signs exactly {action, issued_at, job_id}', () => {
    const req = signCancelRequest(jobId, now, owner.secretKey);
    const payload = new TextEncoder().encode(`{"action":"cancel","issued_at":${now},"job_id":"${jobId}"}`);
    expect(verifyBytes(req.signature_ed25519, payload, owner.publicKey)).toBe(true);
  });

  it('accepts the edges of the window', () => {
    expect(verifyCancelRequest(signCancelRequest(jobId, now - 300, owner.secretKey), expected)).toEqual({ ok: true });
    expect(verifyCancelRequest(signCancelRequest(jobId, now + 300, owner.secretKey), expected)).toEqual({ ok: true });
  });

  it.each<[string, () => unknown, object, RegExp]>([
    ['stale (more than 5 minutes old)', () => signCancelRequest(jobId, now - 301, owner.secretKey), {}, /^issued_at: request is stale/],
    ['from the future', () => signCancelRequest(jobId, now + 301, owner.secretKey), {}, /^issued_at: .* in the future/],
    ['stale under a shorter maxAge', () => signCancelRequest(jobId, now - 61, owner.secretKey), { maxAgeSeconds: 60 }, /stale \(older than 60 s\)/],
    ['for another job', () => signCancelRequest('00000000-0000-4000-8000-000000000000', now, owner.secretKey), {}, /^job_id: request is for another job/],
    ['signed by someone other than the owner', () => signCancelRequest(jobId, now, generateKeyPair().secretKey), {}, /^signature_ed25519: signature does not match owner_did/],
    ['checked against a wrong owner', () => signCancelRequest(jobId, now, owner.secretKey), { ownerDid: generateKeyPair().did }, /^signature_ed25519: signature does not match/],
    ['with a bad signature', () => ({ ...signCancelRequest(jobId, now, owner.secretKey), signature_ed25519: 'AAAA' }), {}, /^signature_ed25519: signature does not match/],
    ['with a re-dated issued_at', () => ({ ...signCancelRequest(jobId, now - 1000, owner.secretKey), issued_at: now }), {}, /^signature_ed25519: signature does not match/],
    ['with another action', () => signAction({ action: 'promote', job_id: jobId, issued_at: now }, owner.secretKey), {}, /^action: must be "cancel"/],
    ['with an extra field', () => ({ ...signCancelRequest(jobId, now, owner.secretKey), reason: 'x' }), {}, /^reason: unknown field/],
    ['without a signature', () => ({ action: 'cancel', job_id: jobId, issued_at: now }), {}, /^signature_ed25519: missing/],
    ['with a fractional issued_at', () => ({ action: 'cancel', job_id: jobId, issued_at: now + 0.5, signature_ed25519: 'x' }), {}, /^issued_at: must be Unix seconds/],
    ['with issued_at as a string', () => ({ action: 'cancel', job_id: jobId, issued_at: String(now), signature_ed25519: 'x' }), {}, /^issued_at: /],
    ['without job_id', () => ({ action: 'cancel', issued_at: now, signature_ed25519: 'x' }), {}, /^job_id: missing/],
    ['not an object', () => 'cancel', {}, /^\(root\): /],
  ])('refuses a request %s', (_name, make, overrides, reason) => {
    const result = verifyCancelRequest(make(), { ...expected, ...overrides });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });

  it('lets other actions sign extra fields', () => {
    const req = signAction({ action: 'set-priority', job_id: jobId, issued_at: now, priority: 5 }, owner.secretKey);
    const expectation = { ...expected, action: 'set-priority', extraFields: ['priority'] };
    expect(verifyAction(req, expectation)).toEqual({ ok: true });
    expect(verifyAction({ ...req, priority: 9 }, expectation)).toMatchObject({ ok: false });
  });
});
