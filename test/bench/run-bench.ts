/**
 * Benchmarks that cannot rot (docs/architecture.md §12): each bench/* runs here at a smoke size, as `npm run bench:*`
 * runs it (the compiled dist/bench/<name>/index.js, its own dev server), and must exit 0 with its Markdown section.
 * The figures of a smoke run mean nothing; that the benchmark still runs end to end is what is checked.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

export interface BenchRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runBench(name: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<BenchRun> {
  const script = path.join(ROOT, 'dist', 'bench', name, 'index.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, script], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Exit 0 and a Markdown section with a table: `heading` is its `## ` title. */
export function expectSection(run: BenchRun, heading: string): void {
  if (run.code !== 0) throw new Error(`bench exited ${run.code}:\n${run.stderr.slice(-4000)}`);
  expect(run.stdout).toContain(`## ${heading}`);
  expect(run.stdout).toMatch(/^\|---/m);
}
