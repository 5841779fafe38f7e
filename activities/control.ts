/**
 * Control activities of the trainingJob workflow, on `forge-orchestrator`: validate, admit, submit, follow, close.
 * Backend-neutral: each call goes to the backend named in its input.
 */
import { Context, ApplicationFailure, activityInfo } from '@temporalio/activity';
import type { ForgeConfig } from '../common/config';
import { resultSettings, type ResultSettings } from '../common/results-config';
import { rlSettings, type RlSettings } from '../common/rl-config';
import { parseTrainingJobSpec, specHash, type SpecIssue } from '../spec/parse';
import type { TrainingJobSpec } from '../spec/schema';
import { type FailureInfo, typedFailure } from '../spec/failure';
import { progressDecile } from '../spec/progress';
import { verifySpecSignatureFast } from '../common/spec-signature';
import { rankCandidates, type CandidateLook, type Look } from './admission';
import { FairAdmission } from './fair-admission';
import { jobWorkflowId } from '../workflows/names';
import { BackendError, type Backend, type DeploymentRef, type DeploymentState, type DeploymentStatus } from './backends/types';
import { backendCandidates } from '../spec/candidates';

export interface JobSettings {
  maxRetries: number;
  backoff: { initialSeconds: number; maxSeconds: number };
  followHeartbeatSeconds: number;
  admissionPollSeconds: number;
  /** Result integration (common/results-config.ts); absent in histories older than it. */
  results?: ResultSettings;
  /** RL jobs' grpoRun settings (common/rl-config.ts); absent in histories older than RL. */
  rl?: RlSettings;
}

export type ValidationResult =
  | { ok: true; spec: TrainingJobSpec; specHash: string; settings: JobSettings }
  | { ok: false; issues: SpecIssue[] };

export interface FollowInput {
  deployment: DeploymentRef;
  /** Return as soon as the backend reports something other than this. */
  known: DeploymentState;
  /** Progress decile the workflow already knows (see progressDecile). */
  knownDecile: number;
  /** ISO time after which the attempt has run out of `resources.max_hours`. */
  deadline: string;
  /** Money this attempt may still spend before the job's `max_cost_usd` is reached. */
  budgetUsd: number;
}

export interface FollowResult {
  status: DeploymentStatus;
  /**
   * Why the activity returned: the state changed, training passed another tenth of its steps (so the status query
   * shows progress at most ten extra times per attempt, however long it runs), or time or budget ran out.
   */
  reason: 'changed' | 'progress' | 'timeout' | 'budget';
  /** The follower already closed the deployment (it had ended). */
  closed?: boolean;
}


export interface AdmissionInput {
  candidates: string[];
  preferred: number;
  spec: TrainingJobSpec;
  /** What is left of max_cost_usd for this attempt (absent in histories older than cost-aware admission). */
  budgetUsd?: number;
}

export interface AdmissionResult {
  index: number;
  hourlyUsd: number;
}

export interface Submission {
  deployment: DeploymentRef;
  /** The backend's first word on it (often RUNNING already). */
  status: DeploymentStatus;
  /** The trainer had already ended, and the submit closed the deployment as a follower would have. */
  closed?: boolean;
}

export type SubmitOutcome = { index: number; submission: Submission } | { index: number; failure: FailureInfo };

/**
 * validateSpec and, for a job whose first step is a backend submission, admitAndSubmit of attempt 1, in one local
 * activity: each local activity costs the first workflow task ~15 ms of SDK round trips (bench/lifecycle).
 * `first` is absent when nothing was tried (invalid spec, or a job that does not start with a submission), null when
 * no backend had room (the job waits in awaitAdmission), else what admitAndSubmit would have returned.
 */
export type AcceptResult = ValidationResult & { first?: SubmitOutcome | null };

/** Whether a validated job's first step is submitting attempt 1 to its backends (and with which admission input). */
export function firstSubmission(spec: TrainingJobSpec, workflowId: string): (AdmissionInput & { attempt: 1 }) | undefined {
  // Only finetune jobs: eval and rl jobs may take other paths (the eval suite, grpoRun) depending on the operator
  // config, and a job under another workflow id is refused by the workflow. A spent budget submits nothing.
  if (spec.job_type !== 'finetune' || workflowId !== jobWorkflowId(spec.job_id) || spec.backend.max_cost_usd <= 0) return undefined;
  return { candidates: backendCandidates(spec), preferred: 0, spec, attempt: 1, budgetUsd: spec.backend.max_cost_usd };
}

interface FollowCursor {
  polls: number;
  last: DeploymentStatus | null;
}

