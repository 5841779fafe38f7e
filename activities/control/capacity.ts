/**
 * The control activities' side of the admission entity (workflows/backend-capacity.ts): a backend with
 * `max_concurrent` gives its slots out from one workflow per backend, shared by every orchestrator replica, instead
 * of each replica counting its own. `CapacityGate` asks for a slot before a submit and gives it back when the
 * deployment is closed, sending what this replica's jobs ask at the same moment in one Update; it also wakes the jobs
 * waiting on this replica as soon as a slot they were granted frees (any other waiter learns at its next admission
 * poll). `createCapacityActivities` is the entity's reclaim check.
 */
import { Context } from '@temporalio/activity';
import { WithStartWorkflowOperation, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { capacityUpdate, CAPACITY_UNCHANGED, type CapacityActivities, type CapacityBatch, type CapacityBatchResult, type CapacityInput } from '../../workflows/capacity/messages';
import type { BackendConfig, ForgeConfig } from '../../common/config';
import type { AcquireResult, ReleaseRequest, SlotOp, SlotOpResult } from '../../workflows/capacity/slots';
import { capacityTaskQueue, capacityWorkflowId, WORKFLOW_TYPE_BACKEND_CAPACITY } from '../../common/names';

export interface SlotRequest {
  workflowId: string;
  owner: string;
  attempt?: number;
  cap: number;
  /** How long a grant waits for the job to come back for it. */
  claimMs: number;
}

/** The typed cause of an Update the entity's validator refused, if it is of `type`. */
function refusedAs(err: unknown, type: string): ApplicationFailure | undefined {
  if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && err.cause.type === type) return err.cause;
  return undefined;
}

interface Pending {
  op: SlotOp;
  resolve: (r: SlotOpResult) => void;
  reject: (err: unknown) => void;
}

/** The most ops one Update carries. */
const MAX_BATCH = 200;

export class CapacityGate {
  private readonly wakers = new Map<string, Set<() => void>>();
  /** Per entity: ops waiting for the next batch, and whether a batch is in flight. */
  private readonly queues = new Map<string, Pending[]>();
  private readonly inFlight = new Set<string>();

  /**
   * @param client the Temporal client (default: the worker's, from the running activity's context)
   * @param taskQueue the orchestrator's task queue (the entity runs on capacityTaskQueue of it)
   */
  constructor(
    private readonly reclaimSeconds: number,
    private readonly client: () => Client = () => Context.current().client,
    private readonly taskQueue: () => string = () => Context.current().info.taskQueue,
  ) {}

  /** A slot of `backend` for the job: granted, or queued with its place in the fair order. */
  async acquire(backend: string, r: SlotRequest): Promise<AcquireResult> {
    return (await this.send(backend, { acquire: r })) as AcquireResult;
  }

  /** Gives the job's slot of `attempt` (or earlier) back, and takes it out of the queue; wakes whoever got the slot. */
  async release(backend: string, r: ReleaseRequest): Promise<{ released: number }> {
    return (await this.send(backend, { release: r })) as { released: number };
  }

  /**
   * Queues the op for this replica's next batch to the entity: one Update in flight per entity and replica (Temporal
   * allows 10 in flight per workflow), however many jobs ask at once.
   */
  private send(backend: string, op: SlotOp): Promise<SlotOpResult> {
    const taskQueue = this.taskQueue();
    const client = this.client();
    const id = capacityWorkflowId(backend, taskQueue);
    return new Promise((resolve, reject) => {
      const q = this.queues.get(id) ?? [];
      q.push({ op, resolve, reject });
      this.queues.set(id, q);
      if (!this.inFlight.has(id)) void this.drain(client, id, backend, taskQueue);
    });
  }

