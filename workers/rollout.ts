/**
 * The rollout role (docs/architecture.md §7): polls `forge-rollout` and runs rollout activities against the OpenAI-compatible
 * inference server it fronts (FORGE_INFERENCE_URL: vLLM or SGLang on a GPU host, the reference trainer's
 * `serve --allow-weight-updates` elsewhere). One inference server per worker: the worker decides which policy version
 * it holds. With FORGE_MQTT_URL it also listens for policy announcements and prefetches the weights.
 *
 * Settings: workers/config/rollout.ts (every variable in docs/configuration.md); the pool's activity slots are
 * concurrent rollout activities (default 4). SIGTERM drains: running rollouts get the grace time, then are
 * handed back to Temporal and retried on another worker.
 */
import os from 'node:os';
import path from 'node:path';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { defaultSuiteDir } from '../activities/eval-suite';
import { PolicyBus } from '../activities/rl/policy-bus';
import { LoadedPolicy, PolicyCache } from '../activities/rl/policy-cache';
import { createRolloutActivities, KnownSessions, type RolloutHooks } from '../activities/rl/rollout';
import { TaskRegistry } from '../activities/rl/tasks';
import { endpointToken, loadSessionKey } from '../common/rl-session';
import { readRolloutConfig, type RolloutSettings } from './config/rollout';
import { poolWorkerOptions } from './pool';
import { runMain } from './run-main';
import { runRole } from './run-role';

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
  /** The role's environment settings (workers/config/rollout.ts), read once at its start. */
  settings: RolloutSettings;
  identity?: string;
  deployment?: Pick<WorkerOptions, 'workerDeploymentOptions'>;
  hooks?: RolloutHooks;
}

export async function createRolloutWorker(o: RolloutWorkerOptions): Promise<RolloutWorker> {
  const { env, pool, home } = o.settings;
  const hostId = env.FORGE_HOST_ID ?? `${os.hostname()}-${process.pid}`;
  const cache = new PolicyCache(env.FORGE_ROLLOUT_CACHE_DIR ?? path.join(home, 'rollout-cache'), env.FORGE_ROLLOUT_KEEP_VERSIONS);
  const key = loadSessionKey(o.settings.sessionKey, home); // at start: a worker without the key fails here, not at its first rollout
  const sessionKey = (): Buffer => key;
  const sessions = new KnownSessions();
  let bus: PolicyBus | undefined;
  if (env.FORGE_MQTT_URL) {
    bus = await PolicyBus.connect({ url: env.FORGE_MQTT_URL, clientId: `forge-rollout-${hostId}` });
    await bus.subscribe(
      (a) => {
        const trainer = sessions.endpointOf(a.url);
        if (!trainer || cache.has(a.sha256)) return;
        cache
          .ensure({ version: a.version, url: a.url, sha256: a.sha256 }, endpointToken(sessionKey, trainer), undefined, 'prefetch')
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
    sessionKey,
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
  const config = readRolloutConfig();
  await runRole({
    role: 'rollout',
    config,
    async start({ connection, namespace, deployment }) {
      const r = await createRolloutWorker({ connection, namespace, settings: config.rollout, deployment });
      return {
        probe: r.worker,
        run: () => r.worker.run(),
        shutdown: () => r.worker.shutdown(),
        close: () => r.close(),
        banner: (health) =>
          `polling ${r.worker.options.taskQueue} on ${namespace}; inference ${config.rollout.env.FORGE_INFERENCE_URL}` +
          `${r.bus ? '; policy announcements over MQTT' : ''}${health ? `; health ${health}` : ''}`,
      };
    },
  });
}

if (require.main === module) runMain('rollout', main);
