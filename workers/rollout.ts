/**
 * The rollout role (DESIGN.md §7): polls `forge-rollout` and runs rollout activities against the OpenAI-compatible
 * inference server it fronts (FORGE_INFERENCE_URL: vLLM or SGLang on a GPU host, the reference trainer's
 * `serve --allow-weight-updates` elsewhere). One inference server per worker: the worker decides which policy version
 * it holds. With FORGE_MQTT_URL it also listens for policy announcements and prefetches the weights.
 *
 * Env: FORGE_INFERENCE_URL (required), FORGE_INFERENCE_ADMIN_TOKEN, FORGE_ROLLOUT_TASK_QUEUE (forge-rollout),
 * FORGE_ROLLOUT_CACHE_DIR (FORGE_HOME/rollout-cache), FORGE_ROLLOUT_KEEP_VERSIONS (4), FORGE_RL_TASKS_DIR (evals/),
 * FORGE_HOST_ID, FORGE_MQTT_URL, FORGE_ROLLOUT_HEARTBEAT_MS; pool sizes FORGE_ROLLOUT_* (workers/pool.ts: the slots
 * are concurrent rollout activities, default 4). SIGTERM drains: running rollouts get the grace time, then are
 * handed back to Temporal and retried on another worker.
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { defaultSuiteDir } from '../activities/eval-suite';
import { PolicyBus } from '../activities/rl/policy-bus';
import { LoadedPolicy, PolicyCache } from '../activities/rl/policy-cache';
import { createRolloutActivities, KnownSessions, type RolloutHooks } from '../activities/rl/rollout';
import { TaskRegistry } from '../activities/rl/tasks';
import { forgeHome } from '../common/paths';
import { connectWorker, parseEnv, readTemporalEnv } from '../common/temporal';
import { TASK_QUEUE_ROLLOUT } from '../workflows/names';
import { deploymentOptions, poolWorkerOptions, readPool, readWorkerProcessEnv, type PoolDefaults } from './pool';
import { installWorkerRuntime, startHealthServer } from './runtime';

export const ROLLOUT_POOL: PoolDefaults = {
  workflowTasks: 2,
  activities: 4,
  localActivities: 1,
  cachedWorkflows: 0,
  shutdownGraceSeconds: 30,
};

export const rolloutEnvSchema = z.object({
  FORGE_INFERENCE_URL: z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, '')),
  FORGE_INFERENCE_ADMIN_TOKEN: z.string().min(1).optional(),
  FORGE_ROLLOUT_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_ROLLOUT),
  FORGE_ROLLOUT_CACHE_DIR: z.string().min(1).optional(),
  FORGE_ROLLOUT_KEEP_VERSIONS: z.coerce.number().int().min(1).default(4),
  FORGE_ROLLOUT_HEARTBEAT_MS: z.coerce.number().int().min(100).default(2000),
  FORGE_RL_TASKS_DIR: z.string().min(1).optional(),
  FORGE_HOST_ID: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'letters, digits, ".", "_" and "-"').optional(),
  FORGE_MQTT_URL: z.url({ protocol: /^(mqtts?|wss?)$/ }).optional(),
});
export type RolloutEnv = z.output<typeof rolloutEnvSchema>;

export interface RolloutWorker {
  worker: Worker;
  bus: PolicyBus | undefined;
  cache: PolicyCache;
  /** Weights downloaded ahead of time from announcements, before any activity asked (sha256s). */
  prefetched(): string[];
  close(): Promise<void>;
}

export interface RolloutWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  env?: NodeJS.ProcessEnv;
  home?: string;
  identity?: string;
  deployment?: Pick<WorkerOptions, 'workerDeploymentOptions'>;
  hooks?: RolloutHooks;
}

export async function createRolloutWorker(o: RolloutWorkerOptions): Promise<RolloutWorker> {
  const raw = o.env ?? process.env;
  const env = parseEnv(rolloutEnvSchema, raw);
  const pool = readPool('ROLLOUT', ROLLOUT_POOL, raw);
  const home = o.home ?? forgeHome(raw);
  const hostId = env.FORGE_HOST_ID ?? `${os.hostname()}-${process.pid}`;
  const cache = new PolicyCache(env.FORGE_ROLLOUT_CACHE_DIR ?? path.join(home, 'rollout-cache'), env.FORGE_ROLLOUT_KEEP_VERSIONS);
  const sessions = new KnownSessions();
  let bus: PolicyBus | undefined;
  if (env.FORGE_MQTT_URL) {
    bus = await PolicyBus.connect({ url: env.FORGE_MQTT_URL, clientId: `forge-rollout-${hostId}` });
    await bus.subscribe(
      (a) => {
        const trainer = sessions.endpointOf(a.url);
        if (!trainer || cache.has(a.sha256)) return;
        cache
          .ensure({ version: a.version, url: a.url, sha256: a.sha256 }, trainer.token, undefined, 'prefetch')
          .catch((err: Error) => console.warn(`[rollout] prefetch of ${a.job_id} version ${a.version} failed: ${err.message}`));
      },
      (topic, why) => console.warn(`[rollout] ignoring an announcement on ${topic}: ${why}`),
    );
  }
  const activities = createRolloutActivities({
    inferenceUrl: env.FORGE_INFERENCE_URL,
    ...(env.FORGE_INFERENCE_ADMIN_TOKEN ? { inferenceAdminToken: env.FORGE_INFERENCE_ADMIN_TOKEN } : {}),
    cache,
    loaded: new LoadedPolicy(),
    tasks: new TaskRegistry(env.FORGE_RL_TASKS_DIR ?? defaultSuiteDir()),
    sessions,
    identity: o.identity ?? hostId,
    heartbeatMs: env.FORGE_ROLLOUT_HEARTBEAT_MS,
    ...(o.hooks ? { hooks: o.hooks } : {}),
  });
  const worker = await Worker.create({
    connection: o.connection,
    namespace: o.namespace,
    taskQueue: env.FORGE_ROLLOUT_TASK_QUEUE,
    activities,
    ...poolWorkerOptions(pool),
    ...o.deployment,
    identity: o.identity ?? `rollout@${hostId}`,
  });
  return {
    worker,
    bus,
    cache,
    prefetched: () => [...cache.origins].filter(([, o]) => o === 'prefetch').map(([sha]) => sha),
    async close() {
      await bus?.close().catch(() => undefined);
    },
  };
}

/** Runs the rollout role until SIGTERM/SIGINT (graceful drain). */
export async function main(): Promise<void> {
  const processEnv = readWorkerProcessEnv();
  const temporal = readTemporalEnv();
  installWorkerRuntime('rollout', processEnv);
  const connection = await connectWorker(temporal);
  const r = await createRolloutWorker({ connection, namespace: temporal.TEMPORAL_NAMESPACE, deployment: deploymentOptions(processEnv) });
  const health = processEnv.FORGE_HEALTH_ADDRESS ? await startHealthServer('rollout', processEnv.FORGE_HEALTH_ADDRESS, r.worker) : undefined;
  console.log(
    `[rollout] polling ${r.worker.options.taskQueue} on ${temporal.TEMPORAL_NAMESPACE}; inference ${process.env.FORGE_INFERENCE_URL}` +
      `${r.bus ? '; policy announcements over MQTT' : ''}${health ? `; health ${health.url}` : ''}`,
  );
  if (process.send) process.once('disconnect', () => r.worker.shutdown());
  try {
    await r.worker.run();
  } finally {
    await r.close();
    await health?.close();
    await connection.close();
  }
  console.log('[rollout] stopped');
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`[rollout] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
