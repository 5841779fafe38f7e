#!/usr/bin/env node
/** cf-check-training: a job's status as a readable table (or JSON); --watch follows it to the end. */
import { EXIT, fetchStatus, jobIdArg, runCli, statusTable, watchJob, type CommandSpec } from './shared';

export const spec: CommandSpec = {
  name: 'cf-check-training',
  summary: "show a training job's status",
  args: '<job_id> [--watch]',
  positionals: { min: 1, max: 1 },
  usesApi: true,
  options: {
    watch: { type: 'boolean', short: 'w', description: 'follow the job until it ends (exit 0 only for COMPLETED)' },
  },
  exitCodes: [EXIT.OK, EXIT.JOB_NOT_COMPLETED, EXIT.USAGE, EXIT.UNAVAILABLE, EXIT.NOT_FOUND],
};

if (require.main === module) {
  void runCli(spec, async ({ values, positionals, out, api }) => {
    const jobId = jobIdArg(positionals[0]);
    if (values.watch) {
      const final = await watchJob(api(), jobId, out);
      return final.state === 'COMPLETED' ? EXIT.OK : EXIT.JOB_NOT_COMPLETED;
    }
    const status = await fetchStatus(api(), jobId);
    if (out.json) out.data(status);
    else out.line(statusTable(status));
    return EXIT.OK;
  });
}
