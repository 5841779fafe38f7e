/** bench/lifecycle at smoke size (docs/architecture.md §12): `npm run bench:lifecycle` still runs. */
import { expectSection, runBench } from './run-bench';

test('bench:lifecycle runs end to end and prints its section', async () => {
  const run = await runBench('lifecycle', { BENCH_RUNS: '1', BENCH_SHORT_SECONDS: '1', BENCH_LONG_SECONDS: '3' });
  expectSection(run, 'Lifecycle');
  expect(run.stdout).toContain('history events, job with a 3 s trainer');
}, 180_000);
