/**
 * Shared by the trainer tests and the demo's test: the real trainer from .tools/venv, a tiny base model, and a
 * small dataset in a real git repository.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ensureGitRepo, reverseWordExamples } from '../../client/demo/prepare';
import { repoRoot } from '../../common/paths';

export { reverseWordExamples as reverseExamples };

export const VENV_BIN = path.join(repoRoot(), '.tools', 'venv', 'bin');
export const TRAINER = path.join(VENV_BIN, 'forge-trainer');
export const PYTHON = path.join(VENV_BIN, 'python');

/** One thread per trainer: tiny models gain nothing from more, and a descheduled second thread stalls every step. */
export const TRAINER_ENV = { OMP_NUM_THREADS: '1' };

export function requireTrainer(): void {
  if (!existsSync(TRAINER)) throw new Error(`${TRAINER} is missing: run \`npm run bootstrap\` (it installs the trainer)`);
}

export function initTinyModel(dir: string): string {
  execFileSync(TRAINER, ['init-tiny', '--out', dir], { env: { ...process.env, ...TRAINER_ENV }, stdio: 'pipe' });
  return dir;
}

/** A git repository at `dir` with `files` committed on main; returns its file:// URL. */
export function makeDataRepo(dir: string, files: Record<string, string>): string {
  return ensureGitRepo(dir, files).url;
}

/** The JSON event lines of a trainer's stdout (or training_log.jsonl); other lines are skipped. */
export function readEvents(file: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.startsWith('{') && line.endsWith('}'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
