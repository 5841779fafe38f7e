/**
 * The cf-* commands as a user runs them: subprocesses of the compiled dist/client/cli/*.js (the bootstrap builds them
 * before the tests; a stale build would test old code, so requireBuilt refuses one).
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
export const CLI_DIR = path.join(ROOT, 'dist', 'client', 'cli');

export function requireBuilt(names: string[]): void {
  for (const name of names) {
    const built = path.join(CLI_DIR, `${name}.js`);
    const source = path.join(ROOT, 'client', 'cli', `${name}.ts`);
    if (!existsSync(built) || statSync(built).mtimeMs < statSync(source).mtimeMs) throw new Error(`${built} is missing or older than its source: run npm run bootstrap`);
  }
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking this process (an API under test may live here); env is all it gets besides PATH. */
export function runCommand(command: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(CLI_DIR, `${command}.js`), ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end();
  });
}
