/**
 * The job's status as the `status` query returns it, and the one place where state changes: every transition is
 * checked against the table, recorded with time, reason, attempt and backend, upserted into the search attributes
 * and logged.
 */
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import { log, setCurrentDetails, upsertMemo, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { DeploymentRef, DeploymentStatus } from '../../activities/backends/types';
import type { FailureInfo } from '../../jobspec/failure';
import type { TrainingJobSpec } from '../../jobspec/schema';
import type { ArtifactsRecord } from '../../activities/artifacts';
import type { RlProgress } from '../grpo-run';
import type { DeploymentRecord, ErrorRecord, EvalRecord, JobStatus, NotificationRecord } from '../messages';
import { ForgeAttempt, ForgeBackend, ForgeCostUsd, ForgeJobState, jobFactAttributes, MAX_ATTRIBUTE_LENGTH } from '../search-attributes';
import { canTransition, IllegalTransitionError, isTerminal, type JobState } from './states';
import { backendCandidates } from '../../jobspec/candidates';
import { jobDetails, jobSummary } from './details';

function str(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ATTRIBUTE_LENGTH ? v : null;
}

function field(raw: unknown, ...keys: string[]): unknown {
  let v: unknown = raw;
  for (const k of keys) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

export class JobRecord {
  readonly status: JobStatus;
  /** The Web UI's summary line (first line of the current details) and the budget its details measure cost against. */
  private readonly summary: string;
  private readonly maxCostUsd: number | null;

  /**
   * Reads what it can from the raw input, so even an invalid spec is findable by owner and type. `carried`: the status
   * the run before a continue-as-new ended with (its search attributes and memo came along with the run).
   */
  constructor(raw: unknown, carried?: JobStatus) {
    const id = workflowInfo().workflowId;
    const budget = field(raw, 'backend', 'max_cost_usd');
    this.maxCostUsd = typeof budget === 'number' ? budget : null;
    this.summary = jobSummary({
      job_type: str(field(raw, 'job_type')),
      base_model: str(field(raw, 'base_model', 'name')),
      owner_did: str(field(raw, 'owner_did')),
    });
    if (carried) {
      this.status = carried;
      this.showDetails();
      return;
    }
    this.status = {
      job_id: str(field(raw, 'job_id')) ?? id.replace(/^job-/, ''),
      job_type: str(field(raw, 'job_type')),
      owner_did: str(field(raw, 'owner_did')),
      state: 'CREATED',
      attempt: 0,
      backend: null,
      transitions: [],
      cost_usd: 0,
      deployments: [],
      last_error: null,
      errors: [],
      artifacts: null,
      evals: [],
      notifications: [],
    };
    const initial = jobFactAttributes({ ...this.status, base_model: { name: field(raw, 'base_model', 'name') } });
    if (initial.length) upsertSearchAttributes(initial);
    this.showDetails();
  }

  /** The Web UI's current details (user metadata, not a command: no effect on replay), after every change shown there. */
  private showDetails(): void {
    setCurrentDetails(jobDetails(this.status, { summary: this.summary, maxCostUsd: this.maxCostUsd }));
  }

  get state(): JobState {
    return this.status.state;
  }

  get terminal(): boolean {
    return isTerminal(this.status.state);
  }

  /** The spec passed validation: record CREATED and put its summary in the memo (shown in the Web UI). */
  accepted(spec: TrainingJobSpec, specSha256: string): void {
    this.status.job_type = spec.job_type;
    this.status.owner_did = spec.owner_did;
    this.record('CREATED', `spec valid, signature of ${spec.owner_did} verified (sha256 ${specSha256.slice(0, 16)}…)`);
    upsertMemo({
      spec: {
        job_type: spec.job_type,
        owner_did: spec.owner_did,
        base_model: `${spec.base_model.source}:${spec.base_model.name}@${spec.base_model.revision}`,
        task_types: spec.objective.task_types,
        backends: backendCandidates(spec),
        max_cost_usd: spec.backend.max_cost_usd,
        max_hours: spec.resources.max_hours,
        sha256: specSha256,
      },
    });
  }

  /** The spec (or its signature, or the operator's policy) was refused: nothing is ever submitted. */
  failedValidation(detail: string): void {
    const error: ErrorRecord = { class: 'INVALID_SPEC', detail, attempt: 0, backend: null, at: new Date().toISOString() };
    this.status.errors.push(error);
    this.status.last_error = error;
    this.transition('ABANDONED', `INVALID_SPEC: ${detail}`);
  }

  transition(to: JobState, reason: string): void {
    if (!canTransition(this.status.state, to)) throw new IllegalTransitionError(this.status.state, to);
    this.status.state = to;
    this.record(to, reason);
  }

  /** Starts attempt n on a backend (the next transition will carry both). */
  beginAttempt(attempt: number, backend: string): void {
    this.status.attempt = attempt;
    this.status.backend = backend;
  }

  failed(failure: FailureInfo): void {
    this.recordError(failure);
    this.transition('FAILED', `${failure.class}: ${failure.detail}`);
  }

  /** An attempt failed while the job stays where it is (an eval attempt of EVALUATING, retried per the plan). */
  attemptFailed(failure: FailureInfo): void {
    this.recordError(failure);
  }

  private recordError(failure: FailureInfo): void {
    const error: ErrorRecord = {
      class: failure.class,
      detail: failure.detail,
      attempt: this.status.attempt,
      backend: this.status.backend,
      at: new Date().toISOString(),
    };
    this.status.errors.push(error);
    this.status.last_error = error;
    this.showDetails();
  }

  /**
   * An unexpected error (class INTERNAL) ends the job: recorded, then ABANDONED — through FAILED where the state table
   * needs it (SUBMITTED, RUNNING, EVALUATING). A job that already ended keeps its state; the error is still recorded.
   */
  abandonInternal(detail: string): void {
    const failure: FailureInfo = { class: 'INTERNAL', detail };
    if (this.terminal) {
      this.recordError(failure);
      return;
    }
    if (canTransition(this.status.state, 'ABANDONED')) this.recordError(failure);
    else this.failed(failure);
    this.transition('ABANDONED', `INTERNAL: ${detail}`);
  }

  /** Closing a deployment kept failing: it is left to the reaper, and the status says so (the reason). */
  markClosePending(ref: DeploymentRef, reason: string): void {
    this.deployment(ref).close_pending = reason;
  }

  addDeployment(ref: DeploymentRef): void {
    this.status.deployments.push({
      attempt: ref.attempt,
      backend: ref.backend,
      id: ref.id,
      state: 'PENDING',
      cost_usd: 0,
      exit_code: null,
      submitted_at: ref.submittedAt,
      closed: false,
      progress: null,
      ref,
    });
  }

  private deployment(ref: DeploymentRef): DeploymentRecord {
    const d = this.status.deployments.find((x) => x.id === ref.id && x.backend === ref.backend);
    if (!d) throw new Error(`unknown deployment ${ref.backend}/${ref.id}`);
    return d;
  }

  updateDeployment(ref: DeploymentRef, s: DeploymentStatus): void {
    const d = this.deployment(ref);
    d.state = s.state;
    d.cost_usd = s.costUsd;
    d.exit_code = s.exitCode ?? null;
    d.progress = s.progress ?? null;
    this.status.cost_usd = (this.status.dropped?.cost_usd ?? 0) + this.status.deployments.reduce((sum, x) => sum + x.cost_usd, 0);
    this.showDetails();
  }

  /** The backend's API has failed to answer since `since` (ISO); undefined: it answers. */
  setApiUnreachable(ref: DeploymentRef, since: string | undefined): void {
    const d = this.deployment(ref);
    if (since) d.api_unreachable_since = since;
    else delete d.api_unreachable_since;
  }

  markClosed(ref: DeploymentRef): void {
    this.deployment(ref).closed = true;
  }

  isOpen(ref: DeploymentRef): boolean {
    return !this.deployment(ref).closed;
  }

  openDeployments(): DeploymentRef[] {
    return this.status.deployments.filter((d) => !d.closed).map((d) => d.ref);
  }

  /** Spend of every deployment but this one: what the budget left for `ref` is measured against. */
  costExcept(ref: DeploymentRef): number {
    const others = this.status.deployments.filter((d) => d !== this.deployment(ref));
    return (this.status.dropped?.cost_usd ?? 0) + others.reduce((sum, d) => sum + d.cost_usd, 0);
  }

  setArtifacts(record: ArtifactsRecord): void {
    this.status.artifacts = record;
    this.showDetails();
  }

  setEvals(evals: EvalRecord[]): void {
    this.status.evals = evals;
    this.showDetails();
  }

  addNotification(n: NotificationRecord): void {
    this.status.notifications.push(n);
  }

  /** rl jobs: the grpoRun child's latest progress. */
  setRl(p: RlProgress): void {
    this.status.rl = p;
    this.showDetails();
  }

  private record(state: JobState, reason: string): void {
    const s = this.status;
    s.transitions.push({ state, at: new Date().toISOString(), reason, attempt: s.attempt, backend: s.backend });
    const pairs: SearchAttributeUpdatePair[] = [
      { key: ForgeJobState, value: state },
      { key: ForgeAttempt, value: s.attempt },
      { key: ForgeCostUsd, value: s.cost_usd },
    ];
    if (s.backend) pairs.push({ key: ForgeBackend, value: s.backend });
    upsertSearchAttributes(pairs);
    this.showDetails();
    log.info(`job ${s.job_id} → ${state}`, { job_id: s.job_id, state, reason, attempt: s.attempt, backend: s.backend });
  }
}
