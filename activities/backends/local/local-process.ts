/**
 * Process helpers of the local backend: the detached wrapper that records the trainer's exit status, and process
 * group liveness that is robust against PID reuse and zombies (a container's PID 1 often never reaps orphans).
 */
import { constants as fsConstants, promises as fs, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { spawnTrainer, type TrainerEnv } from '../../../common/trainer-env';
import { isErrno } from '../../../common/files';

/**
 * `sh -c WRAPPER sh <workspace> <program> <args...>`. Arguments are positional, never interpolated into the script.
 * It sets umask 077, records its own pid (so a launch whose launcher died before writing launch.json can be recovered), runs the
 * trainer in the foreground, then records the trainer's real exit status.
 *
 * Each record is one short line written by one write() of the shell's builtins into a new file, so a reader sees the
 * file empty or whole (the file's size grows only once the bytes are in): readers take an empty record, or one
 * without its final newline, as not written yet. No `mv` for atomicity: two processes fewer per launch (~5 ms,
 * BENCHMARKS.md "Lifecycle").
 */
export const WRAPPER_SCRIPT = [
  'umask 077', // what the wrapper and the trainer create is the job's only: files 0600, folders 0700
  'd=$1; shift',
  'echo $$ > "$d/wrapper.pid"',
  '"$@"',
  'code=$?',
  `printf '{"code":%d}\\n' "$code" > "$d/exit.json"`,
  'exit "$code"',
].join('\n');

export interface SpawnRequest {
  dir: string;
  argv: string[];
  env: TrainerEnv;
  stdoutFile: string;
  stderrFile: string;
}

/**
 * Starts the wrapper in its own session and process group (so it outlives the worker), stdio to files, not pipes
 * (a pipe would break, and kill the trainer with SIGPIPE, when the worker dies). Resolves with the pid (= pgid).
 */
export async function spawnDetached(req: SpawnRequest): Promise<number> {
  const out = await fs.open(req.stdoutFile, 'a', 0o600);
  const err = await fs.open(req.stderrFile, 'a', 0o600);
  try {
    const child = spawnTrainer(['/bin/sh', '-c', WRAPPER_SCRIPT, 'sh', req.dir, ...req.argv], req.env, {
      cwd: req.dir,
      detached: true,
      stdio: ['ignore', out.fd, err.fd],
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => (child.pid === undefined ? reject(new Error('spawn gave no pid')) : resolve(child.pid)));
    });
    child.on('error', () => undefined); // later errors (none expected) must not crash the worker
    child.unref();
    return pid;
  } finally {
    await out.close();
    await err.close();
  }
}

export interface ProcStat {
  state: string;
  pgrp: number;
  /** Field 22: start time in clock ticks since boot; with the boot id it identifies a process beyond its pid. */
  startTime: string;
}

/** /proc/<pid>/stat, or undefined when the process does not exist (or there is no /proc). */
export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may hold spaces and parentheses: fields after it start after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0] ?? '?', pgrp: Number(rest[2]), startTime: rest[19] ?? '' };
}

// Both are fixed for the life of this process (the boot id changes only with a reboot): read once, not on every
// liveness check (admission checks every running attempt, bench/load).
let procAvailable: boolean | undefined;
let currentBootId: string | null | undefined;

export function hasProc(): boolean {
  if (procAvailable === undefined) {
    try {
      readFileSync('/proc/self/stat');
      procAvailable = true;
    } catch {
      procAvailable = false;
    }
  }
  return procAvailable;
}

export function bootId(): string | null {
  if (currentBootId === undefined) {
    try {
      currentBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      currentBootId = null;
    }
  }
  return currentBootId;
}

const isDead = (state: string): boolean => state === 'Z' || state === 'X';

/** kill(-pgid, 0): false only when the kernel says no such group (EPERM: exists but is not ours → false too). */
function groupSignalable(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    if (isErrno(err, 'ESRCH', 'EPERM')) return false;
    throw err;
  }
}

export interface ProcessIdentity {
  pid: number;
  procStartTime: string | null;
  bootId: string | null;
}

/**
 * Is process group `id.pid` still the one we launched? A group's id stays taken while any member lives, so once the
 * leader is gone, members with that pgrp are ours; only a leader with another start time (or a reboot) means the
 * number now belongs to someone else.
 */
export function ownsGroup(id: ProcessIdentity): boolean {
  if (!hasProc()) return true;
  if (id.bootId && bootId() !== id.bootId) return false;
  const stat = readProcStat(id.pid);
  return !stat || id.procStartTime === null || stat.startTime === id.procStartTime;
}

/** Is the wrapper (the group leader) still running: the group exists, it is ours, the leader is no zombie? */
export function leaderAlive(id: ProcessIdentity): boolean {
  if (!groupSignalable(id.pid)) return false;
  if (!hasProc()) return true;
  const stat = readProcStat(id.pid);
  return stat !== undefined && !isDead(stat.state) && ownsGroup(id);
}

/** Pids of the group's members that are not zombies. Without /proc, any signalable group counts as one member. */
export function liveGroupMembers(pgid: number): number[] {
  if (!groupSignalable(pgid)) return [];
  if (!hasProc()) return [pgid];
  const members: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readProcStat(Number(name));
    if (stat && stat.pgrp === pgid && !isDead(stat.state)) members.push(Number(name));
  }
  return members;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if (!isErrno(err, 'ESRCH')) throw err;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForGroupGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  // Most groups are gone within milliseconds (a wrapper finishing its last line): look often at first.
  for (let pause = 2; ; pause = Math.min(50, pause * 2)) {
    if (liveGroupMembers(pgid).length === 0) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(pause, Math.max(1, deadline - Date.now())));
  }
}

/** SIGTERM to the whole group, `graceMs` to stop, then SIGKILL. Resolves once no live member remains. */
export async function terminateGroup(pgid: number, graceMs: number): Promise<void> {
  if (liveGroupMembers(pgid).length === 0) return;
  signalGroup(pgid, 'SIGTERM');
  if (await waitForGroupGone(pgid, graceMs)) return;
  signalGroup(pgid, 'SIGKILL');
  if (await waitForGroupGone(pgid, 5000)) return;
  throw new Error(`process group ${pgid} still has live members after SIGKILL`);
}

/** Is a process with this pid alive (used for a claimer on this host)? */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return !isErrno(err, 'ESRCH');
  }
  const stat = readProcStat(pid);
  return !stat || !isDead(stat.state);
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    await fs.access(file, fsConstants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

/**
 * The absolute path of a trainer program: a path (with "/") is resolved against the worker's cwd, a bare name is
 * looked up on PATH. Undefined when there is no such executable file.
 */
export async function resolveProgram(program: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (program.includes('/')) {
    const abs = path.resolve(program);
    return (await isExecutableFile(abs)) ? abs : undefined;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}
