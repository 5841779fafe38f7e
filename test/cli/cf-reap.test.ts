/**
 * cf-reap --dry-run as an operator runs it (a subprocess of dist/client/cli/cf-reap.js, with FORGE_CONFIG, FORGE_HOME
 * and TEMPORAL_ADDRESS): it lists the orphan (a local trainer whose job never existed in Temporal) with why, keeps
 * a running job's deployment, and closes nothing.
 */
import path from 'node:path';
import type { ReapReport } from '../../activities/reaper';
import { makeSignedSpec } from '../jobspec/fixtures';
import { requireBuilt, runCommand } from '../helpers/cli';
import { processAlive, startJob, waitForStatus } from '../helpers/forge';
import { useReaperForge } from '../helpers/reaper';

const reaper = useReaperForge('test-cf-reap', 'forge-cf-reap-');
const { forge, cfReap } = reaper;

beforeAll(() => requireBuilt(['shared/command', 'cf-reap']));

test('cf-reap --dry-run lists the orphan and why, keeps the running job, and closes nothing', async () => {
  const { jobId: orphanJob, ref: orphan, pid: orphanPid } = await reaper.orphanTrainer();
  const running = makeSignedSpec({ trainer: { image: 'slow' } });
  const handle = await startJob(forge.client, 'test-cf-reap', running);
  await waitForStatus(handle, (s) => s.state === 'RUNNING' && s.deployments.length > 0);
  const runningPid = await reaper.trainerPid(running.job_id);

  const json = await cfReap(['--dry-run', '--json']);
  expect(json.stderr).toBe('');
  expect(json.code).toBe(0);
  const report = JSON.parse(json.stdout) as ReapReport;
  expect(report).toMatchObject({ dryRun: true, reaped: 0, graceSeconds: 0 });
  const byJob = new Map(report.items.map((i) => [i.open.jobId, i]));
  expect(byJob.get(orphanJob)).toMatchObject({ open: { ref: { id: orphan.id } }, decision: { reap: true, reason: 'job-not-found' } });
  expect(byJob.get(running.job_id)?.decision).toMatchObject({ reap: false, reason: 'current' });

  const human = await cfReap(['--dry-run']);
  expect(human.code).toBe(0);
  const lines = human.stdout.trim().split('\n');
  expect(lines[0]).toMatch(/^BACKEND\s+DEPLOYMENT\s+JOB\s+ATTEMPT\s+ACTION\s+WHY$/);
  expect(lines.slice(1)).toEqual([expect.stringMatching(new RegExp(`^local\\s+${orphan.id}\\s+${orphanJob}\\s+1\\s+close\\s+job-not-found: no workflow job-${orphanJob} exists$`))]);
  expect(human.stderr).toMatch(/dry run: 2 open deployment\(s\) with this installation's mark \(installation tag [0-9a-f]{8}\); 1 would be closed, 1 kept .*nothing was closed/);
  const all = await cfReap(['--dry-run', '--all']);
  expect(all.stdout).toMatch(new RegExp(`${running.job_id}\\s+1\\s+keep\\s+current`));

  // Nothing was closed.
  expect(processAlive(orphanPid)).toBe(true);
  expect(processAlive(runningPid)).toBe(true);

  await handle.cancel();
  await reaper.backend.close(orphan);
  expect(processAlive(orphanPid)).toBe(false);
}, 60_000);

test('cf-reap: usage errors and an unreachable Temporal have their exit codes', async () => {
  expect((await cfReap(['--no-such-option'])).code).toBe(2);
  expect((await cfReap(['extra'])).code).toBe(2);
  const help = await cfReap(['--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('Usage: cf-reap');
  const down = await runCommand('cf-reap', ['--dry-run'], { FORGE_HOME: reaper.home, FORGE_CONFIG: path.join(reaper.home, 'forge-config.json'), TEMPORAL_ADDRESS: '127.0.0.1:1' });
  expect(down.code).toBe(3);
  expect(down.stderr).toMatch(/cannot reach Temporal at 127\.0\.0\.1:1 .*start the stack \(npm start\) or set TEMPORAL_ADDRESS/);
  // On a replica's host without the orchestrator key, a dry run cannot tell this installation's deployments from
  // another's on a shared provider account: it says so, and which key to provision.
  const keyless = await runCommand('cf-reap', ['--dry-run'], {
    FORGE_HOME: reaper.home,
    FORGE_CONFIG: path.join(reaper.home, 'forge-config.json'),
    FORGE_EMBEDDED: '0',
    FORGE_ORCHESTRATOR_KEY_FILE: path.join(reaper.home, 'no-such-key.json'),
  });
  expect(keyless.code).toBe(2);
  expect(keyless.stderr).toMatch(/no orchestrator key at .*no-such-key\.json.*cf-keygen --orchestrator.*cf-reap reads it to tell this installation's deployments/s);
});
