/**
 * Worker pools (issue 8): what every worker role reads from its environment, checked by zod.
 *
 *  - Pool sizes per role, `FORGE_<ROLE>_*`: slots (workflow tasks, activities, local activities, cached workflows),
 *    pollers, rate limits (activities per second for this worker, and for the whole task queue).
 *  - Process-wide, any role: the Prometheus exporter of Temporal's runtime telemetry, the health endpoint,
 *    Worker Deployment Versioning (deployment name + build id).
 *
 * Pure apart from reading the env it is handed: the roles (workers/orchestrator.ts, and workers/rollout.ts and
 * workers/grpo.ts of the RL issue) turn these into WorkerOptions with poolWorkerOptions / deploymentOptions.
 */
import { z } from 'zod';
import type { WorkerOptions } from '@temporalio/worker';
import { parseEnv } from '../common/temporal';

const count = z.coerce.number().int().min(1);
const rate = z.coerce.number().positive();

export interface PoolDefaults {
  workflowTasks: number;
  activities: number;
  localActivities: number;
  cachedWorkflows: number;
  shutdownGraceSeconds: number;
}

/** `FORGE_<PREFIX>_*` pool variables of one role, with that role's defaults. */
export function poolEnvSchema(prefix: string, d: PoolDefaults): z.ZodObject<Record<string, z.ZodType<number | undefined>>> {
  const v = (key: string): string => `FORGE_${prefix}_${key}`;
  return z.object({
    // Slots: workflow tasks, activities and local activities run at once by this process.
    [v('MAX_WORKFLOW_TASKS')]: count.default(d.workflowTasks),
    [v('MAX_ACTIVITIES')]: count.default(d.activities),
    [v('MAX_LOCAL_ACTIVITIES')]: count.default(d.localActivities),
    // Workflows kept in memory (sticky cache); each costs RSS, none of them costs history.
    [v('MAX_CACHED_WORKFLOWS')]: z.coerce.number().int().min(0).default(d.cachedWorkflows),
    // Pollers: concurrent long polls per task type (default: the SDK's min(10, slots)).
    [v('WORKFLOW_POLLERS')]: z.coerce.number().int().min(2).optional(),
    [v('ACTIVITY_POLLERS')]: count.optional(),
    // Rate limits: activities started per second by this worker, and by all workers of the task queue.
    [v('ACTIVITIES_PER_SECOND')]: rate.optional(),
    [v('TASK_QUEUE_ACTIVITIES_PER_SECOND')]: rate.optional(),
    // SIGTERM: how long running activities may go on before they are cancelled and handed back.
    [v('SHUTDOWN_GRACE_SECONDS')]: z.coerce.number().nonnegative().default(d.shutdownGraceSeconds),
  });
}

/** A role's pool, read back from its parsed env without the prefix. */
export interface PoolSettings {
  maxWorkflowTasks: number;
  maxActivities: number;
  maxLocalActivities: number;
  maxCachedWorkflows: number;
  workflowPollers?: number;
  activityPollers?: number;
  activitiesPerSecond?: number;
  taskQueueActivitiesPerSecond?: number;
  shutdownGraceSeconds: number;
}

export function readPool(prefix: string, d: PoolDefaults, env: NodeJS.ProcessEnv = process.env): PoolSettings {
  const parsed = parseEnv(poolEnvSchema(prefix, d), env) as Record<string, number | undefined>;
  const get = (key: string): number | undefined => parsed[`FORGE_${prefix}_${key}`];
  const req = (key: string): number => {
    const value = get(key);
    if (value === undefined) throw new Error(`FORGE_${prefix}_${key} has no default`);
    return value;
  };
  const pollers = (key: string, slots: number): number | undefined => {
    const value = get(key);
    return value === undefined ? undefined : Math.min(value, slots);
  };
  const maxWorkflowTasks = req('MAX_WORKFLOW_TASKS');
  const maxActivities = req('MAX_ACTIVITIES');
  const settings: PoolSettings = {
    maxWorkflowTasks,
    maxActivities,
    maxLocalActivities: req('MAX_LOCAL_ACTIVITIES'),
    maxCachedWorkflows: req('MAX_CACHED_WORKFLOWS'),
    shutdownGraceSeconds: req('SHUTDOWN_GRACE_SECONDS'),
  };
  const optional = {
    workflowPollers: pollers('WORKFLOW_POLLERS', maxWorkflowTasks),
    activityPollers: pollers('ACTIVITY_POLLERS', maxActivities),
    activitiesPerSecond: get('ACTIVITIES_PER_SECOND'),
    taskQueueActivitiesPerSecond: get('TASK_QUEUE_ACTIVITIES_PER_SECOND'),
  };
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined) (settings as unknown as Record<string, number>)[key] = value;
  }
  return settings;
}

