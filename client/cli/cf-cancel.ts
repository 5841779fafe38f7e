#!/usr/bin/env node
/** cf-cancel: cancels a job with the owner's signed request ({action, job_id, issued_at}, Ed25519). */
import { signCancelRequest } from '../../jobspec/signing';
import { cancelResponseSchema } from '../api/schemas';
import { EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';
import { jobIdArg, parseAnswer } from './shared/api-client';
import { defaultKeyFile, readKeyFile } from './shared/key-file';

export const spec: CommandSpec = {
  name: 'cf-cancel',
  summary: 'cancel a training job (signed by its owner)',
  args: '<job_id> --key FILE',
  positionals: { min: 1, max: 1 },
  usesApi: true,
  options: {
    key: { type: 'string', short: 'k', value: 'FILE', description: "the job owner's key: signs the cancel and the request (default $FORGE_HOME/keys/owner.json)" },
  },
  details: 'The job stops, its deployments are closed, and it ends CANCELLED; follow it with cf-check-training <job_id> --watch.',
  exitCodes: [EXIT.OK, EXIT.USAGE, EXIT.UNAVAILABLE, EXIT.NOT_FOUND, EXIT.REFUSED, EXIT.CONFLICT],
};

if (require.main === module) {
  void runCli(spec, async ({ values, positionals, out, api }) => {
    const jobId = jobIdArg(positionals[0]);
    const keys = readKeyFile(typeof values.key === 'string' ? values.key : defaultKeyFile());
    const request = signCancelRequest(jobId, Math.floor(Date.now() / 1000), keys.secretKey);
    const res = await api().expect('POST', `/jobs/${jobId}/cancel`, [202], request);
    const answer = parseAnswer(cancelResponseSchema, res.body, 'cancel answer');
    if (out.json) out.data(answer);
    else out.line(`cancel accepted: job ${jobId} is stopping (cf-check-training ${jobId} --watch)`);
    return EXIT.OK;
  });
}
