/**
 * A JSON document signed as a file pair, as the orchestrator stores its manifests (artifacts, the elite registry):
 * `<name>.json` holds the RFC 8785 canonical JSON of the document and `<name>.sig` the base64url Ed25519 signature
 * over exactly those bytes. Anyone can check it with any Ed25519 library and the signer's did:key; nothing needs
 * re-serializing. Because the bytes are canonical, `{...document, signature_ed25519}` verifies as a signed object too.
 */
import { canonicalize } from '../jobspec/canonical-json';
import { publicKeyFromDidKey } from '../jobspec/did-key';
import { signBytes, verifyBytes } from '../jobspec/signing';

const encoder = new TextEncoder();

export interface SignedJsonFiles {
  json: string;
  /** The signature, as written to the .sig file (with a trailing newline). */
  sig: string;
  signature: string;
}

export function signCanonicalJson(document: unknown, secretKey: Uint8Array): SignedJsonFiles {
  const json = canonicalize(document);
  const signature = signBytes(encoder.encode(json), secretKey);
  return { json, sig: `${signature}\n`, signature };
}

export type ParsedSignedJson = { ok: true; value: Record<string, unknown>; signature: string } | { ok: false; reason: string };

/** Checks the form (a canonical JSON object, a base64url signature); not the signature itself. */
export function parseSignedJson(json: string, sig: string, name: string): ParsedSignedJson {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return { ok: false, reason: `${name}.json is not JSON` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: `${name}.json must hold a JSON object` };
  if (canonicalize(value) !== json) return { ok: false, reason: `${name}.json is not in canonical (RFC 8785) form` };
  const signature = sig.trim();
  if (!/^[A-Za-z0-9_-]+$/.test(signature)) return { ok: false, reason: `${name}.sig is not a base64url signature` };
  return { ok: true, value: value as Record<string, unknown>, signature };
}

/** Form and signature by `did`. */
export function verifySignedJson(json: string, sig: string, did: string, name: string): ParsedSignedJson {
  const parsed = parseSignedJson(json, sig, name);
  if (!parsed.ok) return parsed;
  let key: Uint8Array;
  try {
    key = publicKeyFromDidKey(did);
  } catch (err) {
    return { ok: false, reason: `signer ${did}: ${(err as Error).message}` };
  }
  if (!verifyBytes(parsed.signature, encoder.encode(json), key)) return { ok: false, reason: `${name}.sig does not verify against ${did}` };
  return parsed;
}
