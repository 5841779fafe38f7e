/**
 * What the HTTP routes ask of Temporal: start a job idempotently, read its status, list jobs, cancel. Temporal is
 * the only store of job state (docs/architecture.md §1): nothing here keeps jobs in memory or on disk.
 */
import { jobPriority } from '../../common/job-priority';
import { createHash, randomUUID } from 'node:crypto';
import {
  isGrpcCancelledError,
  isGrpcDeadlineError,
  isGrpcServiceError,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type Connection,
  type WorkflowExecutionDescription,
} from '@temporalio/client';
import { decodeTypedSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes';
import { specHash } from '../../jobspec/parse';
import type { SignedSpec } from '../../jobspec/signed-spec';
import type { CancelRequest } from '../../jobspec/signing';
import { isTerminal, type JobState } from '../../workflows/lifecycle/states';
import { specSummary, staticJobDetails } from '../../workflows/lifecycle/details';
import { backendCandidates } from '../../jobspec/candidates';
import { cancelUpdate, statusQuery, type JobStatus } from '../../workflows/messages';
import { jobWorkflowId, WORKFLOW_TYPE_TRAINING_JOB } from '../../common/names';
import {
  ForgeAttempt,
  ForgeBackend,
  ForgeBaseModel,
  ForgeCostUsd,
  ForgeJobState,
  ForgeJobType,
  ForgeOwner,
  jobFactAttributes,
} from '../../workflows/search-attributes';
import { fieldError, ProblemError } from './problem';
import { buildVisibilityQuery, decodePageToken, encodePageToken, type ListQuery } from './visibility';

/** Memo key the API sets at start: what the idempotency check compares a repeated POST with. */
export const MEMO_SPEC_SHA256 = 'submitted_spec_sha256';
/** gRPC status codes (stable wire numbers). */
const GRPC_NOT_FOUND = 5;
const GRPC_INVALID_ARGUMENT = 3;
const GRPC_FAILED_PRECONDITION = 9;
const GRPC_UNAVAILABLE = 14;
/** temporal.api.enums.v1.UpdateWorkflowExecutionLifecycleStage.ACCEPTED (stable wire number). */
const UPDATE_STAGE_ACCEPTED = 2;
/** temporal.api.enums.v1.WorkflowExecutionStatus, by wire number. */
const WORKFLOW_STATUS_NAMES = ['UNSPECIFIED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'CONTINUED_AS_NEW', 'TIMED_OUT', 'PAUSED'] as const;

export interface JobsServiceOptions {
  client: Client;
  connection: Connection;
  namespace: string;
  taskQueue: string;
  /** Bound on every call that needs a worker (status query, cancel update). */
  queryTimeoutMs: number;
}

export interface SubmitResult {
  created: boolean;
  workflowId: string;
}

export interface JobSummary {
  job_id: string;
  workflow_id: string;
  run_id: string;
  state: string | null;
  job_type: string | null;
  owner_did: string | null;
  backend: string | null;
  base_model: string | null;
  attempt: number | null;
  cost_usd: number | null;
  workflow_status: string;
  start_time: string | null;
  close_time: string | null;
}

export interface JobPage {
  jobs: JobSummary[];
  next_page_token: string | null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function grpcCode(err: unknown): number | undefined {
  if (isGrpcServiceError(err)) return err.code;
  const cause = err instanceof Error ? err.cause : undefined;
  return isGrpcServiceError(cause) ? cause.code : undefined;
}

/** Turns what Temporal throws into the API's problems; anything else propagates (500). */
export function temporalProblem(err: unknown, what: string): unknown {
  if (err instanceof ProblemError) return err;
  // grpc-js reports a deadline that passes during a retry as CANCELLED: both mean "no answer in time".
  if (isGrpcDeadlineError(err) || isGrpcCancelledError(err)) return new ProblemError('timeout', `${what}: Temporal or the orchestrator worker did not answer in time`);
  if (grpcCode(err) === GRPC_UNAVAILABLE) return new ProblemError('temporal-unavailable', `${what}: Temporal is not reachable`);
  return err;
}

function tsToIso(ts: { seconds?: { toNumber(): number } | number | null; nanos?: number | null } | null | undefined): string | null {
  if (!ts || ts.seconds == null) return null;
  const seconds = typeof ts.seconds === 'number' ? ts.seconds : ts.seconds.toNumber();
  return new Date(seconds * 1000 + Math.floor((ts.nanos ?? 0) / 1e6)).toISOString();
}

export class JobsService {
  constructor(private readonly o: JobsServiceOptions) {}

  get taskQueue(): string {
    return this.o.taskQueue;
  }

  private deadline<T>(fn: () => Promise<T>): Promise<T> {
    return this.o.connection.withDeadline(Date.now() + this.o.queryTimeoutMs, fn);
  }

  private handle(jobId: string) {
    return this.o.client.workflow.getHandle(jobWorkflowId(jobId));
  }

  /**
   * Starts `job-<job_id>` unless it exists. Workflow ids are unique and never reused (REJECT_DUPLICATE), so of any
   * number of concurrent identical POSTs exactly one starts the workflow; the others compare spec hashes.
   */
  async submit(signed: SignedSpec): Promise<SubmitResult> {
    const { spec, raw, sha256: hash } = signed;
    const workflowId = jobWorkflowId(spec.job_id);
    try {
      await this.o.client.workflow.start(WORKFLOW_TYPE_TRAINING_JOB, {
        taskQueue: this.o.taskQueue,
        workflowId,
        args: [raw],
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        workflowIdConflictPolicy: 'FAIL',
        memo: { [MEMO_SPEC_SHA256]: hash },
        // Facts of the validated spec, so a job is listable before a worker has picked it up.
        typedSearchAttributes: [{ key: ForgeJobState, value: 'CREATED' }, ...jobFactAttributes(spec)],
        priority: jobPriority(spec.owner_did),
        // The Web UI's summary line and static details (the workflow keeps its current details up to date).
        staticSummary: specSummary(spec),
        staticDetails: staticJobDetails(spec, backendCandidates(spec)),
      });
      return { created: true, workflowId };
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw temporalProblem(err, 'starting the job');
    }
    const existing = await this.submittedHash(workflowId);
    if (existing === hash) return { created: false, workflowId };
    throw new ProblemError(
      'job-id-conflict',
      `job ${spec.job_id} exists with a different spec (sha256 ${existing?.slice(0, 16) ?? 'unknown'}…); submit the same spec again or use a new job_id`,
      [fieldError('body', 'job_id', 'already used by a different spec')],
    );
  }

  /** The hash of the spec an existing job was started with: the API's memo, the workflow's memo, else its input. */
  private async submittedHash(workflowId: string): Promise<string | null> {
    const handle = this.o.client.workflow.getHandle(workflowId);
    const desc = await handle.describe().catch((err: unknown) => {
      throw temporalProblem(err, 'reading the existing job');
    });
    const memo = desc.memo ?? {};
    if (typeof memo[MEMO_SPEC_SHA256] === 'string') return memo[MEMO_SPEC_SHA256];
    const specMemo = memo.spec;
    if (isRecord(specMemo) && typeof specMemo.sha256 === 'string') return specMemo.sha256;
    // Started without the API (a script calling client.workflow.start): hash its first input.
    const input = await this.startInput(workflowId, desc.runId);
    return isRecord(input) ? specHash(input) : null;
  }

  /** The first argument the workflow was started with (the signed spec), from its first history event. */
  private async startInput(workflowId: string, runId: string): Promise<unknown> {
    const res = await this.o.client.workflowService.getWorkflowExecutionHistory({
      namespace: this.o.namespace,
      execution: { workflowId, runId },
      maximumPageSize: 1,
    });
    const payload = res.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    return payload ? this.o.client.options.loadedDataConverter.payloadConverter.fromPayload(payload) : undefined;
  }

  /**
   * The job's owner: its ForgeOwner search attribute, else (a job started by a bare Temporal client that no worker
   * has picked up yet) the owner_did of its input. 404 for an unknown job.
   */
  async ownerOf(jobId: string): Promise<string | null> {
    const desc = await this.describe(jobId);
    const owner = desc.typedSearchAttributes.get(ForgeOwner);
    if (owner !== undefined) return owner;
    try {
      const input = await this.deadline(() => this.startInput(desc.workflowId, desc.runId));
      return isRecord(input) && typeof input.owner_did === 'string' ? input.owner_did : null;
    } catch (err) {
      throw temporalProblem(err, `reading the owner of job ${jobId}`);
    }
  }

  /** 404 for an unknown id or a workflow of another type under the same id. */
  async describe(jobId: string): Promise<WorkflowExecutionDescription> {
    try {
      const desc = await this.deadline(() => this.handle(jobId).describe());
      if (desc.type !== WORKFLOW_TYPE_TRAINING_JOB) throw new WorkflowNotFoundError('not a training job', jobWorkflowId(jobId), undefined);
      return desc;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError || grpcCode(err) === GRPC_NOT_FOUND) {
        throw new ProblemError('not-found', `no job ${jobId}`, [fieldError('path', 'id', 'no such job')]);
      }
      throw temporalProblem(err, 'describing the job');
    }
  }

  /** The `status` query; a completed job answers from its result, so closed jobs need no worker. */
  async status(jobId: string): Promise<JobStatus> {
    const desc = await this.describe(jobId);
    const handle = this.handle(jobId);
    try {
      if (desc.status.name === 'COMPLETED') return (await this.deadline(() => handle.result())) as JobStatus;
      return await this.deadline(() => handle.query(statusQuery));
    } catch (err) {
      throw temporalProblem(err, `status of job ${jobId} (is an orchestrator worker polling "${this.o.taskQueue}"?)`);
    }
  }

  async list(q: ListQuery): Promise<JobPage> {
    let res;
    try {
      res = await this.deadline(() =>
        this.o.client.workflowService.listWorkflowExecutions({
          namespace: this.o.namespace,
          query: buildVisibilityQuery(q),
          pageSize: q.page_size,
          ...(q.page_token ? { nextPageToken: decodePageToken(q.page_token) } : {}),
        }),
      );
    } catch (err) {
      if (grpcCode(err) === GRPC_INVALID_ARGUMENT && q.page_token) {
        throw new ProblemError('invalid-request', 'page_token is not valid', [fieldError('query', 'page_token', 'not a token of this listing')]);
      }
      throw temporalProblem(err, 'listing jobs');
    }
    const jobs = (res.executions ?? []).map((e): JobSummary => {
      const attrs = decodeTypedSearchAttributes(e.searchAttributes?.indexedFields);
      const workflowId = e.execution?.workflowId ?? '';
      return {
        job_id: workflowId.replace(/^job-/, ''),
        workflow_id: workflowId,
        run_id: e.execution?.runId ?? '',
        state: attrs.get(ForgeJobState) ?? null,
        job_type: attrs.get(ForgeJobType) ?? null,
        owner_did: attrs.get(ForgeOwner) ?? null,
        backend: attrs.get(ForgeBackend) ?? null,
        base_model: attrs.get(ForgeBaseModel) ?? null,
        attempt: attrs.get(ForgeAttempt) ?? null,
        cost_usd: attrs.get(ForgeCostUsd) ?? null,
        workflow_status: WORKFLOW_STATUS_NAMES[e.status ?? 0] ?? 'UNKNOWN',
        start_time: tsToIso(e.startTime),
        close_time: tsToIso(e.closeTime),
      };
    });
    const token = res.nextPageToken && res.nextPageToken.length > 0 ? encodePageToken(res.nextPageToken) : null;
    return { jobs, next_page_token: token };
  }

  /**
   * Sends the owner's signed request to the `cancel` Update and returns once the workflow accepted it (the
   * validator checks the signature). The Update id derives from the signature, so a retried POST is one Update.
   */
  async cancel(jobId: string, req: CancelRequest): Promise<{ updateId: string }> {
    const desc = await this.describe(jobId);
    if (desc.status.name !== 'RUNNING') {
      throw this.alreadyTerminal(jobId, desc.typedSearchAttributes.get(ForgeJobState) ?? desc.status.name);
    }
    const updateId = `cancel-${createHash('sha256').update(req.signature_ed25519).digest('hex').slice(0, 32)}`;
    let rejection: string | undefined;
    try {
      rejection = await this.sendCancelUpdate(jobId, updateId, req);
    } catch (err) {
      // The workflow closed between describe and update.
      if (grpcCode(err) === GRPC_NOT_FOUND) throw this.alreadyTerminal(jobId, 'closed');
      throw temporalProblem(err, `cancelling job ${jobId} (is an orchestrator worker polling "${this.o.taskQueue}"?)`);
    }
    if (rejection === undefined) return { updateId };
    // The validator refuses both a bad request and a finished job; tell them apart by the job's state now.
    const state = await this.status(jobId).then((s) => s.state, () => undefined);
    if (state !== undefined && isTerminal(state)) throw this.alreadyTerminal(jobId, state);
    const m = /^cancel refused: ([A-Za-z0-9_.()]+): (.*)$/s.exec(rejection);
    throw new ProblemError('cancel-refused', rejection, m ? [fieldError('body', m[1]!, m[2]!)] : []);
  }

  /** Sends the Update until the workflow accepted or rejected it (all tries within one deadline); the rejection. */
  private async sendCancelUpdate(jobId: string, updateId: string, req: CancelRequest): Promise<string | undefined> {
    const deadline = Date.now() + this.o.queryTimeoutMs;
    const payload = this.o.client.options.loadedDataConverter.payloadConverter.toPayload(req);
    for (let retries = 0; ; ) {
      let res;
      try {
        res = await this.o.connection.withDeadline(deadline, () =>
          this.o.client.workflowService.updateWorkflowExecution({
            namespace: this.o.namespace,
            workflowExecution: { workflowId: jobWorkflowId(jobId) },
            waitPolicy: { lifecycleStage: UPDATE_STAGE_ACCEPTED },
            request: {
              meta: { updateId, identity: this.o.client.options.identity ?? `forge-api-${randomUUID()}` },
              input: { name: cancelUpdate.name, args: { payloads: [payload] } },
            },
          }),
        );
      } catch (err) {
        // The speculative workflow task carrying the Update lost a race with a new event (an activity finished):
        // Temporal asks the caller to send it again.
        if (grpcCode(err) === GRPC_FAILED_PRECONDITION && ++retries <= 5) {
          await new Promise((resolve) => setTimeout(resolve, 100 * retries));
          continue;
        }
        throw err;
      }
      // The server may answer before the stage is reached (its own long-poll limit): ask again, same Update id.
      if ((res.stage ?? 0) < UPDATE_STAGE_ACCEPTED) continue;
      return res.outcome?.failure ? (res.outcome.failure.message ?? 'rejected') : undefined;
    }
  }

  private alreadyTerminal(jobId: string, state: JobState | string): ProblemError {
    return new ProblemError('already-terminal', `job ${jobId} is already ${state}`, [], { state });
  }

  /** GET /healthz: the Temporal frontend answers its health check. */
  async temporalHealthy(timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
    try {
      await this.o.connection.withDeadline(Date.now() + timeoutMs, () => this.o.connection.healthService.check({}));
      return { ok: true, detail: 'SERVING' };
    } catch (err) {
      return { ok: false, detail: err instanceof Error ? err.message : String(err) };
    }
  }
}
