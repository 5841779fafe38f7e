/**
 * The API's native Ed25519 fast path agrees with jobspec/signing (the workflow's check) on valid signatures, on every
 * kind of tampering, and on the non-canonical encodings strict RFC 8032 refuses.
 */
import fc from 'fast-check';
import { base64urlnopad } from '@scure/base';
import { verifySpecSignatureFast } from '../../common/spec-signature';
import { generateKeyPair, verifySpecSignature } from '../../jobspec/signing';
import { makeSignedSpec } from '../jobspec/fixtures';

const keys = [generateKeyPair(), generateKeyPair()];
/** The group order L, little-endian, as Ed25519 encodes S. */
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

function withS(signature: string, f: (s: bigint) => bigint): string {
  const bytes = base64urlnopad.decode(signature);
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(bytes[i]!);
  s = f(s);
  const out = Uint8Array.from(bytes);
  for (let i = 32; i < 64; i++) {
    out[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return base64urlnopad.encode(out);
}

test('valid specs verify on both paths', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.string({ maxLength: 40 }), fc.constantFrom(0, 1), (steps, name, k) => {
      const spec = makeSignedSpec({ objective: { max_steps: steps }, base_model: { name: name || 'x' } }, keys[k]);
      expect(verifySpecSignatureFast(spec)).toEqual({ ok: true });
      expect(verifySpecSignature(spec)).toEqual({ ok: true });
    }),
    { numRuns: 50 },
  );
});

test('tampered specs and signatures are refused by both, with the same reason', () => {
  const spec = makeSignedSpec({}, keys[0]);
  const sigBytes = base64urlnopad.decode(spec.signature_ed25519);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 0, max: 7 }), (byte, bit) => {
      const flipped = Uint8Array.from(sigBytes);
      flipped[byte]! ^= 1 << bit;
      const bad = { ...spec, signature_ed25519: base64urlnopad.encode(flipped) };
      expect(verifySpecSignatureFast(bad)).toEqual(verifySpecSignature(bad));
      expect(verifySpecSignatureFast(bad).ok).toBe(false);
    }),
    { numRuns: 200 },
  );
  const cases = [
    { ...spec, created_at: spec.created_at + 1 },
    { ...spec, owner_did: keys[1]!.did },
    { ...spec, signature_ed25519: withS(spec.signature_ed25519, (s) => s + L) }, // non-canonical S
    { ...spec, signature_ed25519: spec.signature_ed25519.slice(0, -2) },
    { ...spec, signature_ed25519: 'A'.repeat(86) },
    { ...spec, signature_ed25519: 42 },
    { ...spec, owner_did: 'did:key:nope' },
    null,
    [],
  ];
  for (const c of cases) {
    expect(verifySpecSignatureFast(c)).toEqual(verifySpecSignature(c));
    expect(verifySpecSignatureFast(c).ok).toBe(false);
  }
});
