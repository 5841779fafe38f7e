/**
 * The provenance of a committed model: `provenance.intoto.json` next to manifest.json, a DSSE envelope (signed by the
 * orchestrator's Ed25519 key, keyid its did:key) over an in-toto Statement v1 with a SLSA provenance v1 predicate:
 * the model's files (subjects, sha256), the signed spec (hash, owner, signature), the base model and its revision, the
 * data repository and the commit the trainer reported training on, the trainer image, the backend, attempt and
 * deployment, the training times and the trainer's own results (metrics.json). The eval suite's hash and the eval
 * results come later: a second statement (common/eval-provenance.ts) in the elite registry, whose entry records both
 * files' paths and sha256.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { KeyPair } from '../jobspec/signing';
import type { ArtifactManifestBody } from './artifact-manifest';
import { signDsse } from './dsse';

export const PROVENANCE_FILE = 'provenance.intoto.json';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const FORGE_BUILD_TYPE = 'urn:chrysalis-forge:build-type:training-job:v1';

/** What the trainer's metrics.json says about the run (the reference trainer writes these; others may not). */
export const trainerReportSchema = z.looseObject({
  data_commit: z.string().regex(/^[0-9a-f]{40,64}$/).optional(),
});
/** The trainer's result figures copied into the provenance (numbers only). */
const RESULT_KEYS = ['train_loss', 'initial_val_loss', 'val_loss', 'val_loss_reduction', 'tokens', 'train_examples', 'validation_examples', 'steps_this_attempt'] as const;

export interface ProvenanceInput {
  manifest: ArtifactManifestBody;
  /** sha256 of manifest.json's bytes. */
  manifestSha256: string;
  data: { repo: string; branch: string; path: string };
  trainerImage: string;
  /** The parsed metrics.json of the trainer's output, when there is one. */
  trainerReport: Record<string, unknown> | null;
}

/** The in-toto statement (SLSA provenance v1) of a committed model. */
export function provenanceStatement(p: ProvenanceInput): Record<string, unknown> {
  const m = p.manifest;
  const report = trainerReportSchema.safeParse(p.trainerReport ?? {});
  const dataCommit = report.success ? report.data.data_commit : undefined;
  const results = Object.fromEntries(RESULT_KEYS.flatMap((k) => (typeof p.trainerReport?.[k] === 'number' ? [[k, p.trainerReport[k]]] : [])));
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: m.files.map((f) => ({ name: f.path, digest: { sha256: f.sha256 } })),
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: FORGE_BUILD_TYPE,
        externalParameters: {
          spec: {
            job_id: m.job_id,
            job_type: m.job_type,
            sha256: m.spec_sha256,
            owner_did: m.owner_did,
            signature_ed25519: m.spec_signature_ed25519,
          },
          base_model: m.base_model,
          data: p.data,
          trainer_image: p.trainerImage,
        },
        internalParameters: { backend: m.backend, attempt: m.attempt, deployment_id: m.deployment_id },
        resolvedDependencies: [
          {
            name: 'data',
            uri: p.data.repo,
            ...(dataCommit ? { digest: { gitCommit: dataCommit } } : {}),
            annotations: { branch: p.data.branch, path: p.data.path },
          },
          { name: 'base_model', uri: `${m.base_model.source}:${m.base_model.name}`, annotations: { revision: m.base_model.revision } },
          { name: 'trainer', uri: p.trainerImage },
        ],
      },
      runDetails: {
        builder: { id: m.signer_did },
        metadata: {
          invocationId: `${m.job_id}/attempt-${m.attempt}/${m.deployment_id}`,
          ...(m.training.started_at ? { startedOn: m.training.started_at } : {}),
          ...(m.training.finished_at ? { finishedOn: m.training.finished_at } : {}),
        },
        byproducts: [
          { name: 'manifest.json', digest: { sha256: p.manifestSha256 } },
          { name: 'results', annotations: results },
        ],
      },
    },
  };
}

/** provenance.intoto.json's contents and their sha256 (what the registry entry records). */
export function signProvenance(p: ProvenanceInput, key: KeyPair): { text: string; sha256: string } {
  const text = `${JSON.stringify(signDsse(provenanceStatement(p), key), null, 2)}\n`;
  return { text, sha256: createHash('sha256').update(text, 'utf8').digest('hex') };
}
