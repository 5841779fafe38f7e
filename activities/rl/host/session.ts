/**
 * One session's policy process (`forge-trainer grpo-server`): started on a slot with its config, tokens and
 * environment (common/trainer-env.ts), up once it prints its `serving` event; stopped with SIGTERM (it checkpoints),
 * SIGKILL after a timeout.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure } from '@temporalio/activity';
import { spawnTrainer, trainerEnvironment } from '../../../common/trainer-env';
import { sessionToken } from '../../../common/rl-session';
import type { AcquireInput, PolicyRef } from '../types';
import type { GrpoHostSettings } from './settings';
import { tail, type ServingEvent } from './wire';
import { servingSchema } from './wire-schemas';

export interface Session {
  id: string;
  jobId: string;
  runId: string;
  slot: number;
  proc: ChildProcess;
  url: string;
  token: string;
  adminToken: string;
  policy: PolicyRef;
  resumedFrom: number | null;
  pipelineDepth: number;
  exitCode: Promise<number | null>;
  exited: boolean;
  out: { stderr: string };
  watchers: number;
  unwatchedSince: number;
  /** Updates in progress: the running step and, pipelined, the next one waiting for its turn in the process. */
  updating: Set<Promise<unknown>>;
}

/** Starts the run's policy process on `slot` and waits until it serves (heartbeating meanwhile). */
export async function spawnSession(set: GrpoHostSettings, input: AcquireInput, slot: number, heartbeat: () => void): Promise<Session> {
  const id = `${input.runId}.${set.hostId}.${randomBytes(4).toString('hex')}`;
  const stateDir = path.join(set.stateDir, input.jobId);
  const workDir = path.join(set.workDir, id.replace(/[^A-Za-z0-9._-]/g, '_'));
  await fs.mkdir(workDir, { recursive: true });
  const configFile = path.join(workDir, '..', `${path.basename(workDir)}.json`);
  await fs.writeFile(
    configFile,
    JSON.stringify({
      ...input.config,
      job_id: input.jobId,
      session_id: id,
      min_update_seconds: set.minUpdateSeconds,
      pipeline_depth: set.pipelineDepth,
    }),
    { mode: 0o600 },
  );
  // The rollout token is derived (rollout workers derive it too); the admin token never leaves this process.
  const token = sessionToken(set.sessionKey(), id);
  const adminToken = randomBytes(24).toString('base64url');
  const [program] = set.trainerCommand;
  const device = set.devices[slot];
  const proc = spawnTrainer(
    [
      ...set.trainerCommand,
      '--config',
      configFile,
      '--state-dir',
      stateDir,
      '--work-dir',
      workDir,
      '--host',
      set.bindHost,
      '--port',
      '0',
      '--advertise-host',
      set.advertiseHost,
    ],
    trainerEnvironment({
      base: process.env,
      passthrough: set.trainerEnvPassthrough,
      operator: { OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1', ...set.trainerEnv },
      contract: {
        ...(device !== undefined ? { CUDA_VISIBLE_DEVICES: device } : {}),
        FORGE_GRPO_TOKEN: token,
        FORGE_GRPO_ADMIN_TOKEN: adminToken,
      },
    }),
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const out = { stderr: '' };
  proc.stderr!.on('data', (d: Buffer) => (out.stderr = (out.stderr + d.toString('utf8')).slice(-4000)));
  const exitCode = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => resolve(code));
    proc.once('error', () => resolve(null));
  });
  const started = await new Promise<ServingEvent>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the trainer process did not serve within ${set.startTimeoutMs} ms`)), set.startTimeoutMs);
    const beat = setInterval(heartbeat, 1_000);
    const done = (): void => {
      clearTimeout(timer);
      clearInterval(beat);
    };
    proc.once('error', (err) => {
      done();
      reject(ApplicationFailure.create({ message: `cannot start the trainer (${program}): ${err.message}`, type: 'REJECTED', nonRetryable: true }));
    });
    void exitCode.then((code) => {
      done();
      const why = `the trainer process exited with ${code} while loading the policy: ${tail(out.stderr)}`;
      // The trainer contract: 75 transient, anything else permanent (a model that cannot be loaded, a bad config).
      reject(code === 75 ? ApplicationFailure.create({ message: why, type: 'TRANSIENT' }) : ApplicationFailure.create({ message: why, type: 'EXIT_CODE', nonRetryable: true }));
    });
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      try {
        const ev = servingSchema.safeParse(JSON.parse(line));
        if (ev.success) {
          done();
          resolve(ev.data);
        }
      } catch {
        // another event
      }
    });
  }).catch(async (err: unknown) => {
    proc.kill('SIGKILL');
    await exitCode;
    await fs.rm(workDir, { recursive: true, force: true });
    throw err;
  });
  await fs.rm(configFile, { force: true });
  const s: Session = {
    id,
    jobId: input.jobId,
    runId: input.runId,
    slot,
    proc,
    url: started.url,
    token,
    adminToken,
    policy: { version: started.version, sha256: started.sha256, url: `${started.url}/v1/policy/${started.version}/model.safetensors` },
    resumedFrom: started.resumed_from,
    pipelineDepth: started.pipeline_depth,
    exitCode,
    exited: false,
    out,
    watchers: 0,
    unwatchedSince: Date.now(),
    updating: new Set(),
  };
  return s;
}

/** SIGTERM: the process checkpoints its current version and exits; SIGKILL after the timeout. */
export async function stopProcess(s: Session, timeoutMs: number): Promise<number | null> {
  if (!s.exited) {
    s.proc.kill('SIGTERM');
    const timer = setTimeout(() => s.proc.kill('SIGKILL'), timeoutMs);
    await s.exitCode;
    clearTimeout(timer);
  }
  return s.exitCode;
}
