/**
 * The orchestrator worker: `trainingJob` workflows and the control activities on `forge-orchestrator`.
 * Run it as many times as you like (one process per host); pool sizes come from the environment.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createBackends } from '../activities/backends/registry';
import { createControlActivities } from '../activities/control';
import { loadConfig, type ForgeConfig } from '../common/config';
import { forgeHome } from '../common/paths';
import { connectWorker, parseEnv, readTemporalEnv } from '../common/temporal';
import { TASK_QUEUE_ORCHESTRATOR } from '../workflows/names';

const count = z.coerce.number().int().min(1);
export const orchestratorEnvSchema = z.object({
  FORGE_ORCHESTRATOR_MAX_WORKFLOW_TASKS: count.default(50),
  FORGE_ORCHESTRATOR_MAX_ACTIVITIES: count.default(500),
  FORGE_ORCHESTRATOR_MAX_LOCAL_ACTIVITIES: count.default(50),
  FORGE_ORCHESTRATOR_MAX_CACHED_WORKFLOWS: count.default(1000),
  FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS: z.coerce.number().nonnegative().default(5),
  FORGE_WORKFLOW_BUNDLE: z.string().optional(),
  /** Another queue than forge-orchestrator: tests, or a blue/green roll-out. */
  FORGE_ORCHESTRATOR_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_ORCHESTRATOR),
});

export interface OrchestratorWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  config: ForgeConfig;
  home: string;
  taskQueue?: string;
  /** Pre-bundled workflow code; without it the workflows are bundled at start (slower). */
  workflowBundlePath?: string;
  env?: NodeJS.ProcessEnv;
  identity?: string;
}

/** The pre-bundled workflow code made by `npm run build`, if present. */
export function defaultWorkflowBundle(): string | undefined {
  const file = path.resolve(__dirname, '..', 'workflow-bundle.js');
  return existsSync(file) ? file : undefined;
}

export async function createOrchestratorWorker(o: OrchestratorWorkerOptions): Promise<Worker> {
  const env = parseEnv(orchestratorEnvSchema, o.env ?? process.env);
  const backends = createBackends(o.config, o.home);
  const activities = createControlActivities({
    config: o.config,
    backends,
    pollIntervalMs: (name) => o.config.backends[name]?.poll_interval_ms ?? 1000,
  });
  const bundle = o.workflowBundlePath ?? env.FORGE_WORKFLOW_BUNDLE ?? defaultWorkflowBundle();
  const code: Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> = bundle
    ? { workflowBundle: { codePath: bundle } }
    : { workflowsPath: require.resolve('../workflows') };
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace,
    taskQueue: o.taskQueue ?? env.FORGE_ORCHESTRATOR_TASK_QUEUE,
    ...code,
    activities,
    maxConcurrentWorkflowTaskExecutions: env.FORGE_ORCHESTRATOR_MAX_WORKFLOW_TASKS,
    maxConcurrentActivityTaskExecutions: env.FORGE_ORCHESTRATOR_MAX_ACTIVITIES,
    maxConcurrentLocalActivityExecutions: env.FORGE_ORCHESTRATOR_MAX_LOCAL_ACTIVITIES,
    maxCachedWorkflows: env.FORGE_ORCHESTRATOR_MAX_CACHED_WORKFLOWS,
    shutdownGraceTime: `${env.FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS} seconds`,
    ...(o.identity ? { identity: o.identity } : {}),
  });
}

async function main(): Promise<void> {
  const temporal = readTemporalEnv();
  const config = loadConfig();
  const connection = await connectWorker(temporal);
  const worker = await createOrchestratorWorker({
    connection,
    namespace: temporal.TEMPORAL_NAMESPACE,
    config,
    home: forgeHome(),
  });
  // The SDK's Runtime turns SIGINT/SIGTERM into worker.shutdown(): polling stops, running tasks finish or are
  // handed back (the trainers keep running in their own process groups), then run() resolves.
  console.log(`[orchestrator] polling ${worker.options.taskQueue} on ${temporal.TEMPORAL_NAMESPACE}; backends: ${Object.keys(config.backends).join(', ')}`);
  // Started by `npm start` with an IPC channel: when that parent dies (even by SIGKILL), stop rather than linger.
  if (process.send) process.once('disconnect', () => worker.shutdown());
  try {
    await worker.run();
  } finally {
    await connection.close();
  }
  console.log('[orchestrator] stopped');
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`[orchestrator] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
