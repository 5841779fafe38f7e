/**
 * The grpo role (docs/architecture.md §7): a GRPO trainer host. It polls the shared queue `forge-grpo` while one of its fixed
 * slots is free (acquireTrainerHost starts a `forge-trainer grpo-server` process for the job in that slot), and its own
 * queue `forge-grpo@<hostId>` for the updates, watches, exports and releases of the policies it holds.
 *
 * Settings: workers/config/grpo.ts (every variable in docs/configuration.md); FORGE_GRPO_MAX_ACTIVITIES is the number
 * of slots (policies held at once, default 1). SIGTERM drains: updates in flight finish, every session checkpoints and stops, and the runs move on to
 * other hosts from those checkpoints.
 */
import os from 'node:os';
import path from 'node:path';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createAcquireActivities, createHostActivities } from '../activities/rl/host/activities';
import { TrainerHost } from '../activities/rl/host/trainer-host';
import { PolicyBus } from '../activities/rl/policy-bus';
import { rlRegistry } from '../activities/rl/metrics';
import { loadSessionKey } from '../common/rl-session';
import { grpoHostTaskQueue } from '../common/names';
import { defaultTrainerCommand, readGrpoConfig, type GrpoSettings } from './config/grpo';
import { runMain } from './run-main';
import { runRole } from './run-role';

export interface GrpoWorker {
  host: TrainerHost;
  /** The shared queue's worker (acquire) and this host's own (updates, watch, export, release). */
  shared: Worker;
  own: Worker;
  bus: PolicyBus | undefined;
  /** Both workers until they stop, then the drain of every session. */
  run(): Promise<void>;
  shutdown(): void;
}

export interface GrpoWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  /** The role's environment settings (workers/config/grpo.ts), read once at its start. */
  settings: GrpoSettings;
  deployment?: Pick<WorkerOptions, 'workerDeploymentOptions'>;
}

export async function createGrpoWorker(o: GrpoWorkerOptions): Promise<GrpoWorker> {
  const { env, pool, home } = o.settings;
  const hostId = env.FORGE_HOST_ID ?? `${os.hostname()}-${process.pid}`;
  const slots = pool.maxActivities;
  const sessionKey = loadSessionKey(o.settings.sessionKey, home); // at start: a host without the key fails here, not at its first job
  const bus = env.FORGE_MQTT_URL ? await PolicyBus.connect({ url: env.FORGE_MQTT_URL, clientId: `forge-grpo-${hostId}` }) : undefined;
  const host = new TrainerHost({
    hostId,
    taskQueue: env.FORGE_GRPO_TASK_QUEUE,
    hostQueue: grpoHostTaskQueue(hostId, env.FORGE_GRPO_TASK_QUEUE),
    slots,
    stateDir: env.FORGE_GRPO_STATE_DIR ?? path.join(home, 'grpo', 'state'),
    workDir: env.FORGE_GRPO_WORK_DIR ?? path.join(home, 'grpo', 'work', hostId),
    trainerCommand: env.FORGE_GRPO_TRAINER_COMMAND ?? defaultTrainerCommand(),
    trainerEnv: env.FORGE_GRPO_TRAINER_ENV ?? {},
    trainerEnvPassthrough: o.settings.trainerEnvPassthrough,
    devices: env.FORGE_GRPO_DEVICES?.split(';') ?? [],
    bindHost: env.FORGE_GRPO_BIND_HOST,
    advertiseHost: env.FORGE_GRPO_ADVERTISE_HOST ?? env.FORGE_GRPO_BIND_HOST,
    leaseSeconds: env.FORGE_GRPO_LEASE_SECONDS,
    startTimeoutMs: env.FORGE_GRPO_START_TIMEOUT_SECONDS * 1000,
    minUpdateSeconds: env.FORGE_GRPO_MIN_UPDATE_SECONDS,
    pipelineDepth: env.FORGE_GRPO_PIPELINE_DEPTH,
    ...(bus ? { bus } : {}),
    sessionKey: () => sessionKey,
  });
  const grace = `${pool.shutdownGraceSeconds} seconds`;
  const common = { connection: o.connection, namespace: o.namespace, shutdownGraceTime: grace, maxCachedWorkflows: 0, ...o.deployment };
  const shared = await Worker.create({
    ...common,
    taskQueue: env.FORGE_GRPO_TASK_QUEUE,
    identity: `grpo@${hostId}`,
    activities: createAcquireActivities(host),
    // One acquire at a time per free slot: a full host does not poll the shared queue at all.
    tuner: {
      workflowTaskSlotSupplier: { type: 'fixed-size', numSlots: 2 },
      activityTaskSlotSupplier: host.slotSupplier(),
      localActivityTaskSlotSupplier: { type: 'fixed-size', numSlots: 1 },
      nexusTaskSlotSupplier: { type: 'fixed-size', numSlots: 1 },
    },
  });
  const own = await Worker.create({
    ...common,
    taskQueue: host.ownQueue,
    identity: `grpo@${hostId}`,
    activities: createHostActivities(host),
    // Per held policy: its watch, an update, an export and a release may run at once.
    maxConcurrentActivityTaskExecutions: slots * 4,
  });
  host.start();
  let stopping = false;
  const shutdown = (): void => {
    if (stopping) return;
    stopping = true;
    host.beginDrain();
    for (const w of [shared, own]) if (w.getState() === 'RUNNING') w.shutdown();
  };
  return {
    host,
    shared,
    own,
    bus,
    shutdown,
    async run() {
      try {
        await Promise.all([shared.run(), own.run()]);
      } finally {
        await host.drain(pool.shutdownGraceSeconds * 1000);
        await bus?.close().catch(() => undefined);
      }
    },
  };
}

/** Runs the grpo role until SIGTERM/SIGINT (graceful drain: sessions checkpoint and stop). */
export async function main(): Promise<void> {
  const config = readGrpoConfig();
  let host: TrainerHost | undefined;
  await runRole({
    role: 'grpo',
    config,
    registries: [rlRegistry],
    // The Runtime turns SIGTERM into both workers' shutdown; the host starts draining its sessions at the same moment.
    onSignal: () => host?.beginDrain(),
    async start({ connection, namespace, deployment }) {
      const g = await createGrpoWorker({ connection, namespace, settings: config.grpo, deployment });
      host = g.host;
      return {
        probe: g.own,
        run: () => g.run(),
        shutdown: () => g.shutdown(),
        banner: (health) =>
          `host ${g.host.settings.hostId}: ${g.host.settings.slots} slot(s); polling ${g.shared.options.taskQueue} and ${g.own.options.taskQueue}` +
          ` on ${namespace}${g.bus ? '; announcing policy versions over MQTT' : ''}${health ? `; health ${health}` : ''}`,
      };
    },
  });
}

if (require.main === module) runMain('grpo', main);
