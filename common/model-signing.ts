/**
 * OpenSSF Model Signing (PyPI `model-signing`, format v1.0) for a committed model folder: `model.sig`, a Sigstore
 * bundle (v0.3, public-key verification material, no transparency log) around a DSSE envelope over an in-toto
 * statement whose predicate lists every file of the folder with its sha256. The standard tool verifies it:
 *
 *   model_signing verify key models/job-<id> --signature models/job-<id>/model.sig --public_key model-signing.pub.pem
 *
 * The tool only takes ECDSA keys (P-256/384/521), while the orchestrator's identity is Ed25519, so the model signing
 * key is a P-256 key derived from the orchestrator's provisioned Ed25519 secret (HKDF-SHA256 with a label of its
 * own): every replica that holds the one identity signs with the same key, and nothing extra has to be provisioned.
 * Its public key (PEM) is served by `GET /identity` as `model_signing_public_key_pem`.
 *
 * The bundle is produced here from the file hashes the manifest already holds, exactly as the library writes it.
 */
import { createECDH, createHash, createPrivateKey, createPublicKey, hkdfSync, sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { dssePae, IN_TOTO_PAYLOAD_TYPE } from './dsse';

export const MODEL_SIG_FILE = 'model.sig';
export const MODEL_SIGNING_PREDICATE_TYPE = 'https://model_signing/signature/v1.0';
const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** What the tool leaves out of a signature by default (the signature itself and git's files); recorded in it. */
export const MODEL_SIGNING_IGNORE_PATHS = ['.gitignore', '.gitattributes', MODEL_SIG_FILE, '.git', '.github'] as const;
const HKDF_INFO = 'chrysalis-forge/model-signing/p256/v1';
/** The order of P-256's group: a derived scalar must lie in [1, n-1]. */
const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

export interface ModelSigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** SubjectPublicKeyInfo PEM: what `model_signing verify key --public_key` reads. */
  publicKeyPem: string;
}

const b64u = (b: Buffer): string => b.toString('base64url');

/** The P-256 model signing key of an orchestrator, derived from its Ed25519 secret key (deterministic). */
export function modelSigningKeyFrom(ed25519SecretKey: Uint8Array): ModelSigningKey {
  for (let counter = 0; ; counter++) {
    const d = Buffer.from(hkdfSync('sha256', ed25519SecretKey, Buffer.alloc(0), `${HKDF_INFO}/${counter}`, 32));
    const scalar = BigInt(`0x${d.toString('hex')}`);
    if (scalar === 0n || scalar >= P256_N) continue; // about 2^-32 of the time
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(d);
    const point = ecdh.getPublicKey(); // 04 || x || y
    const jwk = { kty: 'EC', crv: 'P-256', x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33, 65)) };
    const privateKey = createPrivateKey({ key: { ...jwk, d: b64u(d) }, format: 'jwk' });
    const publicKey = createPublicKey({ key: jwk, format: 'jwk' });
    return { privateKey, publicKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
  }
}

export interface SignedResource {
  /** "/"-separated path relative to the model folder. */
  path: string;
  sha256: string;
}

/** The in-toto statement the tool signs and checks: every file of the folder, sorted by name, and their root digest. */
export function modelSigningStatement(modelName: string, files: SignedResource[]): Record<string, unknown> {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const root = createHash('sha256');
  for (const f of sorted) root.update(Buffer.from(f.sha256, 'hex'));
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: modelName, digest: { sha256: root.digest('hex') } }],
    predicateType: MODEL_SIGNING_PREDICATE_TYPE,
    predicate: {
      resources: sorted.map((f) => ({ name: f.path, algorithm: 'sha256', digest: f.sha256 })),
      serialization: { allow_symlinks: false, ignore_paths: [...MODEL_SIGNING_IGNORE_PATHS], hash_type: 'sha256', method: 'files' },
    },
  };
}

