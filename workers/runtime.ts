/**
 * Process-wide set-up shared by every worker role: Temporal's Runtime with Prometheus telemetry, and a small HTTP
 * endpoint for liveness/readiness probes and the Node process's own metrics.
 *
 *  FORGE_METRICS_ADDRESS  Temporal runtime telemetry (Core's exporter): slots used/available, poll and schedule-to-
 *                         start latency, sticky cache, activity/workflow task outcomes — GET /metrics.
 *  FORGE_HEALTH_ADDRESS   GET /healthz (200 unless the worker failed), GET /readyz (200 while it polls; 503 while it
 *                         starts or drains), GET /metrics (prom-client: process RSS, heap, event-loop lag).
 */
import http from 'node:http';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { DefaultLogger, Runtime, type State, type Worker } from '@temporalio/worker';
import type { WorkerProcessEnv } from './pool';

/** Installs Temporal's Runtime once per process (SIGINT/SIGTERM → every worker's graceful shutdown). */
export function installWorkerRuntime(role: string, e: WorkerProcessEnv): void {
  Runtime.install({
    logger: new DefaultLogger(e.FORGE_WORKER_LOG_LEVEL),
    ...(e.FORGE_METRICS_ADDRESS
      ? {
          telemetryOptions: {
            metrics: {
              prometheus: { bindAddress: e.FORGE_METRICS_ADDRESS, useSecondsForDurations: true },
              globalTags: { forge_role: role },
            },
          },
        }
      : {}),
  });
}

export interface HealthServer {
  url: string;
  close(): Promise<void>;
}

const LIVE: ReadonlySet<State> = new Set<State>(['INITIALIZED', 'RUNNING', 'STOPPING', 'DRAINING', 'DRAINED', 'STOPPED']);

/** Serves /healthz, /readyz and /metrics for `worker` on `address` (host:port); `more`: other metrics of the role. */
export async function startHealthServer(role: string, address: string, worker: Pick<Worker, 'getState'>, more: Registry[] = []): Promise<HealthServer> {
  const own = new Registry();
  collectDefaultMetrics({ register: own, prefix: 'forge_worker_', labels: { forge_role: role } });
  new Gauge({
    name: 'forge_worker_running',
    help: '1 while the Temporal worker polls its task queue, 0 while it starts, drains or after it stopped',
    labelNames: ['forge_role'] as const,
    registers: [own],
    collect() {
      this.set({ forge_role: role }, worker.getState() === 'RUNNING' ? 1 : 0);
    },
  });
  const server = http.createServer((req, res) => {
    const state = worker.getState();
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/healthz') return send(LIVE.has(state) ? 200 : 503, `${role} ${state}\n`);
    if (url === '/readyz') return send(state === 'RUNNING' ? 200 : 503, `${role} ${state}\n`);
    if (url === '/metrics') {
      Promise.all([own, ...more].map((r) => r.metrics())).then(
        (texts) => send(200, texts.join(''), own.contentType),
        (err: Error) => send(500, `${err.message}\n`),
      );
      return;
    }
    send(404, 'GET /healthz, /readyz or /metrics\n');
  });
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(i + 1));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  server.unref();
  const bound = server.address();
  const actual = bound && typeof bound === 'object' ? bound.port : port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${actual}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
