/** Where things live on disk. Everything the orchestrator writes goes under FORGE_HOME. */
import path from 'node:path';

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
