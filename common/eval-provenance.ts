/**
 * The evaluation's provenance: a second in-toto Statement v1 (SLSA provenance v1 predicate), signed by the orchestrator
 * (DSSE, Ed25519, keyid its did:key) and committed in the elite registry as `evaluations/job-<job_id>.intoto.json` with
 * the promotion whose entries point at it (README "Verifying a model"). The model's own provenance
 * (common/provenance.ts) is signed when the model is committed, before it is evaluated; this one carries what comes
 * after: each task type's eval suite hash and results (tasks, successes, success rate, mean latency). Its subjects are
 * the model's manifest.json and provenance.intoto.json (by sha256), so the chain reads signed spec → attempt →
 * artifact hashes → eval suite and rows → signed registry entry.
 */
import { createHash } from 'node:crypto';
import type { KeyPair } from '../jobspec/signing';
import { signDsse } from './dsse';
import { SLSA_PROVENANCE_V1 } from './provenance';

export const FORGE_EVAL_BUILD_TYPE = 'urn:chrysalis-forge:build-type:evaluation:v1';

export interface EvaluatedModel {
  job_id: string;
  spec_sha256: string;
  owner_did: string;
  artifacts: { repo: string; branch: string; commit: string; path: string; manifest_sha256: string; provenance?: { path: string; sha256: string } };
  evals: { task_type: string; tasks: number; successes: number; success_rate: number; suite_sha256: string | null; mean_latency_ms: number }[];
}

export function evaluationFile(jobId: string): string {
  return `evaluations/job-${jobId}.intoto.json`;
}

export function evaluationStatement(m: EvaluatedModel, signerDid: string, finishedOn: string): Record<string, unknown> {
  const a = m.artifacts;
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [
      { name: `${a.path}/manifest.json`, digest: { sha256: a.manifest_sha256 } },
      ...(a.provenance ? [{ name: a.provenance.path, digest: { sha256: a.provenance.sha256 } }] : []),
    ],
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: FORGE_EVAL_BUILD_TYPE,
        externalParameters: {
          spec: { job_id: m.job_id, sha256: m.spec_sha256, owner_did: m.owner_did },
          eval_suites: m.evals.map((e) => ({ task_type: e.task_type, sha256: e.suite_sha256 })),
        },
        resolvedDependencies: [
          { name: 'model', uri: a.repo, digest: { gitCommit: a.commit }, annotations: { branch: a.branch, path: a.path } },
          ...m.evals.flatMap((e) => (e.suite_sha256 ? [{ name: `eval_suite:${e.task_type}`, digest: { sha256: e.suite_sha256 } }] : [])),
        ],
      },
      runDetails: {
        builder: { id: signerDid },
        metadata: { invocationId: `${m.job_id}/evaluation`, finishedOn },
        byproducts: m.evals.map((e) => ({
          name: `eval_results:${e.task_type}`,
          annotations: { tasks: e.tasks, successes: e.successes, success_rate: e.success_rate, mean_latency_ms: e.mean_latency_ms },
        })),
      },
    },
  };
}

/** The file's contents (a DSSE envelope) and its sha256 (what the registry entries record). */
export function signEvaluation(m: EvaluatedModel, key: KeyPair, finishedOn: string): { path: string; text: string; sha256: string } {
  const text = `${JSON.stringify(signDsse(evaluationStatement(m, key.did, finishedOn), key), null, 2)}\n`;
  return { path: evaluationFile(m.job_id), text, sha256: createHash('sha256').update(text, 'utf8').digest('hex') };
}
