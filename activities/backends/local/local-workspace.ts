/**
 * The on-disk workspace of one local attempt, `<home>/jobs/<job_id>/attempt-<n>/`, and its records. The files are
 * the only state: any worker (or a restarted one) can pick an attempt up from them.
 *
 *   spec.json      the raw spec as submitted          FORGE_SPEC
 *   output/        the trainer's outputs              FORGE_OUTPUT_DIR (output/checkpoints/ starts as the previous
 *                  attempt's, hard-linked: the trainer resumes from them)
 *   stdout.log, stderr.log
 *   claim-<g>.json exclusive-create claims: whoever creates the highest generation may launch
 *   wrapper.pid    written by the wrapper itself (recovers a launch whose launcher died before launch.json)
 *   launch.json    pid (= pgid) and process identity
 *   exit.json      the trainer's exit status, written by the wrapper after the trainer ends
 *   lost.json      when a vanished wrapper was first noticed (ends cost accounting)
 *   closed.json    written by close()
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { FailureInfo } from '../../../jobspec/failure';
import type { DeploymentRef } from '../types';
import { createOnce, readTextIfExists, statIfExists, writeFileAtomic } from '../../../common/files';
import { bootId, pidAlive, readProcStat } from './local-process';

export const FILES = {
  spec: 'spec.json',
  output: 'output',
  stdout: 'stdout.log',
  stderr: 'stderr.log',
  wrapperPid: 'wrapper.pid',
  launch: 'launch.json',
  exit: 'exit.json',
  lost: 'lost.json',
  closed: 'closed.json',
} as const;

export const launchRecordSchema = z.object({
  backend: z.string(),
  jobId: z.string(),
  attempt: z.number().int(),
  pid: z.number().int().positive(),
  startedAt: z.string(),
  procStartTime: z.string().nullable(),
  bootId: z.string().nullable(),
  /** True when rebuilt from wrapper.pid after the launcher died. */
  recovered: z.boolean().default(false),
});
export type LaunchRecord = z.infer<typeof launchRecordSchema>;

const exitRecordSchema = z.object({ code: z.number().int() });
const timeRecordSchema = z.object({ at: z.string() });
const claimSchema = z.object({ token: z.string(), pid: z.number().int(), claimedAt: z.string() });
type Claim = z.infer<typeof claimSchema>;

/** How a launch that ended without an exit status is described. */
export function lostFailure(launch: LaunchRecord, closedAt: Date | undefined): FailureInfo {
  const why = closedAt
    ? `closed by the orchestrator at ${closedAt.toISOString()}`
    : 'killed outside the orchestrator, or the host rebooted';
  return { class: 'LOST', detail: `trainer wrapper (process group ${launch.pid}) ended without an exit status: ${why}` };
}

/** Why an attempt's workspace is not on this machine, and what the operator does about it. */
export function workspaceNotHere(backend: string, deployment: DeploymentRef, dir: string): string {
  return (
    `local backend "${backend}": attempt ${deployment.attempt} of job ${deployment.jobId} has no workspace here (${dir}): ` +
    "it ran on another orchestrator replica's machine, whose FORGE_HOME this one does not share. Run the local backend " +
    'on one orchestrator replica, or give its replicas one FORGE_HOME (docs/operations.md).'
  );
}

export interface ExitRecord {
  code: number;
  /** When the wrapper wrote it: the trainer's end. */
  finishedAt: Date;
}

/**
 * A record the wrapper writes in place (WRAPPER_SCRIPT): its text once whole, undefined while absent, empty, or
 * without its final newline (still being written).
 */
async function readWrapperRecord(file: string): Promise<string | undefined> {
  const text = await readTextIfExists(file);
  return text?.endsWith('\n') ? text : undefined;
}

/**
 * Parses a JSON record; undefined when absent or empty (left by a writer killed between creating and filling it, as
 * exclusive creates wrote before createOnce), an Error naming the file when corrupt. `fromWrapper`: written in place
 * by the wrapper (readWrapperRecord).
 */
