/**
 * The one main() of every worker role (orchestrator, rollout, grpo, the embedded local-rl): Temporal's Runtime with
 * its telemetry, the connection, the role's workers, the health endpoint, the "polling …" banner, a graceful drain on
 * SIGTERM/SIGINT (the Runtime shuts every Temporal worker down; `onSignal` adds what a role drains besides), a stop
 * when the parent of `npm start` is gone, and an orderly close. The role's settings are read before (its config
 * module, workers/config/), so that a bad variable stops the process before anything connects.
 */
import type { Registry } from 'prom-client';
import type { NativeConnection, Worker, WorkerOptions } from '@temporalio/worker';
import { connectWorker, type TemporalEnv } from '../common/temporal';
import { initTracing } from '../common/tracing';
import { deploymentOptions, type WorkerProcessEnv } from './pool';
import { installWorkerRuntime, startHealthServer } from './runtime';

/** What a role's start() hands back: its workers as one thing to run and stop. */
export interface RoleWorkers {
  /** The worker whose state /healthz and /readyz report. */
  probe: Pick<Worker, 'getState'>;
  /** Runs until the workers stopped; a string replaces the closing "stopped" line. */
  run(): Promise<string | void>;
  /** Graceful stop, when the parent process (`npm start`) is gone. */
  shutdown(): void;
  /** The start line, without the "[role] " prefix; `health`: the health endpoint's URL when one serves. */
  banner(health: string | undefined): string;
  /** What the role closes after run() besides the health endpoint and the connection (buses, servers). */
  close?(): Promise<void>;
}

export interface RoleDefinition {
  role: string;
  /** The role's settings, read before (workers/config/): Temporal, the process-wide variables. */
  config: { temporal: TemporalEnv; process: WorkerProcessEnv };
  /** OpenTelemetry service name (traces only when OTEL_EXPORTER_OTLP_* is set; common/tracing.ts). */
  tracing?: string;
  /** The role's own metrics, served next to the process's on the health endpoint's /metrics. */
  registries?: Registry[];
  /** On SIGTERM/SIGINT, besides the Runtime's shutdown of every worker (grpo: its sessions start draining). */
  onSignal?: () => void;
  start(c: { connection: NativeConnection; namespace: string; deployment: Pick<WorkerOptions, 'workerDeploymentOptions'> }): Promise<RoleWorkers>;
}

/** Runs a role until its workers stop (SIGTERM/SIGINT, or the parent of `npm start` gone). */
export async function runRole(d: RoleDefinition): Promise<void> {
  const { temporal, process: env } = d.config;
  installWorkerRuntime(d.role, env);
  const tracing = d.tracing ? initTracing(d.tracing) : undefined;
  const connection = await connectWorker(temporal);
  const w = await d.start({ connection, namespace: temporal.TEMPORAL_NAMESPACE, deployment: deploymentOptions(env) });
  if (d.onSignal) for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, d.onSignal);
  const health = env.FORGE_HEALTH_ADDRESS ? await startHealthServer(d.role, env.FORGE_HEALTH_ADDRESS, w.probe, d.registries ?? []) : undefined;
  console.log(`[${d.role}] ${w.banner(health?.url)}`);
  // Started by `npm start` with an IPC channel: when that parent dies (even by SIGKILL), stop rather than linger.
  if (process.send) process.once('disconnect', () => w.shutdown());
  let stopped: string | void;
  try {
    stopped = await w.run();
  } finally {
    await w.close?.();
    await health?.close();
    await connection.close();
    await tracing?.shutdown(); // sends the last spans
  }
  console.log(`[${d.role}] ${stopped ?? 'stopped'}`);
}
