/**
 * The fake Prime Intellect API as a process of its own, for the network partition (test/chaos/partition.test.ts):
 * started inside a network namespace, it listens on (and its pods' agents bind) the namespace's own address.
 * argv: <scenario JSON> <state file>. Prints `url <url>` once listening; writes its pods (id, name, status, whether
 * the container runs) to the state file every 200 ms, since the test cannot reach into the namespace.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { FakePrimeIntellect, type PiScenario } from '../../fakes/prime-intellect';

async function main(): Promise<void> {
  const [scenarioJson = '{}', stateFile = '/dev/null'] = process.argv.slice(2);
  const fake = new FakePrimeIntellect(JSON.parse(scenarioJson) as PiScenario);
  await fake.start();
  const dump = (): void => {
    const pods = [...fake.pods.values()].map((p) => ({ id: p.id, name: p.name, status: p.status, running: p.container?.running === true }));
    writeFileSync(`${stateFile}.tmp`, JSON.stringify(pods));
    renameSync(`${stateFile}.tmp`, stateFile);
  };
  dump();
  setInterval(dump, 200);
  const stop = (): void => {
    void fake.stop().then(() => {
      dump();
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`url ${fake.url}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
