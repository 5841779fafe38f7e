#!/usr/bin/env node
/**
 * cf-fetch-artifacts: downloads a job's artifacts and keeps them only if the manifest's signature verifies against
 * the orchestrator's did and every file's size and sha256 match it. Everything lands in a staging folder first and
 * is moved into --dest only when all of it verified, so a refused fetch leaves nothing half-trusted behind.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { MANIFEST_FILE, MANIFEST_SIG_FILE, manifestFilesOf, verifyArtifactManifest } from '../../common/artifact-manifest';
import { isEd25519DidKey } from '../../spec/did-key';
import { artifactListSchema } from '../api/schemas';
import { CliError, downloadTo, EXIT, exitCodeFor, formatProblem, jobIdArg, parseAnswer, runCli, type ApiClient, type CommandSpec } from './shared';

export const spec: CommandSpec = {
  name: 'cf-fetch-artifacts',
  summary: "download a job's artifacts, verified against its signed manifest",
  args: '--job-id <id> [--dest DIR] [--orchestrator-did DID]',
  positionals: { min: 0, max: 0 },
  usesApi: true,
  options: {
    'job-id': { type: 'string', value: 'ID', description: 'the job' },
    dest: { type: 'string', short: 'd', value: 'DIR', description: 'where to put the files (default ./models/job-<id>/)' },
    'orchestrator-did': {
      type: 'string',
      value: 'DID',
      description: "the orchestrator's did:key the manifest must be signed by (default $FORGE_ORCHESTRATOR_DID, else GET /identity)",
    },
  },
  details: 'Nothing is kept unless the manifest signature, and the size and sha256 of every file, verify.',
  exitCodes: [EXIT.OK, EXIT.USAGE, EXIT.UNAVAILABLE, EXIT.NOT_FOUND, EXIT.VERIFY_FAILED],
};

const identitySchema = z.looseObject({ did: z.string() });

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
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    if (out.json) out.data({ job_id: jobId, dest, signer_did: signer, files: manifest.files });
    else out.line(`${manifest.files.length} artifact(s) of job ${jobId} verified and saved in ${dest}`);
    return EXIT.OK;
  });
}
