/**
 * bench/trainer at smoke size (docs/architecture.md §12): one pair of runs of a few steps, the trainer directly and as
 * a trainingJob. Guards what once broke it: its spec's output repository must pass the operator's path policy, or the
 * orchestrated run ends ABANDONED.
 */
import { expectSection, runBench } from './run-bench';

test('bench:trainer runs a direct and an orchestrated run end to end and prints its section', async () => {
  const run = await runBench('trainer', { BENCH_RUNS: '1', BENCH_STEPS: '4' });
  expectSection(run, 'Trainer throughput');
  expect(run.stderr).toMatch(/\[bench\] orchestrated/);
}, 300_000);
