#!/usr/bin/env node
/**
 * cf-fetch-artifacts: downloads a job's artifacts and keeps them only if the manifest's signature verifies against
 * the orchestrator's did and every file's size and sha256 match it. Everything lands in a staging folder first and
 * is moved into --dest only when all of it verified, so a refused fetch leaves nothing half-trusted behind.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { MANIFEST_FILE, MANIFEST_SIG_FILE, manifestFilesOf, verifyArtifactManifest, type ArtifactManifest } from '../../common/artifact-manifest';
import { verifyDsse } from '../../common/dsse';
import { MODEL_SIG_FILE, verifyModelSignature } from '../../common/model-signing';
import { PROVENANCE_FILE } from '../../common/provenance';
import { isEd25519DidKey } from '../../jobspec/did-key';
import { artifactListSchema } from '../api/schemas';
import { CliError, EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';
import { exitCodeFor, formatProblem, jobIdArg, parseAnswer, type ApiClient } from './shared/api-client';
import { downloadTo } from './shared/download';

export const spec: CommandSpec = {
  name: 'cf-fetch-artifacts',
  summary: "download a job's artifacts, verified against its signed manifest",
  args: '--job-id <id> [--dest DIR] [--orchestrator-did DID]',
  positionals: { min: 0, max: 0 },
  usesApi: true,
  options: {
    'job-id': { type: 'string', value: 'ID', description: 'the job' },
    dest: { type: 'string', short: 'd', value: 'DIR', description: 'where to put the files (default ./models/job-<id>/)' },
    'model-signing-key': {
      type: 'string',
      value: 'PEM',
      description: "file with the P-256 public key model.sig must verify under (default GET /identity's model_signing_public_key_pem)",
    },
    'orchestrator-did': {
      type: 'string',
      value: 'DID',
      description: "the orchestrator's did:key the manifest must be signed by (default $FORGE_ORCHESTRATOR_DID, else GET /identity)",
    },
  },
  details:
    'Nothing is kept unless the manifest signature, and the size and sha256 of every file, verify; so do model.sig (OpenSSF Model Signing) and provenance.intoto.json (DSSE) when the commit has them.',
  exitCodes: [EXIT.OK, EXIT.USAGE, EXIT.UNAVAILABLE, EXIT.NOT_FOUND, EXIT.VERIFY_FAILED],
};

const identitySchema = z.looseObject({ did: z.string(), model_signing_public_key_pem: z.string().optional() });

const sha256Text = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

/** A signature file served next to the artifacts, or null when the commit has none (made before models carried one). */
async function signatureFile(api: ApiClient, jobId: string, name: string): Promise<string | null> {
  const res = await api.fetch('GET', `/jobs/${jobId}/artifacts/${encodeURIComponent(name)}`);
  if (res.status === 404) return null;
  if (res.status !== 200) throw new CliError(exitCodeFor(res.status), `${name}: ${formatProblem(res.status, await res.json().catch(() => undefined))}`);
  return res.text();
}

/** The P-256 key model.sig must verify under: the flag's file, else what GET /identity publishes. */
async function modelSigningKey(api: ApiClient, flag: string | undefined): Promise<string | undefined> {
  if (flag) return readFileSync(flag, 'utf8');
  const res = await api.request('GET', '/identity');
  const id = res.status === 200 ? identitySchema.safeParse(res.body) : undefined;
  return id?.success ? id.data.model_signing_public_key_pem : undefined;
}

/**
 * model.sig and provenance.intoto.json against the verified manifest: the model signature must list exactly the
 * manifest's files plus manifest.json, manifest.sig and the provenance, with their sha256; the provenance must be
 * signed by the orchestrator and name the manifest's files. Returns the files to write next to the artifacts.
 */
async function checkSignatures(
  api: ApiClient,
  jobId: string,
  manifest: ArtifactManifest,
  signer: string,
  keyFlag: string | undefined,
): Promise<Record<string, string>> {
  const modelSig = await signatureFile(api, jobId, MODEL_SIG_FILE);
  const provenance = await signatureFile(api, jobId, PROVENANCE_FILE);
  if (modelSig === null || provenance === null) return {};
  let envelope: unknown;
  try {
    envelope = JSON.parse(provenance);
  } catch {
    throw new CliError(EXIT.VERIFY_FAILED, `refusing job ${jobId}: ${PROVENANCE_FILE} is not JSON`);
  }
  const dsse = verifyDsse(envelope, signer);
  if (!dsse.ok) throw new CliError(EXIT.VERIFY_FAILED, `refusing job ${jobId}: ${PROVENANCE_FILE}: ${dsse.reason}`);
  const subjects = z.object({ subject: z.array(z.object({ name: z.string(), digest: z.object({ sha256: z.string() }) })) }).safeParse(dsse.statement);
  const named = new Map(subjects.success ? subjects.data.subject.map((s) => [s.name, s.digest.sha256]) : []);
  if (named.size !== manifest.files.length || manifest.files.some((f) => named.get(f.path) !== f.sha256)) {
    throw new CliError(EXIT.VERIFY_FAILED, `refusing job ${jobId}: ${PROVENANCE_FILE} does not name the manifest's files`);
  }
  const pem = await modelSigningKey(api, keyFlag);
  if (!pem)
    throw new CliError(
      EXIT.VERIFY_FAILED,
      `refusing job ${jobId}: no model signing key to check ${MODEL_SIG_FILE} with; pass --model-signing-key PEM`,
    );
  const check = verifyModelSignature(modelSig, pem);
  if (!check.ok) throw new CliError(EXIT.VERIFY_FAILED, `refusing job ${jobId}: ${check.reason}`);
  const signed = manifestFilesOf(manifest);
  const expected = new Map([
    ...manifest.files.map((f): [string, string] => [f.path, f.sha256]),
    [MANIFEST_FILE, sha256Text(signed.json)],
    [MANIFEST_SIG_FILE, sha256Text(signed.sig)],
    [PROVENANCE_FILE, sha256Text(provenance)],
  ]);
  if (check.files.length !== expected.size || check.files.some((f) => expected.get(f.path) !== f.sha256)) {
    throw new CliError(
      EXIT.VERIFY_FAILED,
      `refusing job ${jobId}: ${MODEL_SIG_FILE} does not sign exactly the manifest's files, the manifest and the provenance`,
    );
  }
  return { [MODEL_SIG_FILE]: modelSig, [PROVENANCE_FILE]: provenance };
}

