/**
 * DSSE (Dead Simple Signing Envelope, v1) with the orchestrator's Ed25519 key: the envelope of the provenance
 * statement committed next to a model. The signature covers PAE(payloadType, payload); `keyid` is the orchestrator's
 * did:key, whose multibase part is the public key, so anyone can check the envelope with any Ed25519 library.
 */
import { z } from 'zod';
import { publicKeyFromDidKey } from '../jobspec/did-key';
import { signBytes, verifyBytes, type KeyPair } from '../jobspec/signing';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

/** DSSE's pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body (lengths in bytes). */
export function dssePae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

export const dsseEnvelopeSchema = z.object({
  payloadType: z.string(),
  payload: z.string(),
  signatures: z.array(z.object({ keyid: z.string(), sig: z.string() })).min(1),
});
export type DsseEnvelope = z.infer<typeof dsseEnvelopeSchema>;

/** An envelope over `statement` (its JSON), signed by `key` (keyid: its did). */
export function signDsse(statement: unknown, key: KeyPair, payloadType = IN_TOTO_PAYLOAD_TYPE): DsseEnvelope {
  const payload = Buffer.from(JSON.stringify(statement), 'utf8');
  const sig = Buffer.from(signBytes(dssePae(payloadType, payload), key.secretKey), 'base64url').toString('base64');
  return { payloadType, payload: payload.toString('base64'), signatures: [{ keyid: key.did, sig }] };
}

/** The statement of an envelope signed by `did`, or why not. */
export function verifyDsse(raw: unknown, did: string): { ok: true; statement: unknown } | { ok: false; reason: string } {
  const env = dsseEnvelopeSchema.safeParse(raw);
  if (!env.success) return { ok: false, reason: 'not a DSSE envelope (payloadType, payload, signatures)' };
  const payload = Buffer.from(env.data.payload, 'base64');
  const pae = dssePae(env.data.payloadType, payload);
  const publicKey = publicKeyFromDidKey(did);
  const good = env.data.signatures.some((s) => s.keyid === did && verifyBytes(Buffer.from(s.sig, 'base64').toString('base64url'), pae, publicKey));
  if (!good) return { ok: false, reason: `no signature of ${did} verifies` };
  try {
    return { ok: true, statement: JSON.parse(payload.toString('utf8')) as unknown };
  } catch {
    return { ok: false, reason: 'the signed payload is not JSON' };
  }
}