/** model.sig for a folder named `modelName` holding exactly `files` (besides model.sig and git's files). */
export function signModel(modelName: string, files: SignedResource[], key: ModelSigningKey): string {
  const payload = Buffer.from(JSON.stringify(modelSigningStatement(modelName, files), null, 2), 'utf8');
  const sig = sign('sha256', dssePae(IN_TOTO_PAYLOAD_TYPE, payload), key.privateKey); // ECDSA, DER
  const bundle = {
    mediaType: BUNDLE_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: createHash('sha256').update(key.publicKeyPem).digest('hex') }, tlogEntries: [] },
    dsseEnvelope: { payload: payload.toString('base64'), payloadType: IN_TOTO_PAYLOAD_TYPE, signatures: [{ sig: sig.toString('base64'), keyid: '' }] },
  };
  return `${JSON.stringify(bundle)}\n`;
}

const bundleSchema = z.object({
  mediaType: z.literal(BUNDLE_MEDIA_TYPE),
  dsseEnvelope: z.object({
    payload: z.string(),
    payloadType: z.literal(IN_TOTO_PAYLOAD_TYPE),
    signatures: z.array(z.object({ sig: z.string() })).min(1),
  }),
});
const statementSchema = z.object({
  predicateType: z.literal(MODEL_SIGNING_PREDICATE_TYPE),
  subject: z.array(z.object({ name: z.string(), digest: z.object({ sha256: z.string() }) })).length(1),
  predicate: z.object({
    resources: z.array(z.object({ name: z.string(), algorithm: z.literal('sha256'), digest: z.string() })),
    serialization: z.object({ method: z.literal('files'), hash_type: z.literal('sha256') }),
  }),
});

/**
 * `previous` when it is a valid signature (under `publicKeyPem`) of the very statement `fresh` signs, else `fresh`.
 * ECDSA signatures differ each time they are made: a retry that finds its earlier try's model.sig keeps those bytes,
 * so the folder it lays out is byte for byte what was pushed before.
 */
export function reuseModelSignature(previous: string | undefined, fresh: string, publicKeyPem: string): string {
  if (previous === undefined || !verifyModelSignature(previous, publicKeyPem).ok) return fresh;
  const payloadOf = (text: string): string | undefined => bundleSchema.safeParse(JSON.parse(text)).data?.dsseEnvelope.payload;
  return payloadOf(previous) === payloadOf(fresh) ? previous : fresh;
}

export type ModelSignatureCheck = { ok: true; files: SignedResource[] } | { ok: false; reason: string };

/**
 * The checks `model_signing verify key` makes on model.sig, short of hashing the folder: the ECDSA signature under
 * `publicKeyPem`, the statement's type and root digest. Returns the signed files for the caller to compare.
 */
export function verifyModelSignature(modelSig: string, publicKeyPem: string): ModelSignatureCheck {
  let raw: unknown;
  try {
    raw = JSON.parse(modelSig);
  } catch {
    return { ok: false, reason: `${MODEL_SIG_FILE} is not JSON` };
  }
  const bundle = bundleSchema.safeParse(raw);
  if (!bundle.success) return { ok: false, reason: `${MODEL_SIG_FILE} is not a model signing bundle: ${bundle.error.issues[0]?.message ?? 'invalid'}` };
  const payload = Buffer.from(bundle.data.dsseEnvelope.payload, 'base64');
  const sig = Buffer.from(bundle.data.dsseEnvelope.signatures[0]!.sig, 'base64');
  let good = false;
  try {
    good = verify('sha256', dssePae(IN_TOTO_PAYLOAD_TYPE, payload), createPublicKey(publicKeyPem), sig);
  } catch {
    good = false;
  }
  if (!good) return { ok: false, reason: `${MODEL_SIG_FILE}: the signature does not verify under the orchestrator's model signing key` };
  let statement: z.infer<typeof statementSchema>;
  try {
    statement = statementSchema.parse(JSON.parse(payload.toString('utf8')));
  } catch {
    return { ok: false, reason: `${MODEL_SIG_FILE}: the signed statement is not a model signing v1.0 statement` };
  }
  const files = statement.predicate.resources.map((r) => ({ path: r.name, sha256: r.digest }));
  const root = createHash('sha256');
  for (const f of files) root.update(Buffer.from(f.sha256, 'hex'));
  if (root.digest('hex') !== statement.subject[0]!.digest.sha256) return { ok: false, reason: `${MODEL_SIG_FILE}: the root digest does not match its resources` };
  return { ok: true, files };
}
