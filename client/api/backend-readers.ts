/**
 * How the API reads a backend without holding its credentials: each read is an Update (with start) to the backend's
 * read entity (workflows/backend-read.ts), answered by an orchestrator worker that holds the backend
 * (docs/architecture.md §10). The API process never builds a backend.
 */
import { ApplicationFailure, type Client, WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import type { DeploymentRef, HealthReport, LogChunk } from '../../activities/backends/types';
import type { ForgeConfig } from '../../common/config';
import { backendReadTaskQueue, backendReadWorkflowId, WORKFLOW_TYPE_BACKEND_READ } from '../../common/names';
import { queuePollers, silentReadReason } from '../queue-pollers';
import { BACKEND_READ_CLOSING, backendReadUpdate, type BackendReadInput, type BackendReadRequest, type BackendReadResult } from '../../workflows/read/messages';

/** What the API reads of a backend: a deployment's log pages and the backend's health. */
export interface ApiBackendReader {
  readonly name: string;
  readonly kind: string;
  health(): Promise<HealthReport>;
  logs(deployment: DeploymentRef, cursor?: string): Promise<LogChunk>;
  /** Only stdout's JSON event lines, many pages a call (curves read whole logs); a reader without it pages logs(). */
  eventLines?(deployment: DeploymentRef, cursor?: string): Promise<LogChunk>;
  /** Why a read got no answer in time, and what to do about it (a reader that can tell). */
  whySilent?(): Promise<string>;
}

export interface EntityReaderOptions {
  client: Client;
  /** The orchestrator's task queue (the entities run on backendReadTaskQueue of it). */
  taskQueue: string;
  /** How long one read may take, tries included. */
  timeoutMs: number;
  /**
   * The route's own limit on a health check (default timeoutMs). The read waits a second longer, so that a timeout is
   * always reported by the route, the same way for every reader.
   */
  healthTimeoutMs?: number;
  /** Reads of one backend this API keeps in flight (Temporal allows 10 Updates in flight per workflow, for every API). */
  maxInFlight?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Worth asking again: the run was closing (continue-as-new, idle end) or the entity had too many Updates in flight. */
function askAgain(err: unknown): boolean {
  if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && err.cause.type === BACKEND_READ_CLOSING) return true;
  const text = err instanceof Error ? `${err.name} ${err.message}` : String(err);
  return /in-flight|RESOURCE_EXHAUSTED|already completed|WorkflowNotFound|not found/i.test(text);
}

/** The innermost message of a failed read: what the worker's backend said. */
function readFailure(err: unknown, backend: string): Error {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  const message = e instanceof Error ? e.message : String(e);
  return new Error(`backend ${backend}: ${message}`);
}

/** One backend, read through its entity. */
export class EntityBackendReader implements ApiBackendReader {
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly kind: string,
    private readonly o: EntityReaderOptions,
  ) {}

  async health(): Promise<HealthReport> {
    try {
      const r = await this.read({ op: 'health' }, (this.o.healthTimeoutMs ?? this.o.timeoutMs) + 1000);
      if (r.op === 'health') return r.report;
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
    return { ok: false, detail: `backend ${this.name}: the read entity answered something else than a health report` };
  }

  logs(deployment: DeploymentRef, cursor?: string): Promise<LogChunk> {
    return this.page({ op: 'logs', deployment, ...(cursor !== undefined && { cursor }) });
  }

  eventLines(deployment: DeploymentRef, cursor?: string): Promise<LogChunk> {
    return this.page({ op: 'logs', deployment, events: true, ...(cursor !== undefined && { cursor }) });
  }

  private async page(request: BackendReadRequest): Promise<LogChunk> {
    const r = await this.read(request);
    if (r.op !== 'logs') throw new Error(`backend ${this.name}: the read entity answered something else than log lines`);
    return r.chunk;
  }

  private async read(request: BackendReadRequest, timeoutMs = this.o.timeoutMs): Promise<BackendReadResult> {
    const deadline = Date.now() + timeoutMs;
    await this.slot();
    try {
      const input: BackendReadInput = { backend: this.name };
      for (let tries = 1; ; tries++) {
        try {
          return await this.o.client.connection.withDeadline(deadline, () =>
            this.o.client.workflow.executeUpdateWithStart(backendReadUpdate, {
              args: [request],
              startWorkflowOperation: new WithStartWorkflowOperation(WORKFLOW_TYPE_BACKEND_READ, {
                workflowId: backendReadWorkflowId(this.name, this.o.taskQueue),
                taskQueue: backendReadTaskQueue(this.o.taskQueue),
                args: [input],
                workflowIdConflictPolicy: 'USE_EXISTING',
              }),
            }),
          );
        } catch (err) {
          if (tries < 5 && askAgain(err) && Date.now() + 50 * 2 ** tries < deadline) {
            await sleep(50 * 2 ** tries);
            continue;
          }
          if (Date.now() >= deadline - 50) throw new Error(`backend ${this.name}: no answer within ${timeoutMs} ms — ${await this.whySilent()}`);
          throw readFailure(err, this.name);
        }
      }
    } finally {
      this.release();
    }
  }

  async whySilent(): Promise<string> {
    const queue = backendReadTaskQueue(this.o.taskQueue);
    try {
      const { connection, options } = this.o.client;
      const pollers = await connection.withDeadline(Date.now() + 2000, () => queuePollers(connection, options.namespace, queue));
      return silentReadReason(this.name, pollers);
    } catch (err) {
      return `and Temporal could not list the pollers of ${queue} (${(err as Error).message}): check that Temporal is up and an orchestrator worker with backend "${this.name}" polls that queue`;
    }
  }

  private async slot(): Promise<void> {
    while (this.inFlight >= (this.o.maxInFlight ?? 4)) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inFlight++;
  }

  private release(): void {
    this.inFlight--;
    this.waiting.shift()?.();
  }
}

/** Every backend of the operator config, read through its entity. */
export function entityBackendReaders(config: ForgeConfig, o: EntityReaderOptions): Map<string, ApiBackendReader> {
  return new Map(Object.entries(config.backends).map(([name, b]) => [name, new EntityBackendReader(name, b.kind, o)]));
}