/** The WorkerOptions a pool maps to. */
export function poolWorkerOptions(p: PoolSettings): Partial<WorkerOptions> {
  return {
    maxConcurrentWorkflowTaskExecutions: p.maxWorkflowTasks,
    maxConcurrentActivityTaskExecutions: p.maxActivities,
    maxConcurrentLocalActivityExecutions: p.maxLocalActivities,
    maxCachedWorkflows: p.maxCachedWorkflows,
    shutdownGraceTime: `${p.shutdownGraceSeconds} seconds`,
    ...(p.workflowPollers !== undefined ? { maxConcurrentWorkflowTaskPolls: Math.max(2, p.workflowPollers) } : {}),
    ...(p.activityPollers !== undefined ? { maxConcurrentActivityTaskPolls: p.activityPollers } : {}),
    ...(p.activitiesPerSecond !== undefined ? { maxActivitiesPerSecond: p.activitiesPerSecond } : {}),
    ...(p.taskQueueActivitiesPerSecond !== undefined ? { maxTaskQueueActivitiesPerSecond: p.taskQueueActivitiesPerSecond } : {}),
  };
}

// ---- process-wide: telemetry, health, versioning ------------------------------------------------------------------

/** host:port, or a bare port (bound on 0.0.0.0); "off" disables. */
const bindAddress = z
  .string()
  .regex(/^(off|\d{1,5}|[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5})$/, 'must be host:port, a port, or "off"')
  .transform((s) => (s === 'off' ? null : /^\d+$/.test(s) ? `0.0.0.0:${s}` : s));

export const VERSIONING_BEHAVIORS = ['pinned', 'auto-upgrade'] as const;

export const workerProcessEnvSchema = z
  .object({
    /** Prometheus exporter of Temporal's runtime telemetry (scrape GET /metrics); off by default outside containers. */
    FORGE_METRICS_ADDRESS: bindAddress.optional(),
    /** Liveness/readiness endpoint (GET /healthz, GET /readyz); off by default outside containers. */
    FORGE_HEALTH_ADDRESS: bindAddress.optional(),
    /** Worker Deployment Versioning: the deployment (one per role) and this build of it. Both, or neither. */
    FORGE_WORKER_DEPLOYMENT: z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, 'letters, digits, "_" and "-"').optional(),
    FORGE_WORKER_BUILD_ID: z.string().regex(/^[A-Za-z0-9._-]{1,200}$/, 'letters, digits, ".", "_" and "-"').optional(),
    /** Pinned (default): a workflow finishes on the build that started it. auto-upgrade: moves to the current one. */
    FORGE_WORKER_VERSIONING_BEHAVIOR: z.enum(VERSIONING_BEHAVIORS).default('pinned'),
    /** Temporal core's own log level on stderr. */
    FORGE_WORKER_LOG_LEVEL: z.enum(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  })
  .superRefine((e, ctx) => {
    if (Boolean(e.FORGE_WORKER_DEPLOYMENT) !== Boolean(e.FORGE_WORKER_BUILD_ID)) {
      ctx.addIssue({ code: 'custom', message: 'FORGE_WORKER_DEPLOYMENT and FORGE_WORKER_BUILD_ID must be set together', path: ['FORGE_WORKER_BUILD_ID'] });
    }
  });
export type WorkerProcessEnv = z.infer<typeof workerProcessEnvSchema>;

export function readWorkerProcessEnv(env: NodeJS.ProcessEnv = process.env): WorkerProcessEnv {
  return parseEnv(workerProcessEnvSchema, env);
}

/** Worker Deployment Versioning from the env, or nothing (unversioned worker) when no build id is set. */
export function deploymentOptions(e: WorkerProcessEnv): Pick<WorkerOptions, 'workerDeploymentOptions'> {
  if (!e.FORGE_WORKER_DEPLOYMENT || !e.FORGE_WORKER_BUILD_ID) return {};
  return {
    workerDeploymentOptions: {
      version: { deploymentName: e.FORGE_WORKER_DEPLOYMENT, buildId: e.FORGE_WORKER_BUILD_ID },
      useWorkerVersioning: true,
      defaultVersioningBehavior: e.FORGE_WORKER_VERSIONING_BEHAVIOR === 'pinned' ? 'PINNED' : 'AUTO_UPGRADE',
    },
  };
}
