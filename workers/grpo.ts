/**
 * The grpo role (DESIGN.md §7): a GRPO trainer host. It polls the shared queue `forge-grpo` while one of its fixed
 * slots is free (acquireTrainerHost starts a `forge-trainer grpo-server` process for the job in that slot), and its own
 * queue `forge-grpo@<hostId>` for the updates, watches, exports and releases of the policies it holds.
 *
 * Env: FORGE_HOST_ID (this host's queue suffix; default hostname-pid), FORGE_GRPO_TASK_QUEUE (forge-grpo),
 * FORGE_GRPO_STATE_DIR (jobs' checkpoints and logs; must be shared by every trainer host so that another one can
 * resume a run — default FORGE_HOME/grpo/state), FORGE_GRPO_WORK_DIR, FORGE_GRPO_TRAINER_COMMAND (JSON argv; default
 * the bootstrap's forge-trainer grpo-server), FORGE_GRPO_DEVICES (CUDA_VISIBLE_DEVICES per slot, ";"-separated, e.g.
 * "0;1" or "0,1,2,3"), FORGE_GRPO_BIND_HOST / FORGE_GRPO_ADVERTISE_HOST (where the policy processes listen and the
 * name rollout workers reach them by; default 127.0.0.1), FORGE_GRPO_LEASE_SECONDS (300), FORGE_GRPO_START_TIMEOUT_SECONDS
 * (900), FORGE_GRPO_PIPELINE_DEPTH (updates a policy process takes at once: the running step and the next one,
 * waiting for its turn; default 2, 1 turns pipelining off), FORGE_MQTT_URL (announce every version, retained, on
 * forge/jobs/<job_id>/policy), and the pool variables FORGE_GRPO_* of workers/pool.ts — FORGE_GRPO_MAX_ACTIVITIES is the number of slots (policies held at once,
 * default 1). SIGTERM drains: updates in flight finish, every session checkpoints and stops, and the runs move on to
 * other hosts from those checkpoints.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createAcquireActivities, createHostActivities, TrainerHost } from '../activities/rl/grpo-host';
import { PolicyBus } from '../activities/rl/policy-bus';
import { forgeHome, repoRoot } from '../common/paths';
import { connectWorker, parseEnv, readTemporalEnv } from '../common/temporal';
import { grpoHostTaskQueue, TASK_QUEUE_GRPO } from '../workflows/names';
import { deploymentOptions, readPool, readWorkerProcessEnv, type PoolDefaults } from './pool';
import { installWorkerRuntime, startHealthServer } from './runtime';

export const GRPO_POOL: PoolDefaults = {
  workflowTasks: 2,
  activities: 1,
  localActivities: 1,
  cachedWorkflows: 0,
  shutdownGraceSeconds: 120,
};

const argv = z
  .string()
  .transform((s, ctx) => {
    try {
      return JSON.parse(s) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a JSON array of strings' });
      return z.NEVER;
    }
  })
  .pipe(z.array(z.string().min(1)).min(1));

export const grpoEnvSchema = z.object({
  FORGE_HOST_ID: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'letters, digits, ".", "_" and "-"').optional(),
  FORGE_GRPO_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE_GRPO),
  FORGE_GRPO_STATE_DIR: z.string().min(1).optional(),
  FORGE_GRPO_WORK_DIR: z.string().min(1).optional(),
  FORGE_GRPO_TRAINER_COMMAND: argv.optional(),
  FORGE_GRPO_TRAINER_ENV: z
    .string()
    .transform((s) => JSON.parse(s) as unknown)
    .pipe(z.record(z.string(), z.string()))
    .optional(),
  FORGE_GRPO_DEVICES: z.string().regex(/^[0-9,]+(;[0-9,]+)*$/, 'device lists like "0;1" or "0,1,2,3"').optional(),
  FORGE_GRPO_BIND_HOST: z.string().min(1).default('127.0.0.1'),
  FORGE_GRPO_ADVERTISE_HOST: z.string().min(1).optional(),
  FORGE_GRPO_LEASE_SECONDS: z.coerce.number().positive().default(300),
  FORGE_GRPO_START_TIMEOUT_SECONDS: z.coerce.number().positive().default(900),
  /** Benchmarks only: pad every update to at least this long (simulated accelerator time). */
  FORGE_GRPO_MIN_UPDATE_SECONDS: z.coerce.number().min(0).default(0),
  FORGE_GRPO_PIPELINE_DEPTH: z.coerce.number().int().min(1).max(2).default(2),
  FORGE_MQTT_URL: z.url({ protocol: /^(mqtts?|wss?)$/ }).optional(),
});

export function defaultTrainerCommand(): string[] {
  const local = path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer');
  return [existsSync(local) ? local : 'forge-trainer', 'grpo-server'];
}

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
  env?: NodeJS.ProcessEnv;
  home?: string;
  deployment?: Pick<WorkerOptions, 'workerDeploymentOptions'>;
}

export async function createGrpoWorker(o: GrpoWorkerOptions): Promise<GrpoWorker> {
  const raw = o.env ?? process.env;
  const env = parseEnv(grpoEnvSchema, raw);
  const pool = readPool('GRPO', GRPO_POOL, raw);
  const home = o.home ?? forgeHome(raw);
  const hostId = env.FORGE_HOST_ID ?? `${os.hostname()}-${process.pid}`;
  const slots = pool.maxActivities;
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
    devices: env.FORGE_GRPO_DEVICES?.split(';') ?? [],
    bindHost: env.FORGE_GRPO_BIND_HOST,
    advertiseHost: env.FORGE_GRPO_ADVERTISE_HOST ?? env.FORGE_GRPO_BIND_HOST,
    leaseSeconds: env.FORGE_GRPO_LEASE_SECONDS,
    startTimeoutMs: env.FORGE_GRPO_START_TIMEOUT_SECONDS * 1000,
    minUpdateSeconds: env.FORGE_GRPO_MIN_UPDATE_SECONDS,
    pipelineDepth: env.FORGE_GRPO_PIPELINE_DEPTH,
    ...(bus ? { bus } : {}),
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
  const processEnv = readWorkerProcessEnv();
  const temporal = readTemporalEnv();
  installWorkerRuntime('grpo', processEnv);
  const connection = await connectWorker(temporal);
  const g = await createGrpoWorker({ connection, namespace: temporal.TEMPORAL_NAMESPACE, deployment: deploymentOptions(processEnv) });
  // The Runtime turns SIGTERM into both workers' shutdown; the host starts draining its sessions at the same moment.
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => g.host.beginDrain());
  const health = processEnv.FORGE_HEALTH_ADDRESS ? await startHealthServer('grpo', processEnv.FORGE_HEALTH_ADDRESS, g.own) : undefined;
  console.log(
    `[grpo] host ${g.host.settings.hostId}: ${g.host.settings.slots} slot(s); polling ${g.shared.options.taskQueue} and ${g.own.options.taskQueue}` +
      ` on ${temporal.TEMPORAL_NAMESPACE}${g.bus ? '; announcing policy versions over MQTT' : ''}${health ? `; health ${health.url}` : ''}`,
  );
  if (process.send) process.once('disconnect', () => g.shutdown());
  try {
    await g.run();
  } finally {
    await health?.close();
    await connection.close();
  }
  console.log('[grpo] stopped');
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`[grpo] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
