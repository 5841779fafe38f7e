/**
 * The orchestrator's side of an RL run's end: `collectPolicy` downloads the policy the trainer host exported (every
 * file checked against its sha256 and size) into the attempt's folder under FORGE_HOME, before the host is released.
 * From there the results pipeline (docs/architecture.md §8) commits it like a finetune's outputs, through `RlOutputsBackend`:
 * the deployment of an RL attempt is its grpoRun child, whose outputs are that folder.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { writeMetered } from '../../common/metered-download';
import { jobAttemptDir } from '../../common/paths';
import { endpointToken, sessionKeyLoader } from '../../common/rl-session';
import { RL_BACKEND, RL_BACKEND_KIND } from '../../common/rl-config';
import type { TrainingJobSpec } from '../../jobspec/schema';
import type { Backend, DeploymentRef, DeploymentStatus, HealthReport, LogChunk, Quote } from '../backends/types';
import { BackendError } from '../backends/types';
import type { CollectInput, CollectResult, ExportedFile } from './types';

export { RL_BACKEND, RL_BACKEND_KIND };
const SAFE_PATH = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function rlOutputDir(home: string, jobId: string, attempt: number): string {
  return path.join(jobAttemptDir(home, jobId, attempt), 'rl-output');
}

async function download(url: string, token: string, file: ExportedFile, target: string): Promise<void> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (res.status === 401) throw new Error(`GET ${url}: HTTP 401: the session token is derived from FORGE_RL_SESSION_KEY, which must be the same on the orchestrator and the trainer hosts`);
  if (!res.ok || !res.body) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const { size, sha256: got } = await writeMetered(res.body, target);
  if (got !== file.sha256 || size !== file.size) {
    throw new Error(`${file.path}: got ${size} bytes with sha256 ${got}, the trainer exported ${file.size} bytes with ${file.sha256}`);
  }
}

/** `env`: where the RL session key is read from (FORGE_RL_SESSION_KEY...; default process.env), when first needed. */
export function createRlCollectActivities(deps: { home: string; env?: NodeJS.ProcessEnv }) {
  const sessionKey = sessionKeyLoader(deps.env ?? process.env, deps.home);
  return {
    /** Downloads and verifies the exported policy; idempotent (a retry starts the folder over). */
    async collectPolicy(input: CollectInput): Promise<CollectResult> {
      const ctx = Context.current();
      const dir = rlOutputDir(deps.home, input.jobId, input.attempt);
      const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
      for (const f of input.exported.files) {
        if (!SAFE_PATH.test(f.path)) throw ApplicationFailure.create({ message: `refusing exported path "${f.path}"`, type: 'REJECTED', nonRetryable: true });
      }
      const token = endpointToken(sessionKey, input.trainer);
      try {
        for (const f of input.exported.files) {
          ctx.heartbeat({ file: f.path });
          await download(`${input.exported.url}/${f.path}`, token, f, path.join(tmp, f.path));
        }
        await fs.rm(dir, { recursive: true, force: true });
        await fs.rename(tmp, dir);
      } finally {
        await fs.rm(tmp, { recursive: true, force: true });
      }
      return { dir, files: input.exported.files };
    },
  };
}

export type RlCollectActivities = ReturnType<typeof createRlCollectActivities>;

/**
 * The results pipeline's view of an RL attempt (DeploymentRef kind "grpo"): its outputs are the collected folder
 * (`data.output_dir`). It is not a compute backend: nothing can be submitted to it, and closing it is a no-op (the
 * grpoRun child releases its trainer host itself).
 */
export class RlOutputsBackend implements Backend {
  readonly name = RL_BACKEND;
  readonly kind = RL_BACKEND_KIND;

  async health(): Promise<HealthReport> {
    return { ok: true, detail: 'RL outputs (trainer hosts poll forge-grpo)' };
  }

  async quote(_spec: TrainingJobSpec): Promise<Quote> {
    return { available: false, hourlyUsd: 0, detail: `${RL_BACKEND} is not a compute backend` };
  }

  async submit(): Promise<DeploymentRef> {
    throw new BackendError('REJECTED', `${RL_BACKEND} runs rl jobs' grpoRun children only`);
  }

  async status(d: DeploymentRef): Promise<DeploymentStatus> {
    const cost = typeof d.data.cost_usd === 'number' ? d.data.cost_usd : 0;
    return {
      state: d.data.output_dir ? 'SUCCEEDED' : 'RUNNING',
      costUsd: cost,
      startedAt: d.submittedAt,
      ...(typeof d.data.finished_at === 'string' ? { finishedAt: d.data.finished_at } : {}),
    };
  }

  async logs(d: DeploymentRef): Promise<LogChunk> {
    const dir = d.data.output_dir;
    if (typeof dir !== 'string') return { lines: [], cursor: '' };
    const text = await fs.readFile(path.join(dir, 'training_log.jsonl'), 'utf8').catch(() => '');
    return { lines: text.split('\n').filter(Boolean).map((line) => ({ stream: 'stdout' as const, line })), cursor: 'end' };
  }

  async collectArtifacts(d: DeploymentRef, target: string): Promise<string[]> {
    const dir = d.data.output_dir;
    if (typeof dir !== 'string') throw new BackendError('LOST', `RL attempt ${d.id} has no collected outputs`);
    const copied: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
        const child = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(child);
        else if (e.isFile()) {
          await fs.mkdir(path.dirname(path.join(target, child)), { recursive: true });
          await fs.copyFile(path.join(dir, child), path.join(target, child));
          copied.push(child);
        }
      }
    };
    await walk('');
    return copied.sort();
  }

  async close(): Promise<void> {
    // the grpoRun child released its trainer host already
  }
}

/** The backends the results pipeline sees: the configured ones plus RL attempts' outputs. */
export function withRlOutputs(backends: ReadonlyMap<string, Backend>): Map<string, Backend> {
  return new Map([...backends, [RL_BACKEND, new RlOutputsBackend()]]);
}
