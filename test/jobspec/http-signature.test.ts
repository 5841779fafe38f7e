/**
 * RFC 9421 signature base and Ed25519 signatures (jobspec/http-signature.ts), checked against the RFC's own example
 * (Appendix B.2.6, key B.1.4) and against a vector written out by hand from §2.5/§2.3, signed by Node's own Ed25519.
 */
import { createHash, createPrivateKey, createPublicKey, sign as nodeSign } from 'node:crypto';
import { didKeyFromPublicKey, publicKeyFromDidKey } from '../../jobspec/did-key';
import {
  contentDigest,
  contentDigestMatches,
  parseDictionary,
  signatureBase,
  signRequest,
  verifyRequest,
  type SignedRequestParts,
  type VerifyOptions,
} from '../../jobspec/http-signature';

// RFC 9421 Appendix B.1.4, test-key-ed25519 (PKCS#8 / SPKI; the raw keys are their last 32 bytes).
const RFC_PRIVATE_PEM = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n';
const RFC_PUBLIC_RAW = Buffer.from('MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=', 'base64').subarray(-32);

describe('RFC 9421 Appendix B.2.6 (Ed25519)', () => {
  const req: SignedRequestParts = {
    method: 'POST',
    url: 'https://example.com/foo?param=Value&Pet=dog',
    headers: {
      Host: 'example.com',
      Date: 'Tue, 20 Apr 2021 02:07:55 GMT',
      'Content-Type': 'application/json',
      'Content-Digest': 'sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:',
      'Content-Length': '18',
      'Signature-Input': 'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
      Signature: 'sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:',
    },
  };
  const rfcBase = [
    '"date": Tue, 20 Apr 2021 02:07:55 GMT',
    '"@method": POST',
    '"@path": /foo',
    '"@authority": example.com',
    '"content-type": application/json',
    '"content-length": 18',
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
  ].join('\n');

  test('our signature base is the RFC one, byte for byte', () => {
    const member = parseDictionary(req.headers['Signature-Input'] as string).get('sig-b26');
    expect(member?.kind).toBe('inner');
    if (member?.kind !== 'inner') return;
    expect(signatureBase(req, member.list)).toBe(rfcBase);
  });

  test("the RFC's signature verifies; Node's Ed25519 over our base gives the same bytes", () => {
    const ok = verifyRequest(req, { nowSeconds: 1618884473 + 10, maxSkewSeconds: 300, publicKeyFor: () => RFC_PUBLIC_RAW, required: [] });
    expect(ok).toMatchObject({ ok: true, keyid: 'test-key-ed25519', created: 1618884473 });
    const mine = nodeSign(null, Buffer.from(rfcBase), createPrivateKey(RFC_PRIVATE_PEM)).toString('base64');
    expect(`sig-b26=:${mine}:`).toBe(req.headers.Signature);
  });

  test('one changed covered value and it no longer verifies', () => {
    const tampered = { ...req, url: 'https://example.com/bar?param=Value&Pet=dog' };
    const r = verifyRequest(tampered, { nowSeconds: 1618884473, maxSkewSeconds: 300, publicKeyFor: () => RFC_PUBLIC_RAW, required: [] });
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/does not verify/) });
  });
});

