/**
 * The signed artifact manifest of a job (docs/architecture.md §8), one format everywhere:
 *
 * - in the output repo (and in a folder fetched by cf-fetch-artifacts): `manifest.json`, the RFC 8785 canonical JSON
 *   of the manifest (no signature in it), and `manifest.sig`, the base64url Ed25519 signature of the orchestrator's
 *   key over the exact bytes of manifest.json;
 * - over the HTTP API: the manifest object with `signature_ed25519` added (the contents of manifest.sig). Because
 *   manifest.json is canonical, the canonical JSON of that object without its signature is exactly those bytes, so
 *   both forms verify the same signature.
 *
 * The API serves files only by the names listed here, and cf-fetch-artifacts refuses anything that does not match.
 */
import { z } from 'zod';
import { canonicalize } from '../jobspec/canonical-json';
import { isEd25519DidKey, publicKeyFromDidKey } from '../jobspec/did-key';
import { relativePathProblem } from '../jobspec/git-names';
import { specSigningPayload, verifyBytes } from '../jobspec/signing';
import { MODEL_SIG_FILE } from './model-signing';
import { PROVENANCE_FILE } from './provenance';
import { parseSignedJson, signCanonicalJson } from './signed-json';

export const ARTIFACT_MANIFEST_VERSION = 'forge-artifacts-v1';
export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_SIG_FILE = 'manifest.sig';

/** The job's folder in the output repo. */
export const jobFolder = (jobId: string): string => `models/job-${jobId}`;
/** The ref the orchestrator pushes with the commit of a job's artifacts (how a retry, or the API, finds it). */
export const jobRef = (jobId: string): string => `refs/forge/jobs/${jobId}`;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex sha256');
const base64url = z.string().regex(/^[A-Za-z0-9_-]+$/, 'must be base64url');

/** A file path inside the job's output: relative, "/"-separated, unable to climb out of the destination. */
const artifactPath = z
  .string()
  .max(1024)
  .superRefine((value, ctx) => {
    const problem =
      relativePathProblem(value) ??
      (value.split('/').some((s) => s === '' || s === '.') ? 'must not contain empty or "." segments' : undefined) ??
      (value === MANIFEST_FILE || value === MANIFEST_SIG_FILE ? 'is the manifest itself' : undefined) ??
      (value === MODEL_SIG_FILE || value === PROVENANCE_FILE ? 'is a signature the orchestrator writes' : undefined);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });

export const artifactFileSchema = z.strictObject({
  path: artifactPath,
  sha256: sha256Hex,
  size: z.int().min(0),
});
export type ArtifactFile = z.infer<typeof artifactFileSchema>;

const isoTime = z.iso.datetime({ offset: true }).nullable();

const manifestShape = {
  version: z.literal(ARTIFACT_MANIFEST_VERSION),
  job_id: z.string().min(1),
  job_type: z.string().min(1),
  owner_did: z.string().min(1),
  /** sha256 of the spec's canonical JSON, signature included (its identity everywhere in the orchestrator). */
  spec_sha256: sha256Hex,
  /** The owner's signature of the spec: with owner_did, proof of who asked for this model. */
  spec_signature_ed25519: base64url,
  base_model: z.strictObject({ name: z.string().min(1), source: z.string().min(1), revision: z.string().min(1) }),
  backend: z.string().min(1),
  attempt: z.int().min(1),
  deployment_id: z.string().min(1),
  /** Where the files were committed: the spec's output repo and branch, and the folder (models/job-<id>). */
  output: z.strictObject({ repo: z.string().min(1), branch: z.string().min(1), path: z.string().min(1) }),
  /** When the training attempt ran, as the backend reported it. */
  training: z.strictObject({ started_at: isoTime, finished_at: isoTime }),
  files: z.array(artifactFileSchema),
  signer_did: z.string().refine(isEd25519DidKey, 'must be an Ed25519 did:key'),
};

function noDuplicatePaths(m: { files: ArtifactFile[] }, ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  m.files.forEach((f, i) => {
    if (seen.has(f.path)) ctx.addIssue({ code: 'custom', message: `duplicate path "${f.path}"`, path: ['files', i, 'path'], input: f.path });
    seen.add(f.path);
  });
}

/** What manifest.json holds. */
export const artifactManifestBodySchema = z.strictObject(manifestShape).superRefine(noDuplicatePaths);
export type ArtifactManifestBody = z.infer<typeof artifactManifestBodySchema>;

/** The API's form: the manifest with its signature. */
export const artifactManifestSchema = z.strictObject({ ...manifestShape, signature_ed25519: base64url }).superRefine(noDuplicatePaths);
export type ArtifactManifest = z.infer<typeof artifactManifestSchema>;

export interface SignedManifestFiles {
  /** The exact contents of manifest.json (canonical JSON). */
  json: string;
  /** The contents of manifest.sig. */
  sig: string;
  /** The API's form. */
  signed: ArtifactManifest;
}

/** Canonical manifest.json, its signature (manifest.sig) and the API's signed form. */
export function signArtifactManifest(body: ArtifactManifestBody, secretKey: Uint8Array): SignedManifestFiles {
  const files = signCanonicalJson(artifactManifestBodySchema.parse(body), secretKey);
  return { json: files.json, sig: files.sig, signed: { ...body, signature_ed25519: files.signature } };
}

export type ManifestCheck = { ok: true; manifest: ArtifactManifest } | { ok: false; reason: string };

/** Schema, signer and Ed25519 signature of the API's form (over the canonical JSON without signature_ed25519). */
export function verifyArtifactManifest(raw: unknown, trustedSignerDid: string): ManifestCheck {
  const parsed = artifactManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    return { ok: false, reason: `manifest is malformed: ${first?.path.join('.') || '(root)'}: ${first?.message ?? 'invalid'}` };
  }
  const manifest = parsed.data;
  if (manifest.signer_did !== trustedSignerDid) {
    return { ok: false, reason: `manifest is signed by ${manifest.signer_did}, not by the orchestrator ${trustedSignerDid}` };
  }
  const payload = specSigningPayload(raw as Record<string, unknown>);
  if (!verifyBytes(manifest.signature_ed25519, payload, publicKeyFromDidKey(trustedSignerDid))) {
    return { ok: false, reason: 'manifest signature does not verify' };
  }
  return { ok: true, manifest };
}

/**
 * manifest.json + manifest.sig as stored → the API's signed form, or why not. Checks the JSON is canonical (the
 * signature covers these exact bytes); the schema and the signature are verifyArtifactManifest's job.
 */
export function readManifestFiles(json: string, sig: string): { ok: true; signed: Record<string, unknown> } | { ok: false; reason: string } {
  const parsed = parseSignedJson(json, sig, 'manifest');
  if (!parsed.ok) return parsed;
  if ('signature_ed25519' in parsed.value) return { ok: false, reason: `${MANIFEST_FILE} must not carry a signature field` };
  return { ok: true, signed: { ...parsed.value, signature_ed25519: parsed.signature } };
}

/** The two files of a signed manifest, from its API form (as cf-fetch-artifacts writes them next to the files). */
export function manifestFilesOf(signed: ArtifactManifest): { json: string; sig: string } {
  const { signature_ed25519: sig, ...body } = signed;
  return { json: canonicalize(body), sig: `${sig}\n` };
}