  private async drain(client: Client, id: string, backend: string, taskQueue: string): Promise<void> {
    this.inFlight.add(id);
    try {
      for (;;) {
        const batch = (this.queues.get(id) ?? []).splice(0, MAX_BATCH);
        if (batch.length === 0) return;
        try {
          const results = await this.update(client, id, backend, taskQueue, batch.map((p) => p.op));
          batch.forEach((p, i) => p.resolve(results[i]!));
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.inFlight.delete(id);
    }
  }

  private async update(client: Client, id: string, backend: string, taskQueue: string, ops: SlotOp[]): Promise<SlotOpResult[]> {
    const batch: CapacityBatch = { ops, reclaimSeconds: this.reclaimSeconds };
    const ask = ops.find((o): o is { acquire: SlotRequest } => 'acquire' in o);
    try {
      let result: CapacityBatchResult;
      if (ask) {
        // Asking starts the entity if it is not running.
        const args: CapacityInput = { backend, cap: ask.acquire.cap, reclaimSeconds: this.reclaimSeconds };
        result = await client.workflow.executeUpdateWithStart(capacityUpdate, {
          args: [batch],
          startWorkflowOperation: new WithStartWorkflowOperation(WORKFLOW_TYPE_BACKEND_CAPACITY, { workflowId: id, taskQueue: capacityTaskQueue(taskQueue), args: [args], workflowIdConflictPolicy: 'USE_EXISTING' }),
        });
      } else {
        result = await client.workflow.getHandle(id).executeUpdate(capacityUpdate, { args: [batch] });
      }
      this.wake(result.granted);
      return result.results;
    } catch (err) {
      // Nothing would change (polls of waiting jobs, releases of unknown ones): the validator answered.
      const same = refusedAs(err, CAPACITY_UNCHANGED);
      if (same) return same.details?.[0] as SlotOpResult[];
      // Only releases, and the entity has ended: it held nothing.
      if (!ask && err instanceof WorkflowNotFoundError) return ops.map(() => ({ released: 0 }));
      throw err;
    }
  }

  /** Resolves when a slot is granted to this job by a call made on this replica (or never); `cancel` to stop waiting. */
  wakeup(workflowId: string): { promise: Promise<void>; cancel: () => void } {
    let fn: () => void = () => undefined;
    const promise = new Promise<void>((resolve) => (fn = resolve));
    const set = this.wakers.get(workflowId) ?? new Set();
    set.add(fn);
    this.wakers.set(workflowId, set);
    return {
      promise,
      cancel: () => {
        set.delete(fn);
        if (set.size === 0 && this.wakers.get(workflowId) === set) this.wakers.delete(workflowId);
      },
    };
  }

  private wake(workflowIds: readonly string[]): void {
    for (const id of workflowIds) for (const fn of this.wakers.get(id) ?? []) fn();
  }
}

/** The entity's reclaim check, on the orchestrator's task queue. */
export function createCapacityActivities(client: () => Client = () => Context.current().client): CapacityActivities {
  return {
    async capacityEnded(workflowIds: string[]): Promise<string[]> {
      const ended: string[] = [];
      for (const id of workflowIds) {
        try {
          // The latest run: a job that continued as new still runs.
          if ((await client().workflow.getHandle(id).describe()).status.name !== 'RUNNING') ended.push(id);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) ended.push(id);
          else throw err;
        }
      }
      return ended;
    },
  };
}

/**
 * The config the orchestrator's backends are built from: without `max_concurrent`, which the admission entity counts
 * for every replica at once. A backend's quote then answers only for its own room and price; counted again by each
 * replica (its own open attempts), the cap would also let a job into the entity's queue only once its replica saw
 * room, which is neither fair nor needed.
 */
export function capsCountedByEntity(config: ForgeConfig): ForgeConfig {
  const backends = Object.fromEntries(
    Object.entries(config.backends).map(([name, b]): [string, BackendConfig] => {
      const { max_concurrent: _counted, ...rest } = b;
      return [name, rest as BackendConfig];
    }),
  );
  return { ...config, backends };
}
