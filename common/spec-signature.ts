/**
 * Spec signatures on hot paths (POST /jobs, the validateSpec activity), checked first with Node's native Ed25519 (OpenSSL: about 5× faster than
 * @noble/ed25519 on our hosts, and the signature check was half of POST /jobs' CPU). Only a "valid" is taken from
 * it: any "invalid" is confirmed, and worded, by jobspec/signing — the check the workflow itself runs — so the API never
 * refuses a spec the workflow would accept. Both are strict RFC 8032 (canonical S and R, cofactorless), and owner
 * keys reaching here already passed jobspec/did-key's canonical, non-small-order check.
 */
import { createPublicKey, verify as nativeVerify } from 'node:crypto';
import { base64urlnopad } from '@scure/base';
import { publicKeyFromDidKey } from '../jobspec/did-key';
import { specSigningPayload, verifySpecSignature, type VerifyResult } from '../jobspec/signing';

/** DER SubjectPublicKeyInfo header of an Ed25519 key (RFC 8410); the 32 key bytes follow. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function nativeValid(raw: Record<string, unknown>): boolean {
  const { owner_did: did, signature_ed25519: signature } = raw;
  if (typeof did !== 'string' || typeof signature !== 'string') return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKeyFromDidKey(did)]), format: 'der', type: 'spki' });
    return nativeVerify(null, specSigningPayload(raw), key, base64urlnopad.decode(signature));
  } catch {
    return false;
  }
}

export function verifySpecSignatureFast(raw: unknown): VerifyResult {
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw) && nativeValid(raw as Record<string, unknown>)) return { ok: true };
  return verifySpecSignature(raw);
}
