#!/usr/bin/env node
/** cf-check-training: a job's status as a readable table (or JSON); --watch follows it to the end, drawing its curve. */
import { curveWatcher } from './curves';
import { EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';
import { jobIdArg } from './shared/api-client';
import { fetchStatus, statusTable, watchJob } from './shared/job-status';

export const spec: CommandSpec = {
  name: 'cf-check-training',
  summary: "show a training job's status",
  args: '<job_id> [--watch]',
  positionals: { min: 1, max: 1 },
  usesApi: true,
  options: {
    watch: { type: 'boolean', short: 'w', description: 'follow the job until it ends (exit 0 only for COMPLETED), with a sparkline of its loss (reward for rl)' },
  },
  exitCodes: [EXIT.OK, EXIT.JOB_NOT_COMPLETED, EXIT.USAGE, EXIT.UNAVAILABLE, EXIT.NOT_FOUND],
};

if (require.main === module) {
  void runCli(spec, async ({ values, positionals, out, api }) => {
    const jobId = jobIdArg(positionals[0]);
    if (values.watch) {
      const client = api();
      const final = await watchJob(client, jobId, out, curveWatcher(client, jobId, out));
      return final.state === 'COMPLETED' ? EXIT.OK : EXIT.JOB_NOT_COMPLETED;
    }
    const status = await fetchStatus(api(), jobId);
    if (out.json) out.data(status);
    else out.line(statusTable(status));
    return EXIT.OK;
  });
}
