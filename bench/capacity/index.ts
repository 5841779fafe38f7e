/**
 * bench/capacity (issue 15): `npm run bench:capacity`. What asking the admission entity of a capped backend
 * (workflows/backend-capacity.ts) costs a job, measured as the control activities call it (activities/control/capacity.ts
 * CapacityGate: Update-with-start for acquire, Update for release), against a Temporal CLI dev server in memory and one
 * orchestrator worker (with its admission entities' worker) in this process. Prints a Markdown section for BENCHMARKS.md.
 *
 * - acquire granted + release, one job at a time (CAPACITY_CYCLES, default 200): the round trips a job adds to its
 *   admission and its close.
 * - a poll of a queued job (CAPACITY_WAITERS jobs queued behind a full cap, each polling CAPACITY_POLLS times):
 *   answered by the Update's validator, nothing written to history.
 * - CAPACITY_PARALLEL callers (default 16) acquiring and releasing at once against one entity, cap CAPACITY_CAP: grants
 *   per second, and the most slots ever held (must not exceed the cap). A waiting caller asks again every
 *   CAPACITY_POLL_MS or when a release made by this process granted it the slot, as the admission activity does.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { CapacityGate } from '../../activities/control/capacity';
import { parseConfig } from '../../common/config';
import { startDevServer } from '../../infra/dev-server';
import { orchestratorSettings } from '../../workers/config/orchestrator';
import { createOrchestratorWorker } from '../../workers/orchestrator';
import { capacityQuery } from '../../workflows/capacity/messages';
import type { CapacityState } from '../../workflows/capacity/slots';
import { capacityWorkflowId } from '../../common/names';
import { freePort, median, percentile } from '../lifecycle/util';

const num = (name: string, d: number): number => (process.env[name] ? Number(process.env[name]) : d);
const CYCLES = num('CAPACITY_CYCLES', 200);
const WAITERS = num('CAPACITY_WAITERS', 50);
const POLLS = num('CAPACITY_POLLS', 4);
const PARALLEL = num('CAPACITY_PARALLEL', 16);
const CAP = num('CAPACITY_CAP', 4);
const PARALLEL_CYCLES = num('CAPACITY_PARALLEL_CYCLES', 25);
/** A waiting caller's own poll (the activity's admission_poll_seconds); a release on this process wakes it sooner. */
const POLL_MS = num('CAPACITY_POLL_MS', 2000);
const TQ = 'bench-capacity';
const log = (msg: string): void => console.error(`[bench:capacity] ${msg}`);

async function timed<T>(ms: number[], fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const r = await fn();
  ms.push(performance.now() - t);
  return r;
}