export interface ControlDeps {
  config: ForgeConfig;
  backends: Map<string, Backend>;
  /** Poll interval of followDeployment per backend name (ms). */
  pollIntervalMs(backend: string): number;
  /** Per-owner round robin of free slots among waiting jobs (activities/fair-admission.ts); default on. */
  fairness?: 'owner' | 'off';
}

/** A backend's refusal becomes a typed, non-retryable failure: the workflow decides what to do next. */
function asFailure(err: unknown): unknown {
  if (err instanceof BackendError) return ApplicationFailure.create({ message: err.message, type: err.failureClass, nonRetryable: true });
  return err;
}

/** The trainer is done, one way or the other: its deployment is released at once. */
function hasEnded(status: DeploymentStatus): boolean {
  return status.state === 'SUCCEEDED' || status.state === 'FAILED';
}

export function createControlActivities(deps: ControlDeps) {
  const backend = (name: string): Backend => {
    const b = deps.backends.get(name);
    if (!b) {
      throw ApplicationFailure.create({
        message: `backend "${name}" is not configured on this worker; configured: ${[...deps.backends.keys()].join(', ')}`,
        type: 'REJECTED',
        nonRetryable: true,
      });
    }
    return b;
  };

  // Free slots go to waiting owners in round robin (issue 8). Waiters that stop asking (their activity moved to another
  // worker) expire after three polls, and never sooner than 30 s: a loaded worker may be slow to start the next poll.
  const fair = deps.fairness === 'off' ? undefined : new FairAdmission(Math.max(30_000, deps.config.admission_poll_seconds * 3000 + 10_000));

  /** Closes a deployment (nothing of it left running or billing) and lets the owner due on its backend look. */
  const release = async (b: Backend, deployment: DeploymentRef): Promise<void> => {
    try {
      await b.close(deployment);
    } catch (err) {
      throw asFailure(err);
    }
    fair?.wakeDue(deployment.backend); // a slot freed: the owner due there looks now
  };

  /**
   * A trainer that ended before the submit looked (a no-op, a crash at start-up) is released right there, as its
   * follower would have: the workflow then needs no close step, and the job ends in its first workflow task.
   */
  const closeIfEnded = async (b: Backend, outcome: { index: number; submission: Submission }): Promise<SubmitOutcome> => {
    if (!hasEnded(outcome.submission.status)) return outcome;
    await release(b, outcome.submission.deployment);
    return { index: outcome.index, submission: { ...outcome.submission, closed: true } };
  };

  // Per-backend admission locks of this worker process (a chain of promises per backend name).
  const locks = new Map<string, Promise<unknown>>();
  function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const run = (locks.get(name) ?? Promise.resolve()).then(fn, fn);
    locks.set(name, run.catch(() => undefined));
    return run;
  }

  /**
   * Whether a backend would take the job now: room (at a price), no room (and why), or a refusal of this job. A quote
   * that fails or takes longer than admission.quote_timeout_ms counts as no room this round: one unreachable backend
   * API must not hold up the others.
   */
  async function look(name: string, spec: TrainingJobSpec): Promise<Look> {
    const ms = deps.config.admission.quote_timeout_ms;
    let timer: NodeJS.Timeout | undefined;
    try {
      const quote = await Promise.race([
        backend(name).quote(spec),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no quote within ${ms} ms`)), ms);
        }),
      ]);
      return quote.available ? { kind: 'room', hourlyUsd: quote.hourlyUsd, ...(quote.detail && { detail: quote.detail }) } : { kind: 'busy', detail: quote.detail ?? 'no capacity' };
    } catch (err) {
      if (err instanceof BackendError && err.failureClass === 'REJECTED') return { kind: 'refused', detail: err.message };
      if (err instanceof ApplicationFailure) throw err; // a backend this worker does not have
      return { kind: 'busy', detail: `quote failed: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
    }
  }

  /** The candidates in the order to try them: from `preferred` on, wrapping around. */
  function rotation(input: AdmissionInput): { index: number; name: string }[] {
    const n = input.candidates.length;
    return input.candidates.map((_, k) => {
      const index = (input.preferred + k) % n;
      return { index, name: input.candidates[index]! };
    });
  }

  function allRefused(refusals: string[], input: AdmissionInput): void {
    if (refusals.length === input.candidates.length) {
      throw ApplicationFailure.create({ message: refusals.join('; '), type: 'REJECTED', nonRetryable: true });
    }
  }

  /** Quotes every candidate (at once) and ranks them (activities/admission.ts). */
  async function ranking(input: AdmissionInput, attempt: number) {
    const looks: CandidateLook[] = await Promise.all(rotation(input).map(async ({ index, name }) => ({ index, name, look: await look(name, input.spec) })));
    const a = deps.config.admission;
    return rankCandidates({
      looks,
      order: a.order,
      budget: a.budget,
      region: input.spec.backend.region,
      budgetUsd: input.budgetUsd ?? Infinity,
      maxHours: input.spec.resources.max_hours,
      pinPreferred: attempt > 1,
    });
  }

  /** One pass over the candidates: the first admissible one, or why none is. */
  async function firstAvailable(input: AdmissionInput): Promise<AdmissionResult | { waits: string[] }> {
    const r = await ranking(input, 1);
    allRefused(r.refusals, input);
    const first = r.order[0] ?? r.overBudget[0];
    if (first) return { index: first.index, hourlyUsd: 'hourlyUsd' in first ? first.hourlyUsd : 0 };
    return { waits: r.waits };
  }

  const activities = {
    /** Schema, signature, operator policy (allowed owners, known backends). Runs as a local activity. */
    async validateSpec(raw: unknown): Promise<ValidationResult> {
      const parsed = parseTrainingJobSpec(raw);
      if (!parsed.ok) return parsed;
      const issues: SpecIssue[] = [];
      const sig = verifySpecSignatureFast(raw);
      if (!sig.ok) issues.push({ path: 'signature_ed25519', message: sig.reason });
      const spec = parsed.spec;
      const allowed = deps.config.allowed_owners;
      if (allowed && !allowed.includes(spec.owner_did)) {
        issues.push({ path: 'owner_did', message: 'owner is not in the operator’s allowed_owners' });
      }
      const candidates = backendCandidates(spec);
      candidates.forEach((name, i) => {
        if (!deps.backends.has(name)) {
          issues.push({
            path: i === 0 ? 'backend.provider' : `backend.fallbacks.${i - 1}`,
            message: `unknown backend "${name}"; configured: ${[...deps.backends.keys()].join(', ')}`,
          });
        }
      });
      if (issues.length) return { ok: false, issues };
      const c = deps.config;
      return {
        ok: true,
        spec,
        specHash: specHash(raw as Record<string, unknown>),
        settings: {
          maxRetries: spec.backend.max_retries,
          backoff: { initialSeconds: c.retry_backoff.initial_seconds, maxSeconds: c.retry_backoff.max_seconds },
          followHeartbeatSeconds: c.follow_heartbeat_seconds,
          admissionPollSeconds: c.admission_poll_seconds,
          results: resultSettings(c.results),
          rl: rlSettings(c.rl),
        },
      };
    },

    /**
     * QUEUED, slow path: waits (heartbeating; one activity however long the wait) until a candidate backend has
     * capacity, trying them from `preferred` on. Fails REJECTED when every candidate refuses the job.
     */
    async awaitAdmission(input: AdmissionInput & { pollSeconds: number }): Promise<AdmissionResult> {
      const ctx = Context.current();
      const { job_id: jobId, owner_did: owner } = input.spec;
      try {
        for (;;) {
          fair?.wait(input.candidates, jobId, owner);
          const look = await firstAvailable(input);
          if ('index' in look) {
            // Room, and this job's owner is the one due there (fair share): go and take it.
            if (!fair || fair.mayAdmit(input.candidates[look.index]!, owner)) return look;
          }
          ctx.heartbeat({ waiting: 'waits' in look ? look.waits : ['fair share: other owners are due first'] });
          // Until the next poll, or until this job's owner becomes due (a slot was granted or freed on this worker).
          const wake = fair?.wakeup(jobId);
          try {
            await Promise.race([ctx.sleep(input.pollSeconds * 1000), ...(wake ? [wake.promise] : [])]); // rejects when cancelled
          } finally {
            wake?.cancel();
          }
        }
      } catch (err) {
        fair?.leave(jobId); // cancelled: it no longer waits
        throw err;
      }
    },

    /**
     * QUEUED → SUBMITTED in one short step (a local activity): the first candidate with capacity gets attempt n.
     * Null when none has capacity now (the workflow then waits in awaitAdmission). A backend that refuses the
     * submission comes back as a failure of that backend, for the workflow to classify.
     */
    async admitAndSubmit(input: AdmissionInput & { rawSpec: unknown; attempt: number }): Promise<SubmitOutcome | null> {
      const { job_id: jobId, owner_did: owner } = input.spec;
      const r = await ranking(input, input.attempt);
      const refusals = [...r.refusals];
      const waits = [...r.waits];
      for (const c of r.order) {
        // Look again and submit under the backend's lock: two jobs admitted at once must not both take its last slot.
        const outcome = await withLock(c.name, async (): Promise<SubmitOutcome | Look> => {
          const l = await look(c.name, input.spec);
          if (l.kind !== 'room') return l;
          if (c.maxHourlyUsd !== undefined && l.hourlyUsd > c.maxHourlyUsd + 1e-9) return { kind: 'busy', detail: `now $${l.hourlyUsd}/h, over the budget` };
          if (fair && !fair.mayAdmit(c.name, owner)) return { kind: 'busy', detail: 'fair share: jobs of other owners are due first' };
          const b = backend(c.name);
          try {
            const options = c.maxHourlyUsd !== undefined ? { maxHourlyUsd: c.maxHourlyUsd } : {};
            const deployment = await b.submit(input.spec, input.rawSpec, input.attempt, options);
            fair?.granted(c.name, jobId, owner);
            return { index: c.index, submission: { deployment, status: await b.status(deployment) } };
          } catch (err) {
            if (err instanceof BackendError) {
              fair?.leave(jobId);
              return { index: c.index, failure: { class: err.failureClass, detail: err.message } };
            }
            throw err;
          }
        });
        if ('index' in outcome) return 'submission' in outcome ? closeIfEnded(backend(c.name), outcome) : outcome;
        if (outcome.kind === 'refused') refusals.push(`${c.name}: ${outcome.detail}`);
        else waits.push(`${c.name}: ${outcome.detail}`);
      }
      allRefused(refusals, input);
      const over = r.overBudget[0];
      if (over && waits.length === 0) {
        return { index: over.index, failure: { class: 'BUDGET', detail: r.overBudget.map((o) => o.detail).join('; ') } };
      }
      // No room for it now: from here on it waits, and takes its owner's turn when slots free up. (Only jobs that
      // found no room wait: with room for everyone, fairness holds nobody back.)
      fair?.wait(input.candidates, jobId, owner);
      return null;
    },

    /**
     * Follows a deployment and returns only when its state changes (or time or budget runs out), so the workflow's
     * history grows with transitions, not with duration. Heartbeat details carry the cursor for a retried attempt.
     */
    async followDeployment(input: FollowInput): Promise<FollowResult> {
      const ctx = Context.current();
      const b = backend(input.deployment.backend);
      const cursor: FollowCursor = (activityInfo().heartbeatDetails as FollowCursor | undefined) ?? { polls: 0, last: null };
      const deadline = Date.parse(input.deadline);
      const pollMs = deps.pollIntervalMs(input.deployment.backend);
      for (;;) {
        let status: DeploymentStatus;
        try {
          status = await b.status(input.deployment);
        } catch (err) {
          throw asFailure(err);
        }
        cursor.polls += 1;
        cursor.last = status;
        ctx.heartbeat(cursor);
        if (status.state !== input.known) {
          // An ended deployment is released by its follower right away: one step less before the job can end.
          const ended = hasEnded(status);
          if (ended) await release(b, input.deployment);
          return { status, reason: 'changed', closed: ended };
        }
        if (progressDecile(status.progress) > input.knownDecile) return { status, reason: 'progress' };
        if (status.costUsd >= input.budgetUsd) return { status, reason: 'budget' };
        if (Date.now() >= deadline) return { status, reason: 'timeout' };
        // Wakes early when the backend sees a change; ctx.cancelled rejects when the job is cancelled.
        await Promise.race([b.waitForChange ? b.waitForChange(input.deployment, pollMs) : ctx.sleep(pollMs), ctx.cancelled]);
      }
    },

    async closeDeployment(deployment: DeploymentRef): Promise<void> {
      await release(backend(deployment.backend), deployment);
    },

    /** validateSpec, then (when the job starts with one) the first admitAndSubmit: one local activity (AcceptResult). */
    async acceptAndSubmit(input: { rawSpec: unknown; workflowId: string }): Promise<AcceptResult> {
      const v = await activities.validateSpec(input.rawSpec);
      const admission = v.ok ? firstSubmission(v.spec, input.workflowId) : undefined;
      if (!v.ok || !admission) return v;
      try {
        return { ...v, first: await activities.admitAndSubmit({ ...admission, rawSpec: input.rawSpec }) };
      } catch (err) {
        // A typed refusal (every candidate refused the job) is the attempt's failure, as when admitAndSubmit runs
        // alone; anything else fails the activity, which retries validation and the idempotent submission together.
        const failure = typedFailure(err);
        if (failure) return { ...v, first: { index: admission.preferred, failure } };
        throw err;
      }
    },
  };
  return activities;
}

export type ControlActivities = ReturnType<typeof createControlActivities>;
