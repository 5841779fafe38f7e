/**
 * trainer/bench/verify.py (npm run bench:verify) at smoke size: the trainer's time per step at rl.verify_fraction 0,
 * 0.25 and 1 on the tiny model, with honest rollouts (the bench exits non-zero if verification rejects one). The
 * full-size figures come from the command in BENCHMARKS.md ("Rollout verification").
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';

const root = path.resolve(__dirname, '..', '..');

test('the bench measures every fraction and rejects no honest rollout', async () => {
  const { stdout } = await promisify(execFile)(
    path.join(root, '.tools', 'venv', 'bin', 'python'),
    [path.join(root, 'trainer', 'bench', 'verify.py'), '--steps', '2', '--prompts', '2', '--group', '2', '--tokens', '8'],
    { env: { ...process.env, OMP_NUM_THREADS: '1' }, maxBuffer: 1 << 20 },
  );
  const lines = stdout.trim().split('\n');
  const raw = z.object({ seconds: z.record(z.string(), z.array(z.number().positive()).min(1)) }).parse(JSON.parse(lines.at(-1)!));
  expect(Object.keys(raw.seconds)).toEqual(['0.0', '0.25', '1.0']);
  expect(lines.filter((l) => /^\| (0\.0|0\.25|1\.0) \|/.test(l))).toHaveLength(3);
}, 600_000);