const row = (what: string, ms: number[]): string =>
  `| ${what} | ${ms.length} | ${median(ms).toFixed(1)} | ${percentile(ms, 99).toFixed(1)} | ${Math.max(...ms).toFixed(1)} |`;

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-capacity-'));
  const server = await startDevServer({ port: await freePort(), logFile: path.join(dir, 'temporal.log'), readyTimeoutMs: 60_000 });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const native = await NativeConnection.connect({ address: server.address });
  // A capped backend, so that the worker also polls the entities' queue.
  const config = parseConfig({ backends: { local: { kind: 'local', max_concurrent: 1, trainers: { x: { command: ['/bin/true'] } } } }, results: { enabled: false } });
  const worker = await createOrchestratorWorker({ connection: native, namespace: 'default', config, home: dir, taskQueue: TQ, settings: orchestratorSettings({}) });
  const running = worker.run();
  const gate = new CapacityGate(60, () => client, () => TQ);
  const slot = (workflowId: string, owner: string, cap: number) => ({ workflowId, owner, cap, claimMs: 60_000 });
  const out: string[] = [];
  try {
    // Warm-up: starts the entity (update-with-start) and the worker's caches.
    const first: number[] = [];
    await timed(first, () => gate.acquire('serial', slot('job-warm', 'o', 1)));
    await gate.release('serial', { workflowId: 'job-warm' });

    log(`${CYCLES} acquire + release cycles, one at a time`);
    const acquireMs: number[] = [];
    const releaseMs: number[] = [];
    for (let i = 0; i < CYCLES; i++) {
      const r = await timed(acquireMs, () => gate.acquire('serial', slot(`job-${i}`, `owner-${i % 5}`, 1)));
      if (!r.granted) throw new Error(`cycle ${i}: not granted (${JSON.stringify(r)})`);
      await timed(releaseMs, () => gate.release('serial', { workflowId: `job-${i}` }));
    }

    log(`${WAITERS} jobs queued behind a full cap, ${POLLS} polls each`);
    await gate.acquire('queued', slot('job-holder', 'h', 1));
    const enqueueMs: number[] = [];
    for (let i = 0; i < WAITERS; i++) await timed(enqueueMs, () => gate.acquire('queued', slot(`job-w${i}`, `owner-${i % 5}`, 1)));
    const history = async (): Promise<number> => (await client.workflow.getHandle(capacityWorkflowId('queued', TQ)).fetchHistory()).events?.length ?? 0;
    const eventsBefore = await history();
    const pollMs: number[] = [];
    for (let p = 0; p < POLLS; p++) for (let i = 0; i < WAITERS; i++) await timed(pollMs, () => gate.acquire('queued', slot(`job-w${i}`, `owner-${i % 5}`, 1)));
    const eventsAfter = await history();

    log(`${PARALLEL} callers × ${PARALLEL_CYCLES} cycles at once, cap ${CAP}`);
    let mostHeld = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          mostHeld = Math.max(mostHeld, ((await client.workflow.getHandle(capacityWorkflowId('parallel', TQ)).query(capacityQuery)) as CapacityState).holders.length);
        } catch {
          // not started yet
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const grantMs: number[] = [];
    let overCap = 0;
    let holding = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: PARALLEL }, async (_, c) => {
        for (let k = 0; k < PARALLEL_CYCLES; k++) {
          const id = `job-p${c}-${k}`;
          const asked = performance.now();
          for (;;) {
            const r = await gate.acquire('parallel', slot(id, `owner-${c % 4}`, CAP));
            if (r.granted) break;
            // As the admission activity waits: until a release made here grants it the slot, or its next poll.
            const woken = gate.wakeup(id);
            await Promise.race([woken.promise, new Promise((res) => setTimeout(res, POLL_MS))]);
            woken.cancel();
          }
          grantMs.push(performance.now() - asked);
          if (++holding > CAP) overCap++;
          await new Promise((r) => setTimeout(r, 5));
          holding--;
          await gate.release('parallel', { workflowId: id });
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    sampling = false;
    await sampler;

    out.push(
      '### Admission entity (max_concurrent across replicas)',
      '',
      `Measured on ${new Date().toISOString().slice(0, 10)} by \`bench/capacity\`: \`CAPACITY_CYCLES=${CYCLES} CAPACITY_WAITERS=${WAITERS} CAPACITY_POLLS=${POLLS} CAPACITY_PARALLEL=${PARALLEL} CAPACITY_PARALLEL_CYCLES=${PARALLEL_CYCLES} CAPACITY_CAP=${CAP} CAPACITY_POLL_MS=${POLL_MS} npm run bench:capacity\`; ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, Temporal CLI dev server in memory, one orchestrator worker in the same process. Round trips in ms, as the control activities make them (activities/control/capacity.ts).`,
      '',
      '| call | n | p50 ms | p99 ms | max ms |',
      '|---|---|---|---|---|',
      row('first acquire (update-with-start starts the entity)', first),
      row('acquire, granted at once (a slot free)', acquireMs),
      row('release (the deployment was closed)', releaseMs),
      row('acquire of a new job, queued (recorded)', enqueueMs),
      row(`poll of a queued job (validator answers; history ${eventsBefore} → ${eventsAfter} events)`, pollMs),
      row(`${PARALLEL} callers at once, cap ${CAP}: asked → granted`, grantMs),
      '',
      `${PARALLEL} callers × ${PARALLEL_CYCLES} grants: ${(grantMs.length / seconds).toFixed(1)} grants/s through one entity; most slots held at once (entity query every 50 ms): ${mostHeld} (cap ${CAP}); callers that held a slot beyond the cap: ${overCap}.`,
      '',
    );
  } finally {
    worker.shutdown();
    await running;
    await native.close();
    await connection.close();
    await server.stop();
  }
  console.log(out.join('\n'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
