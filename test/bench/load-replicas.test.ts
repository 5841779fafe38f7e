/**
 * bench/load part 3 at smoke size (issue 15 "Done when"): the same queue run by 1 and by 3 orchestrator replicas
 * (`dist/workers/main.js orchestrator`, each its own FORGE_HOME) reports admissions/s and the most trainers at once
 * side by side, and the cap holds with 3 replicas as with 1. Full size: `LOAD_PARTS=replicas npm run bench:load`
 * (figures in BENCHMARKS.md). Runs the built bench (dist/), as `npm run bench:load` does.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const CAP = 2;
const JOBS = 6;

test('1 and 3 replicas side by side: every job completes, admissions/s reported, never more than the cap at once', async () => {
  const env = { ...process.env, LOAD_PARTS: 'replicas', LOAD_REPLICA_JOBS: String(JOBS), LOAD_REPLICA_CAP: String(CAP), LOAD_REPLICA_SLEEP_SECONDS: '0.5', LOAD_OWNERS: '3' };
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'load', 'index.js')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect([code, err.slice(-2000)]).toEqual([0, expect.any(String)]);
  expect(out).toContain(`### Part 3: max_concurrent ${CAP} with 1 and 3 orchestrator replicas`);
  // | replicas | completed | admissions/s | median s between admissions | most trainers at once | jobs per replica | wall s |
  const rows = out.split('\n').filter((l) => /^\| [13] \| /.test(l)).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
  expect(rows.map((r) => r[0])).toEqual(['1', '3']);
  for (const [replicas, completed, perSecond, , atOnce, perReplica] of rows) {
    expect([replicas, completed]).toEqual([replicas, `${JOBS} of ${JOBS}`]);
    expect(Number(perSecond)).toBeGreaterThan(0);
    const most = Number(/^(\d+) \(cap (\d+)\)$/.exec(atOnce!)?.[1]);
    expect([replicas, most <= CAP]).toEqual([replicas, true]);
    expect(perReplica!.split(' / ')).toHaveLength(Number(replicas));
  }
}, 600_000);
