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
import { createResultActivities, type ResultHooks } from '../activities/results';
import { createRlCollectActivities, withRlOutputs } from '../activities/rl/collect';
import { loadConfig, type ForgeConfig } from '../common/config';
import { forgeHome } from '../common/paths';
import { connectWorker, parseEnv, readTemporalEnv } from '../common/temporal';
import { TASK_QUEUE_ORCHESTRATOR } from '../workflows/names';
import { deploymentOptions, poolWorkerOptions, readPool, readWorkerProcessEnv, type PoolDefaults } from './pool';
import { installWorkerRuntime, startHealthServer } from './runtime';

/** Pool defaults of the orchestrator role (FORGE_ORCHESTRATOR_*; see workers/pool.ts for every variable). */
export const ORCHESTRATOR_POOL: PoolDefaults = {
  workflowTasks: 50,
  activities: 500,
  localActivities: 50,
  // Cached workflows cost RSS (bench/load: 1,000 running jobs → 1.03 GiB with 250 cached, 0.84 GiB with 100); an
  // evicted one replays its short history (tens of events) at its next transition. BENCHMARKS.md "Load".
  cachedWorkflows: 100,
  shutdownGraceSeconds: 5,
};

export const orchestratorEnvSchema = z.object({
  FORGE_WORKFLOW_BUNDLE: z.string().optional(),
  /** Another queue than forge-orchestrator: tests, or a blue/green roll-out. */
  FORGE_ORCHESTRATOR_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_ORCHESTRATOR),
  /** Free slots go to waiting owners in round robin ("owner", activities/fair-admission.ts), or first come ("off"). */
  FORGE_ADMISSION_FAIRNESS: z.enum(['owner', 'off']).default('owner'),
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
  /** Worker Deployment Versioning (workers/pool.ts deploymentOptions); unversioned without it. */
  deployment?: Pick<WorkerOptions, 'workerDeploymentOptions'>;
  /** Tests: hooks into the result activities. */
  resultHooks?: ResultHooks;
}

/** The pre-bundled workflow code made by `npm run build`, if present. */
export function defaultWorkflowBundle(): string | undefined {
  const file = path.resolve(__dirname, '..', 'workflow-bundle.js');
  return existsSync(file) ? file : undefined;
}

export async function createOrchestratorWorker(o: OrchestratorWorkerOptions): Promise<Worker> {
  const env = parseEnv(orchestratorEnvSchema, o.env ?? process.env);
  const pool = readPool('ORCHESTRATOR', ORCHESTRATOR_POOL, o.env ?? process.env);
  const backends = createBackends(o.config, o.home);
  const activities = createControlActivities({
    config: o.config,
    backends,
    pollIntervalMs: (name) => o.config.backends[name]?.poll_interval_ms ?? 1000,
    fairness: env.FORGE_ADMISSION_FAIRNESS,
  });
  const results = createResultActivities({ config: o.config.results, home: o.home, backends: withRlOutputs(backends), ...(o.resultHooks ? { hooks: o.resultHooks } : {}) });
  const bundle = o.workflowBundlePath ?? env.FORGE_WORKFLOW_BUNDLE ?? defaultWorkflowBundle();
  const code: Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> = bundle
    ? { workflowBundle: { codePath: bundle } }
    : { workflowsPath: require.resolve('../workflows') };
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace,
    taskQueue: o.taskQueue ?? env.FORGE_ORCHESTRATOR_TASK_QUEUE,
    ...code,
    // rl jobs: the grpoRun child collects the final policy here; the results pipeline commits it (withRlOutputs).
    activities: { ...activities, ...results, ...createRlCollectActivities({ home: o.home }) },
    ...poolWorkerOptions(pool),
    ...o.deployment,
    ...(o.identity ? { identity: o.identity } : {}),
  });
}

/** Runs the orchestrator role until SIGTERM/SIGINT (graceful drain) or, under npm start, until its parent dies. */
export async function main(): Promise<void> {
  const processEnv = readWorkerProcessEnv();
  const temporal = readTemporalEnv();
  const config = loadConfig();
  installWorkerRuntime('orchestrator', processEnv);
  const connection = await connectWorker(temporal);
  const worker = await createOrchestratorWorker({
    connection,
    namespace: temporal.TEMPORAL_NAMESPACE,
    config,
    home: forgeHome(),
    deployment: deploymentOptions(processEnv),
  });
  const health = processEnv.FORGE_HEALTH_ADDRESS ? await startHealthServer('orchestrator', processEnv.FORGE_HEALTH_ADDRESS, worker) : undefined;
  // The SDK's Runtime turns SIGINT/SIGTERM into worker.shutdown(): polling stops, running tasks get
  // FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS to finish, then are cancelled and handed back to Temporal (a follower
  // resumes on another worker from its heartbeat; the trainers keep running in their own process groups).
  const version = processEnv.FORGE_WORKER_BUILD_ID ? `; deployment ${processEnv.FORGE_WORKER_DEPLOYMENT} build ${processEnv.FORGE_WORKER_BUILD_ID}` : '';
  const endpoints = [processEnv.FORGE_METRICS_ADDRESS && `metrics ${processEnv.FORGE_METRICS_ADDRESS}`, health && `health ${health.url}`].filter(Boolean);
  console.log(
    `[orchestrator] polling ${worker.options.taskQueue} on ${temporal.TEMPORAL_NAMESPACE}; backends: ${Object.keys(config.backends).join(', ')}${version}` +
      (endpoints.length ? `; ${endpoints.join(', ')}` : ''),
  );
  // Started by `npm start` with an IPC channel: when that parent dies (even by SIGKILL), stop rather than linger.
  if (process.send) process.once('disconnect', () => worker.shutdown());
  try {
    await worker.run();
  } finally {
    await health?.close();
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
