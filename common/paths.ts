/** Where things live on disk. Everything the orchestrator writes goes under FORGE_HOME. */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import type { GitSettings } from './results-config';

/** The repository root: two levels above this file both in the sources and in dist/. */
export function repoRoot(): string {
  const up = path.resolve(__dirname, '..');
  return path.basename(up) === 'dist' ? path.resolve(up, '..') : up;
}

export function forgeHome(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.FORGE_HOME ?? path.join(repoRoot(), '.forge'));
}

export function jobAttemptDir(home: string, jobId: string, attempt: number): string {
  return path.join(home, 'jobs', jobId, `attempt-${attempt}`);
}

/** `p` made absolute, with symlinks resolved in the part of it that exists (the rest appended as written). */
export function resolveExisting(p: string): string {
  const absolute = path.resolve(p);
  const rest: string[] = [];
  for (let head = absolute; ; ) {
    try {
      return path.join(realpathSync.native(head), ...rest);
    } catch {
      const parent = path.dirname(head);
      if (parent === head) return absolute;
      rest.unshift(path.basename(head));
      head = parent;
    }
  }
}

/** The operator's results.git.file_roots (default: FORGE_HOME), resolved. */
export function fileRoots(git: GitSettings, home: string): string[] {
  return (git.file_roots ?? [home]).map(resolveExisting);
}
