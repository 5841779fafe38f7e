/** bench/api at smoke size (docs/architecture.md §12): `npm run bench:api` still runs; figures come from the full size. */
import { expectSection, runBench } from './run-bench';

test('bench:api runs end to end and prints its section', async () => {
  expectSection(await runBench('api', { BENCH_RATE: '4', BENCH_SECONDS: '2' }), 'API latency');
}, 180_000);