describe('a vector built by hand from §2.5 and §2.3 (did:key owner, nonce, content-digest)', () => {
  // RFC 8032 §7.1 TEST 1 key.
  const secretKey = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
  const publicKey = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
  const did = didKeyFromPublicKey(publicKey);
  const body = '{"hello":"world"}';
  const digest = `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
  const req: SignedRequestParts = {
    method: 'post',
    url: 'https://Forge.Example:8443/jobs/abc?follow=true',
    headers: { 'content-type': 'application/json', 'Content-Digest': `  ${digest} ` },
  };
  const components = ['@method', '@authority', '@path', '@query', 'content-digest'];
  const params = `;created=1700000000;keyid="${did}";alg="ed25519";nonce="n0nce-1"`;
  const base = [
    '"@method": POST',
    '"@authority": forge.example:8443',
    '"@path": /jobs/abc',
    '"@query": ?follow=true',
    `"content-digest": ${digest}`,
    `"@signature-params": ("@method" "@authority" "@path" "@query" "content-digest")${params}`,
  ].join('\n');
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), secretKey]);
  const expectedSig = nodeSign(null, Buffer.from(base), createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).toString('base64');
  const verifyOpts: VerifyOptions = {
    nowSeconds: 1700000000,
    maxSkewSeconds: 300,
    publicKeyFor: (keyid) => publicKeyFromDidKey(keyid),
    required: [[['@method']], [['@target-uri'], ['@authority', '@path', '@query']]],
  };

  test('content digest is RFC 9530 sha-256 and is checked against the body', () => {
    expect(contentDigest(body)).toBe(digest);
    expect(contentDigestMatches(digest, Buffer.from(body))).toBe(true);
    expect(contentDigestMatches(digest, Buffer.from('{"hello":"World"}'))).toBe(false);
    expect(contentDigestMatches('sha-512=:AAAA:', Buffer.from(body))).toBe(false);
    expect(contentDigestMatches('not a dictionary ((', Buffer.from(body))).toBe(false);
  });

  test('signRequest writes exactly the hand-built Signature-Input and the Ed25519 signature of the hand-built base', () => {
    const out = signRequest(req, { secretKey, keyid: did, created: 1700000000, nonce: 'n0nce-1', components });
    expect(out['signature-input']).toBe(`sig1=("@method" "@authority" "@path" "@query" "content-digest")${params}`);
    expect(out.signature).toBe(`sig1=:${expectedSig}:`);
    const signed = { ...req, headers: { ...req.headers, ...out } };
    expect(verifyRequest(signed, verifyOpts)).toMatchObject({ ok: true, keyid: did, created: 1700000000 });
    // The public key node derives is the one the did names.
    expect(createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' }).subarray(-32)).toEqual(publicKey);
  });

  const signedWith = (over: Partial<{ created: number; components: string[] }> = {}, r: SignedRequestParts = req): SignedRequestParts => ({
    ...r,
    headers: { ...r.headers, ...signRequest(r, { secretKey, keyid: did, created: over.created ?? 1700000000, nonce: 'x', components: over.components ?? components }) },
  });

  test('refusals say what to fix', () => {
    const reason = (r: SignedRequestParts, o: Partial<VerifyOptions> = {}): string => {
      const v = verifyRequest(r, { ...verifyOpts, ...o });
      return v.ok ? 'ok' : v.reason;
    };
    expect(reason(req)).toMatch(/missing Signature-Input or Signature/);
    expect(reason(signedWith({ created: 1700000000 - 301 }))).toMatch(/"created" .* more than 300 s/);
    expect(reason(signedWith({ created: 1700000000 + 301 }))).toMatch(/more than 300 s/);
    expect(reason(signedWith({ components: ['@method', '@path'] }))).toMatch(/must cover "@target-uri" or "@authority" "@path" "@query"/);
    expect(reason(signedWith({ components: ['@method', '@target-uri'] }))).toBe('ok');
    // Another method, another body digest, another key: the signature no longer verifies.
    expect(reason({ ...signedWith(), method: 'DELETE' })).toMatch(/does not verify/);
    const s = signedWith();
    expect(reason({ ...s, headers: { ...s.headers, 'Content-Digest': contentDigest('{}') } })).toMatch(/does not verify/);
    expect(reason(s, { publicKeyFor: () => RFC_PUBLIC_RAW })).toMatch(/does not verify/);
    expect(reason(s, { publicKeyFor: () => { throw new Error('not an owner'); } })).toBe('keyid: not an owner');
    // Two labels, a wrong alg, a malformed field.
    expect(reason({ ...s, headers: { ...s.headers, 'signature-input': `${s.headers['signature-input'] as string}, sig2=("@method");created=1700000000;keyid="k"` } })).toMatch(/exactly one signature/);
    expect(reason({ ...s, headers: { ...s.headers, 'signature-input': (s.headers['signature-input'] as string).replace('alg="ed25519"', 'alg="hmac-sha256"') } })).toMatch(/alg must be "ed25519"/);
    expect(reason({ ...s, headers: { ...s.headers, signature: 'sig1=:not base64!:' } })).toMatch(/base64/);
    expect(reason({ ...s, headers: { ...s.headers, 'signature-input': 'sig1=("@method");keyid="k"' } })).toMatch(/"created" parameter is required/);
  });
});