/** Whom the manifest must be signed by: the flag, the environment, or what the API says it is. */
async function orchestratorDid(api: ApiClient, flag: string | undefined): Promise<string> {
  const given = flag ?? process.env.FORGE_ORCHESTRATOR_DID;
  if (given) {
    if (!isEd25519DidKey(given)) throw new CliError(EXIT.USAGE, `--orchestrator-did: not an Ed25519 did:key: ${given}`);
    return given;
  }
  const res = await api.request('GET', '/identity');
  const id = res.status === 200 ? identitySchema.safeParse(res.body) : undefined;
  if (!id?.success || !isEd25519DidKey(id.data.did)) {
    throw new CliError(EXIT.VERIFY_FAILED, "refusing: cannot learn the orchestrator's identity from the API; pass --orchestrator-did (or set FORGE_ORCHESTRATOR_DID)");
  }
  return id.data.did;
}

if (require.main === module) {
  void runCli(spec, async ({ values, out, api }) => {
    const jobId = jobIdArg(typeof values['job-id'] === 'string' ? values['job-id'] : undefined, '--job-id');
    const dest = path.resolve(typeof values.dest === 'string' ? values.dest : path.join('models', `job-${jobId}`));
    const listing = parseAnswer(artifactListSchema, (await api().expect('GET', `/jobs/${jobId}/artifacts`, [200])).body, 'artifact list');
    if (!listing.manifest) {
      throw new CliError(EXIT.NOT_FOUND, `job ${jobId} has no artifacts yet (they are collected when training completes; see cf-check-training ${jobId})`);
    }
    const signer = await orchestratorDid(api(), typeof values['orchestrator-did'] === 'string' ? values['orchestrator-did'] : undefined);
    const check = verifyArtifactManifest(listing.manifest, signer);
    if (!check.ok) throw new CliError(EXIT.VERIFY_FAILED, `refusing job ${jobId}: ${check.reason}`);
    const manifest = check.manifest;
    if (manifest.job_id !== jobId) throw new CliError(EXIT.VERIFY_FAILED, `refusing: the manifest is for job ${manifest.job_id}, not ${jobId}`);
    const signatures = await checkSignatures(api(), jobId, manifest, signer, typeof values['model-signing-key'] === 'string' ? values['model-signing-key'] : undefined);

    const staging = path.join(dest, `.incoming-${process.pid}`);
    rmSync(staging, { recursive: true, force: true });
    try {
      for (const file of manifest.files) {
        // Manifest paths are checked relative paths (schema); resolve anyway and refuse anything outside.
        const target = path.resolve(staging, file.path);
        if (!target.startsWith(staging + path.sep)) throw new CliError(EXIT.VERIFY_FAILED, `refusing: ${file.path} would land outside ${dest}`);
        const res = await api().fetch('GET', `/jobs/${jobId}/artifacts/${encodeURIComponent(file.path)}`);
        if (res.status !== 200) {
          const body: unknown = await res.json().catch(() => undefined);
          throw new CliError(exitCodeFor(res.status), `${file.path}: ${formatProblem(res.status, body)}`);
        }
        const got = await downloadTo(res, target);
        if (got.size !== file.size || got.sha256 !== file.sha256) {
          throw new CliError(
            EXIT.VERIFY_FAILED,
            `refusing ${file.path}: got ${got.size} bytes with sha256 ${got.sha256}, the signed manifest says ${file.size} bytes with sha256 ${file.sha256}`,
          );
        }
        if (!out.json) out.note(`verified ${file.path} (${file.size} bytes)`);
      }
      // Everything verified: move it into place, the signed manifest beside it as in the output repo (manifest.json
      // holds the exact signed bytes, manifest.sig the signature), so the folder can be checked again offline.
      for (const file of manifest.files) {
        const final = path.join(dest, file.path);
        mkdirSync(path.dirname(final), { recursive: true });
        renameSync(path.join(staging, file.path), final);
      }
      const signed = manifestFilesOf(manifest);
      writeFileSync(path.join(dest, MANIFEST_FILE), signed.json);
      writeFileSync(path.join(dest, MANIFEST_SIG_FILE), signed.sig);
      // With model.sig beside them the folder checks with `model_signing verify key` too.
      for (const [name, text] of Object.entries(signatures)) writeFileSync(path.join(dest, name), text);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    if (out.json) out.data({ job_id: jobId, dest, signer_did: signer, files: manifest.files, signatures: Object.keys(signatures) });
    else out.line(`${manifest.files.length} artifact(s) of job ${jobId} verified and saved in ${dest}`);
    return EXIT.OK;
  });
}
