/**
 * The Temporal Schedule `forge-reaper` that runs the reaping workflow (workflows/reaper.ts) every
 * `reaper.interval_seconds`. Made idempotently by `npm start` (infra/start-stack.ts) and the `setup` role
 * (infra/setup.ts): created when absent, updated when its interval, task queue or paused state differ from the
 * operator config, left alone otherwise. Overlap policy SKIP: a run still going when the next is due is not doubled.
 */
import { Client, ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Connection, type ScheduleDescription, type ScheduleUpdateOptions, type ScheduleOptionsStartWorkflowAction } from '@temporalio/client';
import type { ForgeConfig } from '../common/config';
import { REAPER_SCHEDULE_ID, TASK_QUEUE_ORCHESTRATOR, WORKFLOW_TYPE_REAPER } from '../common/names';

export interface ReaperScheduleOptions {
  reaper: Pick<ForgeConfig['reaper'], 'enabled' | 'interval_seconds' | 'grace_seconds'>;
  /** The orchestrator workers' task queue (FORGE_ORCHESTRATOR_TASK_QUEUE, default forge-orchestrator). */
  taskQueue: string;
}

export type ScheduleOutcome = 'created' | 'updated' | 'unchanged';

type ReaperSchedule = ScheduleUpdateOptions<ScheduleOptionsStartWorkflowAction<() => Promise<unknown>>>;

function desired(o: ReaperScheduleOptions): ReaperSchedule {
  return {
    spec: { intervals: [{ every: `${o.reaper.interval_seconds}s` }] },
    action: {
      type: 'startWorkflow',
      workflowType: WORKFLOW_TYPE_REAPER,
      taskQueue: o.taskQueue,
      workflowId: REAPER_SCHEDULE_ID,
      args: [],
      // A run stuck beyond its interval is ended; the next one lists everything again.
      workflowExecutionTimeout: `${Math.max(600, 2 * o.reaper.interval_seconds)}s`,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
    state: {
      paused: !o.reaper.enabled,
      note: o.reaper.enabled ? `reaper every ${o.reaper.interval_seconds} s` : 'paused: reaper.enabled is false in the operator config',
    },
  };
}

/** Does the existing schedule already do what the config says? */
function matches(d: ScheduleDescription, o: ReaperScheduleOptions): boolean {
  const every = d.spec.intervals?.[0]?.every;
  return (
    d.spec.intervals?.length === 1 &&
    every === o.reaper.interval_seconds * 1000 &&
    d.action.workflowType === WORKFLOW_TYPE_REAPER &&
    d.action.taskQueue === o.taskQueue &&
    d.policies.overlap === ScheduleOverlapPolicy.SKIP &&
    d.state.paused === !o.reaper.enabled
  );
}

export async function ensureReaperSchedule(client: Client, o: ReaperScheduleOptions): Promise<ScheduleOutcome> {
  const want = desired(o);
  try {
    await client.schedule.create({ scheduleId: REAPER_SCHEDULE_ID, ...want });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  const handle = client.schedule.getHandle(REAPER_SCHEDULE_ID);
  if (matches(await handle.describe(), o)) return 'unchanged';
  await handle.update(() => want);
  return 'updated';
}

/** One line for the logs of setup and npm start. */
export function describeOutcome(outcome: ScheduleOutcome, o: ReaperScheduleOptions): string {
  const what = o.reaper.enabled ? `every ${o.reaper.interval_seconds} s on ${o.taskQueue}` : 'paused (reaper.enabled is false)';
  return `reaper schedule ${REAPER_SCHEDULE_ID} ${outcome}: ${what}`;
}

/** `setup` and `npm start`: the schedule for this config, on the workers' queue (FORGE_ORCHESTRATOR_TASK_QUEUE); logs one line. */
export async function ensureReaperScheduleFor(
  connection: Connection,
  namespace: string,
  config: ForgeConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const o = { reaper: config.reaper, taskQueue: env.FORGE_ORCHESTRATOR_TASK_QUEUE || TASK_QUEUE_ORCHESTRATOR };
  const outcome = await ensureReaperSchedule(new Client({ connection, namespace }), o);
  return describeOutcome(outcome, o);
}
