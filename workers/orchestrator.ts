/**
 * The orchestrator worker: `trainingJob` workflows and the control activities on `forge-orchestrator`, with its
 * companions (the backends' read and admission entities, each on its own queue).
 * Run it as many times as you like (one process per host); pool sizes come from the environment.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createBackendReadActivities } from '../activities/backends/read-activities';
import { ourInstallationTag } from '../activities/backends/installation';
import { createBackends } from '../activities/backends/registry';
import type { BackendReader } from '../activities/backends/types';
import { capsCountedByEntity, createCapacityActivities } from '../activities/control/capacity';
import { createControlActivities } from '../activities/control/activities';
import { createReaperActivities } from '../activities/reaper';
import { reaperRegistry } from '../activities/reaper-metrics';
import { createResultActivities, type ResultHooks } from '../activities/results';
import { createRlCollectActivities, withRlOutputs } from '../activities/rl/collect';
import type { ForgeConfig } from '../common/config';
import { requireReplicaProvisioning } from '../common/provisioning';
import { tracingWorkerOptions } from '../common/tracing';
import { backendReadTaskQueue, capacityTaskQueue } from '../common/names';
import { readOrchestratorConfig, type OrchestratorSettings } from './config/orchestrator';
import { poolWorkerOptions } from './pool';
import { runMain } from './run-main';
import { runRole } from './run-role';

export interface OrchestratorWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  config: ForgeConfig;
  home: string;
  taskQueue?: string;
  /** Pre-bundled workflow code; without it the workflows are bundled at start (slower). */
  workflowBundlePath?: string;
  /** The role's environment settings (workers/config/orchestrator.ts), read once at its start. */
  settings: OrchestratorSettings;
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
  const { env, pool } = o.settings;
  // max_concurrent is counted by each backend's admission entity (activities/control/capacity.ts), not by the backends here.
  // Tagged with the installation, so that installations sharing a provider account never reap each other's deployments.
  const backends = createBackends(capsCountedByEntity(o.config), o.home, { installation: ourInstallationTag(o.home) });
  const activities = createControlActivities({
    config: o.config,
    backends,
    pollIntervalMs: (name) => o.config.backends[name]?.poll_interval_ms ?? 1000,
    fairness: env.FORGE_ADMISSION_FAIRNESS,
    home: o.home,
  });
  const results = createResultActivities({
    config: o.config.results,
    home: o.home,
    backends: withRlOutputs(backends),
    envPassthrough: o.config.trainer_env_passthrough,
    ...(o.resultHooks ? { hooks: o.resultHooks } : {}),
  });
  const tracing = tracingWorkerOptions();
  // Traced: the OTel workflow interceptors must be in the bundle, so bundle at start (the pre-built one has none).
  const bundle = tracing ? undefined : (o.workflowBundlePath ?? env.FORGE_WORKFLOW_BUNDLE ?? defaultWorkflowBundle());
  const code: Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> = bundle
    ? { workflowBundle: { codePath: bundle } }
    : { workflowsPath: require.resolve('../workflows') };
  const taskQueue = o.taskQueue ?? env.FORGE_ORCHESTRATOR_TASK_QUEUE;
  const worker = await Worker.create({
    connection: o.connection,
    namespace: o.namespace,
    taskQueue,
    ...code,
    // rl jobs: the grpoRun child collects the final policy here; the results pipeline commits it (withRlOutputs).
    activities: {
      ...activities,
      ...results,
      ...createRlCollectActivities({ home: o.home, env: o.settings.sessionKey }),
      ...createReaperActivities({ config: o.config, backends }),
    },
    ...poolWorkerOptions(pool),
    ...o.deployment,
    ...(o.identity ? { identity: o.identity } : {}),
    ...tracing,
  });
  return withCompanions(worker, o, code, taskQueue, backends);
}

/**
 * Companion workers in this process, each on its own queue next to the orchestrator's, so that jobs (their workflow
 * tasks waiting on admission, their long-running followers) can never take every slot they need: the read entities
 * of workflows/backend-read.ts with their activity (the API's logs and health), and, with a backend that has
 * max_concurrent, the admission entities (capacityTaskQueue). They run and stop with the orchestrator worker.
 */
async function withCompanions(
  worker: Worker,
  o: OrchestratorWorkerOptions,
  code: Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'>,
  taskQueue: string,
  backends: ReadonlyMap<string, BackendReader>,
): Promise<Worker> {
  const companion = (suffix: string, queue: string, activities: object): Promise<Worker> =>
    Worker.create({
      connection: o.connection,
      namespace: o.namespace,
      taskQueue: queue,
      ...code,
      activities,
      maxConcurrentWorkflowTaskExecutions: 10,
      maxConcurrentActivityTaskExecutions: 10,
      ...(o.identity ? { identity: `${o.identity}-${suffix}` } : {}),
    });
  const companions = [await companion('read', backendReadTaskQueue(taskQueue), createBackendReadActivities(backends))];
  if (Object.values(o.config.backends).some((b) => b.max_concurrent !== undefined)) {
    companions.push(await companion('capacity', capacityTaskQueue(taskQueue), createCapacityActivities()));
  }
  const run = worker.run.bind(worker);
  const shutdown = worker.shutdown.bind(worker);
  const stopCompanions = (): void => {
    for (const c of companions) if (c.getState() === 'RUNNING') c.shutdown();
  };
  worker.run = async () => {
    const all = Promise.all(companions.map((c) => c.run()));
    try {
      await run();
    } finally {
      stopCompanions();
      await all;
    }
  };
  worker.shutdown = () => {
    stopCompanions();
    shutdown();
  };
  return worker;
}

/** Runs the orchestrator role until SIGTERM/SIGINT (graceful drain) or, under npm start, until its parent dies. */
export async function main(): Promise<void> {
  const config = readOrchestratorConfig();
  // The one provisioned identity and a shared registry, before anything connects (common/provisioning.ts).
  requireReplicaProvisioning(config.operator, config.home);
  const p = config.process;
  await runRole({
    role: 'orchestrator',
    config,
    tracing: 'forge-orchestrator',
    registries: [reaperRegistry],
    async start({ connection, namespace, deployment }) {
      const { operator, home, orchestrator: settings } = config;
      const worker = await createOrchestratorWorker({ connection, namespace, config: operator, home, settings, deployment });
      // The SDK's Runtime turns SIGINT/SIGTERM into worker.shutdown(): polling stops, running tasks get
      // FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS to finish, then are cancelled and handed back to Temporal (a follower
      // resumes on another worker from its heartbeat; the trainers keep running in their own process groups).
      return {
        probe: worker,
        run: () => worker.run(),
        shutdown: () => worker.shutdown(),
        banner(health) {
          const version = p.FORGE_WORKER_BUILD_ID ? `; deployment ${p.FORGE_WORKER_DEPLOYMENT} build ${p.FORGE_WORKER_BUILD_ID}` : '';
          const endpoints = [p.FORGE_METRICS_ADDRESS && `metrics ${p.FORGE_METRICS_ADDRESS}`, health && `health ${health}`].filter(Boolean);
          return (
            `polling ${worker.options.taskQueue} on ${namespace}; backends: ${Object.keys(config.operator.backends).join(', ')}${version}` +
            (endpoints.length ? `; ${endpoints.join(', ')}` : '')
          );
        },
      };
    },
  });
}

if (require.main === module) runMain('orchestrator', main);
