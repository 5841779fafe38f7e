/** bench/capacity at smoke size (docs/architecture.md §12): `npm run bench:capacity` still runs. */
import { expectSection, runBench } from './run-bench';

test('bench:capacity runs end to end and prints its section', async () => {
  const env = {
    CAPACITY_CYCLES: '3',
    CAPACITY_WAITERS: '2',
    CAPACITY_POLLS: '1',
    CAPACITY_PARALLEL: '2',
    CAPACITY_PARALLEL_CYCLES: '2',
    CAPACITY_CAP: '1',
    CAPACITY_POLL_MS: '200',
  };
  expectSection(await runBench('capacity', env), 'Admission entity');
}, 180_000);
