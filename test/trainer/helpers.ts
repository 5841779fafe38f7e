/**
 * Shared by the trainer tests and the demo's test: the real trainer from .tools/venv, a tiny base model, and a
 * small dataset in a real git repository.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../common/paths';

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

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'forge-test',
  GIT_AUTHOR_EMAIL: 'forge-test@example.invalid',
  GIT_COMMITTER_NAME: 'forge-test',
  GIT_COMMITTER_EMAIL: 'forge-test@example.invalid',
};

/** A seeded list of {prompt, completion}: reverse a short word. A tiny model learns it in a hundred steps. */
export function reverseExamples(count: number, seed = 1): string {
  let state = seed;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const length = 3 + Math.floor(next() * 6);
    const word = Array.from({ length }, () => 'abcdefgh'[Math.floor(next() * 8)]).join('');
    lines.push(JSON.stringify({ prompt: `reverse ${word}:`, completion: ` ${[...word].reverse().join('')}` }));
  }
  return `${lines.join('\n')}\n`;
}

/** A git repository at `dir` with `files` committed on main; returns its file:// URL. */
export function makeDataRepo(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  const git = (...args: string[]): void => {
    execFileSync('git', args, { cwd: dir, env: { ...process.env, ...GIT_ENV }, stdio: 'pipe' });
  };
  git('init', '--quiet', '--initial-branch', 'main');
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), text);
  }
  git('add', '--all');
  git('commit', '--quiet', '--message', 'dataset');
  return `file://${path.resolve(dir)}`;
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
