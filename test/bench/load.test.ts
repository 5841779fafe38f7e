/** bench/load at smoke size, parts 1 and 2 (docs/architecture.md §12; part 3 in load-replicas.test.ts): `npm run bench:load` still runs. */
import { expectSection, runBench } from './run-bench';

test('bench:load runs its parts 1 and 2 end to end and prints its section', async () => {
  const env = {
    LOAD_PARTS: 'running,queued', // part 3 (replicas) at smoke size: load-replicas.test.ts
    LOAD_JOBS: '4',
    LOAD_SLEEP_SECONDS: '2',
    LOAD_SHORT_SECONDS: '1',
    LOAD_QUEUED: '8',
    LOAD_CAP: '2',
    LOAD_OWNERS: '2',
  };
  const run = await runBench('load', env, ['--expose-gc']);
  expectSection(run, 'Load');
  for (const part of ['Part 1', 'Part 2']) expect(run.stdout).toContain(`### ${part}`);
}, 300_000);
