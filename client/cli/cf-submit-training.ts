#!/usr/bin/env node
/**
 * cf-submit-training: fills job_id, created_at and owner_did when absent, signs the spec with the owner's key,
 * submits it to the API and, with --watch, follows it to the end (exit 0 only for COMPLETED).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { signSpec } from '../../jobspec/signing';
import { submitResponseSchema } from '../api/schemas';
import { CliError, EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';
import { parseAnswer } from './shared/api-client';
import { defaultKeyFile, readKeyFile } from './shared/key-file';
import { watchJob } from './shared/job-status';

export const spec: CommandSpec = {
  name: 'cf-submit-training',
  summary: 'sign a training job spec and submit it to the orchestrator',
  args: '<spec.json | -> [--key FILE] [--watch]',
  positionals: { min: 1, max: 1 },
  usesApi: true,
  options: {
    key: { type: 'string', short: 'k', value: 'FILE', description: 'owner key from cf-keygen: signs the spec and the request (default $FORGE_HOME/keys/owner.json)' },
    watch: { type: 'boolean', short: 'w', description: 'follow the job: transitions, a progress bar of steps and loss, the final state' },
  },
  details:
    'job_id (a new UUID), created_at (now) and owner_did (the key\'s did) are filled in when absent, then the spec is\n' +
    'signed. A spec that is already signed and complete is sent as it is unless --key is given. Submitting the same\n' +
    'signed spec again is safe: the API answers with the existing job.',
  exitCodes: [EXIT.OK, EXIT.JOB_NOT_COMPLETED, EXIT.USAGE, EXIT.UNAVAILABLE, EXIT.REFUSED, EXIT.CONFLICT],
};

function readSpec(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new CliError(EXIT.USAGE, `cannot read ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CliError(EXIT.USAGE, `${file} is not JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new CliError(EXIT.USAGE, `${file}: a spec is a JSON object`);
  return json as Record<string, unknown>;
}

/** The spec to send: as given when complete and signed (and no --key), else filled in and signed. */
function prepare(raw: Record<string, unknown>, keyFlag: string | undefined): Record<string, unknown> {
  const complete = ['job_id', 'created_at', 'owner_did', 'signature_ed25519'].every((k) => raw[k] !== undefined);
  if (complete && keyFlag === undefined) return raw;
  const keys = readKeyFile(keyFlag ?? defaultKeyFile());
  if (raw.owner_did !== undefined && raw.owner_did !== keys.did) {
    throw new CliError(EXIT.USAGE, `the spec's owner_did ${String(raw.owner_did)} is not the key's ${keys.did}; remove owner_did or use that owner's key`);
  }
  const { signature_ed25519: _old, ...unsigned } = raw;
  return signSpec(
    {
      ...unsigned,
      job_id: unsigned.job_id ?? randomUUID(),
      created_at: unsigned.created_at ?? Math.floor(Date.now() / 1000),
      owner_did: keys.did,
    },
    keys.secretKey,
  );
}

if (require.main === module) {
  void runCli(spec, async ({ values, positionals, out, api }) => {
    const signed = prepare(readSpec(positionals[0]!), typeof values.key === 'string' ? values.key : undefined);
    const res = await api().expect('POST', '/jobs', [200, 201], signed);
    const answer = parseAnswer(submitResponseSchema, res.body, 'submission answer');
    const created = res.status === 201;
    if (out.json) out.data({ event: 'submitted', created, ...answer });
    else {
      out.line(`${created ? 'submitted' : 'already submitted'}: job ${answer.job_id}`);
      out.line(`  status: ${answer.status_url}`);
      if (answer.web_ui_url) out.line(`  web UI: ${answer.web_ui_url}`);
    }
    if (!values.watch) return EXIT.OK;
    const final = await watchJob(api(), answer.job_id, out);
    return final.state === 'COMPLETED' ? EXIT.OK : EXIT.JOB_NOT_COMPLETED;
  });
}
