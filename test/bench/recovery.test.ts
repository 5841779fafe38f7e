/**
 * bench/recovery at smoke size (issue 13 point 7): one death of each kind (a local trainer SIGKILLed, a lease closed
 * on the fake Akash) is followed by the next attempt RUNNING, measured from the job's own record; the job then
 * completes. The full-size figures (≥ 30 deaths each) come from `npm run bench:recovery` into BENCHMARKS.md.
 */
import { startWorker, testClient } from '../helpers/forge';
import { measureRecovery, recoveryTable } from '../../bench/recovery/run';

test('one death per kind: the next attempt is RUNNING after at least the floor (status interval + backoff), the job completes', async () => {
  const { client, connection } = await testClient();
  try {
    const figures = await measureRecovery({
      client,
      jobs: 1,
      deathsPerJob: 1,
      statusMs: 300,
      backoffSeconds: 0.5,
      async startWorker(config, home, taskQueue) {
        const w = await startWorker(config, home, taskQueue);
        return () => w.stop();
      },
    });
    expect(figures.map((f) => [f.kind, f.deaths, f.problems])).toEqual([
      ['local', 1, []],
      ['akash', 1, []],
    ]);
    for (const f of figures) {
      // Never faster than the backoff alone (the retry waits it out), and not stuck: within a generous bound here.
      expect(f.medianMs).toBeGreaterThanOrEqual(500);
      expect(f.medianMs).toBeLessThan(f.floorMs + 15_000);
    }
    expect(recoveryTable(figures)).toMatch(/\| local trainer SIGKILLed \| 1 \| 800 \|/);
  } finally {
    await connection.close();
  }
});
