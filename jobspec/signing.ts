/**
 * Ed25519 signatures over RFC 8785 canonical JSON (docs/architecture.md §9): job specs and owners' signed actions.
 * Synchronous only: the Temporal workflow sandbox verifies cancel requests and has no WebCrypto.
 */
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { base64urlnopad } from '@scure/base';
import { canonicalize } from './canonical-json';
import { didKeyFromPublicKey, publicKeyFromDidKey } from './did-key';

ed.hashes.sha512 = sha512;

/** RFC 8032 strict verification: ZIP-215 would accept non-canonical encodings, i.e. several signature strings
 * (hence several spec hashes) for one signed spec. */
const VERIFY_OPTS = { zip215: false } as const;
const SIGNATURE_FIELD = 'signature_ed25519';
const encoder = new TextEncoder();

export type VerifyResult = { ok: true } | { ok: false; reason: string };

export interface KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  did: string;
}

export function generateKeyPair(): KeyPair {
  const secretKey = ed.utils.randomSecretKey();
  const publicKey = ed.getPublicKey(secretKey);
  return { secretKey, publicKey, did: didKeyFromPublicKey(publicKey) };
}

export function publicKeyFromSecretKey(secretKey: Uint8Array): Uint8Array {
  return ed.getPublicKey(secretKey);
}

export function signBytes(bytes: Uint8Array, secretKey: Uint8Array): string {
  return base64urlnopad.encode(ed.sign(bytes, secretKey));
}

/** Never throws: any malformed signature, key or message is simply "not verified". */
export function verifyBytes(signatureB64url: string, bytes: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return ed.verify(base64urlnopad.decode(signatureB64url), bytes, publicKey, VERIFY_OPTS);
  } catch {
    return false;
  }
}

/** The signed bytes of a signed JSON object: its canonical JSON without the signature field. */
function signingPayload(signed: Record<string, unknown>): Uint8Array {
  const { [SIGNATURE_FIELD]: _ignored, ...unsigned } = signed;
  return encoder.encode(canonicalize(unsigned));
}

export function specSigningPayload(spec: Record<string, unknown>): Uint8Array {
  return signingPayload(spec);
}

export function signSpec<T extends Record<string, unknown>>(
  unsignedSpec: T,
  secretKey: Uint8Array,
): T & { signature_ed25519: string } {
  return { ...unsignedSpec, [SIGNATURE_FIELD]: signBytes(specSigningPayload(unsignedSpec), secretKey) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks `signature` of `signed` against `did`; reasons name the field at fault. */
function verifyWithDid(signed: Record<string, unknown>, didField: string, did: unknown): VerifyResult {
  if (typeof did !== 'string') return { ok: false, reason: `${didField}: missing or not a string` };
  let publicKey: Uint8Array;
  try {
    publicKey = publicKeyFromDidKey(did);
  } catch (err) {
    return { ok: false, reason: `${didField}: ${(err as Error).message}` };
  }
  const signature = signed[SIGNATURE_FIELD];
  if (typeof signature !== 'string' || signature === '') {
    return { ok: false, reason: `${SIGNATURE_FIELD}: missing or not a string` };
  }
  let payload: Uint8Array;
  try {
    payload = signingPayload(signed);
  } catch (err) {
    return { ok: false, reason: `(root): ${(err as Error).message}` };
  }
  if (!verifyBytes(signature, payload, publicKey)) {
    return { ok: false, reason: `${SIGNATURE_FIELD}: signature does not match ${didField}` };
  }
  return { ok: true };
}

export function verifySpecSignature(rawSpec: unknown): VerifyResult {
  if (!isRecord(rawSpec)) return { ok: false, reason: '(root): spec must be a JSON object' };
  return verifyWithDid(rawSpec, 'owner_did', rawSpec.owner_did);
}

// ---- Owners' signed actions (cancel now; later issues add more) ----

/** The fields every signed action carries; an action may add its own (all of them are signed). */
export interface ActionBody {
  action: string;
  job_id: string;
  issued_at: number;
}

export type SignedAction<T extends ActionBody = ActionBody> = T & { signature_ed25519: string };

export const DEFAULT_ACTION_MAX_AGE_SECONDS = 300;

export function signAction<T extends ActionBody>(body: T, secretKey: Uint8Array): SignedAction<T> {
  const { [SIGNATURE_FIELD]: _ignored, ...unsigned } = body as T & { signature_ed25519?: unknown };
  return { ...body, [SIGNATURE_FIELD]: signBytes(encoder.encode(canonicalize(unsigned)), secretKey) };
}

export interface ActionExpectation {
  action: string;
  jobId: string;
  ownerDid: string;
  nowSeconds: number;
  /** How far issued_at may lie from nowSeconds, either way (default 300 s). */
  maxAgeSeconds?: number;
  /** Fields this action adds to action/job_id/issued_at; any other field is refused. */
  extraFields?: readonly string[];
}

const ACTION_FIELDS = ['action', 'job_id', 'issued_at', SIGNATURE_FIELD] as const;

export function verifyAction(req: unknown, expected: ActionExpectation): VerifyResult {
  if (!isRecord(req)) return { ok: false, reason: '(root): request must be a JSON object' };
  const allowed = new Set<string>([...ACTION_FIELDS, ...(expected.extraFields ?? [])]);
  const unknown = Object.keys(req).find((key) => !allowed.has(key));
  if (unknown !== undefined) return { ok: false, reason: `${unknown}: unknown field` };
  if (req.action !== expected.action) return { ok: false, reason: `action: must be "${expected.action}"` };
  if (typeof req.job_id !== 'string') return { ok: false, reason: 'job_id: missing or not a string' };
  if (req.job_id !== expected.jobId) return { ok: false, reason: `job_id: request is for another job (${req.job_id})` };
  const issuedAt = req.issued_at;
  if (typeof issuedAt !== 'number' || !Number.isSafeInteger(issuedAt) || issuedAt < 0) {
    return { ok: false, reason: 'issued_at: must be Unix seconds (a non-negative integer)' };
  }
  const maxAge = expected.maxAgeSeconds ?? DEFAULT_ACTION_MAX_AGE_SECONDS;
  if (expected.nowSeconds - issuedAt > maxAge) {
    return { ok: false, reason: `issued_at: request is stale (older than ${maxAge} s)` };
  }
  if (issuedAt - expected.nowSeconds > maxAge) {
    return { ok: false, reason: `issued_at: request is more than ${maxAge} s in the future` };
  }
  // The signer must be the job's owner: verify against the expected did, not one the request could carry.
  return verifyWithDid(req, 'owner_did', expected.ownerDid);
}

export interface CancelRequest {
  job_id: string;
  action: 'cancel';
  issued_at: number;
  signature_ed25519: string;
}

export function signCancelRequest(jobId: string, issuedAt: number, secretKey: Uint8Array): CancelRequest {
  return signAction({ action: 'cancel' as const, job_id: jobId, issued_at: issuedAt }, secretKey);
}

export function verifyCancelRequest(
  req: unknown,
  expected: { jobId: string; ownerDid: string; nowSeconds: number; maxAgeSeconds?: number },
): VerifyResult {
  return verifyAction(req, { ...expected, action: 'cancel' });
}
