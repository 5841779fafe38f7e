/**
 * Chaos: the Temporal dev server (file database, as `npm start` runs it) is killed with SIGKILL while jobs run and
 * started again on the same database a few seconds later. The worker rides out the outage (it keeps polling and
 * reconnects); every job completes, once.
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { startDevServer, type DevServer } from '../../infra/dev-server';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, startJob, tempDir, testConfig, waitForStatus } from '../helpers/forge';
import { freePort } from '../helpers/ports';
import { FULL, killHard, report, sleep, spawnWorker, verifyJobs, type Expectation } from './harness';

const TQ = 'test-chaos-temporal-restart';
const JOBS = FULL ? 20 : 4;
const RESTARTS = FULL ? 3 : 1;
const home = tempDir('forge-chaos-temporal-');
const configFile = path.join(home, 'config.json');
writeFileSync(configFile, JSON.stringify(testConfig({ local: { trainers: { slow: fakeTrainer('ok', 8), quick: fakeTrainer('ok', 1) } } }, path.join(home, 'starts.log'))));

let server: DevServer | undefined;
let worker: ChildProcess | undefined;
let port = 0;
const startServer = async (): Promise<DevServer> =>
  startDevServer({ port, dbFile: path.join(home, 'temporal.db'), logFile: path.join(home, 'temporal.log'), detached: true, readyTimeoutMs: 60_000 });

afterAll(async () => {
  await killHard(worker);
  await server?.stop();
});

async function connect(): Promise<{ client: Client; connection: Connection }> {
  const connection = await Connection.connect({ address: `127.0.0.1:${port}` });
  return { client: new Client({ connection }), connection };
}

test(`SIGKILL of the Temporal dev server (file database) mid-job, ${RESTARTS}×: every job completes, once`, async () => {
  port = await freePort();
  server = await startServer();
  worker = spawnWorker({ home, configFile, taskQueue: TQ, address: server.address });
  let { client, connection } = await connect();
  const specs = Array.from({ length: JOBS }, (_, i) => makeSignedSpec({ trainer: { image: i % 2 ? 'quick' : 'slow' } }));
  const handles = await Promise.all(specs.map((s) => startJob(client, TQ, s)));
  await Promise.all(handles.map((h) => waitForStatus(h, (s) => s.state === 'RUNNING' || s.state === 'COMPLETED', 60_000)));
  await connection.close();
  const started = Date.now();
  const outages: number[] = [];
  for (let r = 0; r < RESTARTS; r++) {
    server.process.kill('SIGKILL');
    await new Promise<void>((resolve) => (server!.process.exitCode !== null || server!.process.signalCode !== null ? resolve() : server!.process.once('exit', () => resolve())));
    const down = Date.now();
    await sleep(3000); // the quick trainers finish while Temporal is down
    server = await startServer();
    outages.push(Date.now() - down);
    if (r < RESTARTS - 1) await sleep(2000);
  }
  expect(worker.exitCode).toBeNull(); // the worker rode it out
  ({ client, connection } = await connect());
  try {
    const expected: Expectation[] = specs.map((s) => ({ jobId: s.job_id, state: 'COMPLETED', attempts: 1 }));
    const verdict = await verifyJobs(client, home, expected, 120_000);
    report('temporal-restart', { restarts: RESTARTS, outageMs: outages, secondsAfterFirstKill: (Date.now() - started) / 1000, ...verdict });
    expect(verdict.problems).toEqual([]);
  } finally {
    await connection.close();
  }
}, 300_000);
