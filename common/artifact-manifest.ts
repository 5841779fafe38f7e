/**
 * The signed artifact manifest of a job (DESIGN.md §8: sha256 and size of every file, spec hash, backend, attempt,
 * signed by the orchestrator's key). The API serves files only by the names listed here, and cf-fetch-artifacts
 * refuses anything that does not match it. Proposed shape until the results issue writes real manifests.
 */
import { z } from 'zod';
import { isEd25519DidKey, publicKeyFromDidKey } from '../spec/did-key';
import { relativePathProblem } from '../spec/git-names';
import { specSigningPayload, verifyBytes } from '../spec/signing';

export const ARTIFACT_MANIFEST_VERSION = 'forge-artifacts-v1';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex sha256');

/** A file path inside the job's output: relative, "/"-separated, unable to climb out of the destination. */
const artifactPath = z
  .string()
  .max(1024)
  .superRefine((value, ctx) => {
    const problem = relativePathProblem(value) ?? (value.split('/').some((s) => s === '' || s === '.') ? 'must not contain empty or "." segments' : undefined);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });

export const artifactFileSchema = z.strictObject({
  path: artifactPath,
  sha256: sha256Hex,
  size: z.int().min(0),
});
export type ArtifactFile = z.infer<typeof artifactFileSchema>;

export const artifactManifestSchema = z
  .strictObject({
    version: z.literal(ARTIFACT_MANIFEST_VERSION),
    job_id: z.string().min(1),
    spec_sha256: sha256Hex,
    backend: z.string().min(1),
    attempt: z.int().min(1),
    files: z.array(artifactFileSchema),
    signer_did: z.string().refine(isEd25519DidKey, 'must be an Ed25519 did:key'),
    signature_ed25519: z.string().regex(/^[A-Za-z0-9_-]+$/, 'must be base64url'),
  })
  .superRefine((m, ctx) => {
    const seen = new Set<string>();
    m.files.forEach((f, i) => {
      if (seen.has(f.path)) ctx.addIssue({ code: 'custom', message: `duplicate path "${f.path}"`, path: ['files', i, 'path'], input: f.path });
      seen.add(f.path);
    });
  });
export type ArtifactManifest = z.infer<typeof artifactManifestSchema>;

export type ManifestCheck = { ok: true; manifest: ArtifactManifest } | { ok: false; reason: string };

/** Schema, signer and Ed25519 signature (over the RFC 8785 canonical JSON without signature_ed25519). */
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