async function readRecord<T>(file: string, schema: z.ZodType<T>, o: { fromWrapper?: boolean } = {}): Promise<T | undefined> {
  const text = o.fromWrapper ? await readWrapperRecord(file) : await readTextIfExists(file);
  if (!text?.trim()) return undefined;
  const parsed = schema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${file}: unexpected content (${parsed.error.message})`);
  return parsed.data;
}

export class Workspace {
  constructor(readonly dir: string) {}

  file(name: keyof typeof FILES): string {
    return path.join(this.dir, FILES[name]);
  }

  readLaunch(): Promise<LaunchRecord | undefined> {
    return readRecord(this.file('launch'), launchRecordSchema);
  }

  async writeLaunch(record: LaunchRecord): Promise<void> {
    await writeFileAtomic(this.file('launch'), `${JSON.stringify(record, null, 2)}\n`);
  }

  async readExit(): Promise<ExitRecord | undefined> {
    const file = this.file('exit');
    const stat = await statIfExists(file);
    if (!stat) return undefined;
    const record = await readRecord(file, exitRecordSchema, { fromWrapper: true });
    return record && { code: record.code, finishedAt: stat.mtime };
  }

  async readTime(name: 'lost' | 'closed'): Promise<Date | undefined> {
    const record = await readRecord(this.file(name), timeRecordSchema);
    return record && new Date(record.at);
  }

  /** Keeps the first time written: later calls are no-ops. */
  async markTime(name: 'lost' | 'closed', at: Date): Promise<Date> {
    const data = `${JSON.stringify({ at: at.toISOString() })}\n`;
    if (await createOnce(this.file(name), data)) return at;
    const kept = await this.readTime(name);
    if (kept) return kept;
    await writeFileAtomic(this.file(name), data); // an empty record (see readRecord): this time is the first one
    return at;
  }

  /**
   * A launch whose launcher died after spawning but before writing launch.json: the wrapper wrote its own pid.
   * Rebuilds launch.json from it. Undefined when there is no wrapper.pid.
   */
  async recoverLaunch(backend: string, jobId: string, attempt: number): Promise<LaunchRecord | undefined> {
    const file = this.file('wrapperPid');
    const stat = await statIfExists(file);
    const text = stat && (await readWrapperRecord(file));
    if (!stat || !text) return undefined;
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const record: LaunchRecord = {
      backend,
      jobId,
      attempt,
      pid,
      startedAt: stat.mtime.toISOString(),
      procStartTime: readProcStat(pid)?.startTime ?? null,
      bootId: bootId(),
      recovered: true,
    };
    await this.writeLaunch(record);
    return record;
  }

  // ---- claims -------------------------------------------------------------------------------------------------

  private claimFile(generation: number): string {
    return path.join(this.dir, `claim-${generation}.json`);
  }

  /** The highest claim generation present (0 = none). */
  async currentGeneration(): Promise<number> {
    let highest = 0;
    for (const name of await fs.readdir(this.dir)) {
      const m = /^claim-(\d+)\.json$/.exec(name);
      if (m) highest = Math.max(highest, Number(m[1]));
    }
    return highest;
  }

  /** Exclusive create of claim-<generation>.json: exactly one caller gets true for each generation. */
  async tryClaim(generation: number): Promise<boolean> {
    const claim: Claim = { token: randomBytes(8).toString('hex'), pid: process.pid, claimedAt: new Date().toISOString() };
    return createOnce(this.claimFile(generation), JSON.stringify(claim));
  }

  /**
   * A claim is stale when nothing was launched under it and its claimer is gone (died between claim and spawn) or
   * it is older than `staleMs` (the claimer hangs). The caller must re-check for a launch after a settle delay.
   */
  async claimIsStale(generation: number, staleMs: number): Promise<boolean> {
    const file = this.claimFile(generation);
    const stat = await statIfExists(file);
    if (!stat) return false;
    if (Date.now() - stat.mtimeMs > staleMs) return true;
    let claim: Claim | undefined;
    try {
      claim = await readRecord(file, claimSchema);
    } catch {
      return false; // still being written (or its writer died mid-write: then it goes stale by age)
    }
    return claim !== undefined && !pidAlive(claim.pid);
  }
}
