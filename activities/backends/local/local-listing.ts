/**
 * The local backend's open deployments, for the reaper: attempts whose process group still has live members, found
 * through the running index (`FORGE_HOME/running/<backend>/<job_id>.attempt-<n>`, one marker per launched attempt,
 * holding the attempt's workspace dir). Markers of attempts that ended are pruned on the way, as the capacity count
 * does.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { isErrno, listDir, PRIVATE_DIR_MODE, readTextIfExists, statIfExists, writeFileAtomic } from '../../../common/files';
import { leaderAlive, liveGroupMembers, ownsGroup } from './local-process';
import { Workspace, type LaunchRecord } from './local-workspace';
import type { DeploymentRef, OpenDeployment } from '../types';

/** A running-index marker younger than this may belong to a launch still under way. */
export const MARKER_GRACE_MS = 60_000;

const MARKER_NAME = /^(.+)\.attempt-(\d+)$/;

export function runningIndexDir(home: string, backend: string): string {
  return path.join(home, 'running', backend);
}

/** The DeploymentRef of a local attempt (what submit() returns and close() takes). */
export function localRef(backend: string, kind: string, dir: string, launch: LaunchRecord): DeploymentRef {
  return {
    backend,
    kind,
    id: `${launch.jobId}/attempt-${launch.attempt}`,
    jobId: launch.jobId,
    attempt: launch.attempt,
    submittedAt: launch.startedAt,
    data: { dir, pid: launch.pid },
  };
}

/** Attempts of `backend` under `home` whose process group (the wrapper, or anything it left behind) still lives. */
export async function listOpenLocal(home: string, backend: string, kind: string): Promise<OpenDeployment[]> {
  const index = runningIndexDir(home, backend);
  let names: string[];
  try {
    names = await fs.readdir(index);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  }
  const open: OpenDeployment[] = [];
  for (const name of names.sort()) {
    const m = MARKER_NAME.exec(name);
    const marker = path.join(index, name);
    const dir = m && (await readTextIfExists(marker));
    if (!m || !dir) continue;
    const ws = new Workspace(dir);
    let launch: LaunchRecord | undefined;
    try {
      launch = (await ws.readLaunch()) ?? (await ws.recoverLaunch(backend, m[1]!, Number(m[2])));
    } catch {
      launch = undefined; // a damaged workspace: nothing the reaper can identify
    }
    const id = launch && launchIdentity(launch);
    if (launch && launch.backend === backend && id && ownsGroup(id) && liveGroupMembers(launch.pid).length > 0) {
      open.push({ ref: localRef(backend, kind, ws.dir, launch), jobId: launch.jobId, attempt: launch.attempt, createdAt: launch.startedAt });
    } else if (Date.now() - ((await statIfExists(marker))?.mtimeMs ?? 0) > MARKER_GRACE_MS) {
      await fs.rm(marker, { force: true }); // nothing of it lives, and it is no launch under way: that attempt ended
    }
  }
  return open;
}

// ---- the running index (for max_concurrent) -----------------------------------------------------------------------
// One marker file per launched attempt under running/<backend>/, so counting is O(running), not O(jobs ever run).

export async function markRunning(home: string, backend: string, jobId: string, attempt: number, wsDir: string): Promise<void> {
  const index = runningIndexDir(home, backend);
  await fs.mkdir(index, { recursive: true, mode: PRIVATE_DIR_MODE });
  await writeFileAtomic(path.join(index, `${jobId}.attempt-${attempt}`), wsDir);
}

/** Live attempts of `backend`, other jobs' only; markers of ended attempts are pruned on the way. */
export async function countLiveAttempts(home: string, backend: string, exceptJob: string): Promise<number> {
  let live = 0;
  for (const marker of await listDir(runningIndexDir(home, backend))) {
    const dir = await readTextIfExists(marker);
    if (dir === undefined) continue;
    if (await isLiveAttempt(backend, new Workspace(dir))) {
      if (!path.basename(marker).startsWith(`${exceptJob}.`)) live++;
    } else if (Date.now() - ((await statIfExists(marker))?.mtimeMs ?? 0) > MARKER_GRACE_MS) {
      // Not live, and not a launch still under way: that attempt has ended.
      await fs.rm(marker, { force: true });
    }
  }
  return live;
}

async function isLiveAttempt(backend: string, ws: Workspace): Promise<boolean> {
  try {
    const launch = await ws.readLaunch();
    return launch !== undefined && launch.backend === backend && !(await ws.readExit()) && leaderAlive(launchIdentity(launch));
  } catch {
    return false; // a damaged workspace is not a running trainer
  }
}

/** What tells a launch's process group from another one that reuses its PID. */
export function launchIdentity(launch: LaunchRecord): { pid: number; procStartTime: string | null; bootId: string | null } {
  return { pid: launch.pid, procStartTime: launch.procStartTime, bootId: launch.bootId };
}
