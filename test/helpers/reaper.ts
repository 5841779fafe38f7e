/**
 * The reaper's test plumbing: an orchestrator worker on a test file's queue with one local backend of long fake
 * trainers and no grace period, its operator config as a file (for cf-reap), and trainers nobody will close.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { LocalBackend } from '../../activities/backends/local/local';
import type { DeploymentRef } from '../../activities/backends/types';
import { makeSignedSpec, signedOf } from '../jobspec/fixtures';
import { runCommand, type Run } from './cli';
import { fakeTrainer, pollUntil, readStarts, temporalAddress, tempDir, testConfig, useForge } from './forge';

export function useReaperForge(taskQueue: string, prefix: string) {
  const home = tempDir(prefix);
  const starts = `${home}/starts.log`;
  const config = testConfig({ local: { trainers: { slow: fakeTrainer('ok', 120) } } }, starts, { reaper: { grace_seconds: 0 } });
  const configFile = path.join(home, 'forge-config.json');
  writeFileSync(configFile, JSON.stringify(config));
  const forge = useForge(config, home, taskQueue);
  const local = config.backends.local;
  if (local?.kind !== 'local') throw new Error('local config');
  const backend = new LocalBackend('local', local, home);
  const trainerPid = (jobId: string): Promise<number> =>
    pollUntil(async () => readStarts(starts).find((s) => s.job === jobId)?.pid, `the trainer of job ${jobId} started`);
  return {
    home,
    starts,
    config,
    forge,
    backend,
    cfReap(args: string[]): Promise<Run> {
      return runCommand('cf-reap', args, { FORGE_HOME: home, FORGE_CONFIG: configFile, TEMPORAL_ADDRESS: temporalAddress() });
    },
    /** The pid of a trainer's process once its start is logged. */
    trainerPid,
    /** A local trainer whose job was never started in Temporal (its submit's workflow is gone). */
    async orphanTrainer(): Promise<{ jobId: string; ref: DeploymentRef; pid: number }> {
      const raw = makeSignedSpec({ trainer: { image: 'slow' } });
      const ref = await backend.submit(signedOf(raw), 1);
      return { jobId: raw.job_id, ref, pid: await trainerPid(raw.job_id) };
    },
  };
}
