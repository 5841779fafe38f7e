/**
 * Control activities of the trainingJob workflow, on `forge-orchestrator`: validate, admit, submit, follow, close.
 * Backend-neutral: each call goes to the backend named in its input.
 */
import { Context, ApplicationFailure, activityInfo } from '@temporalio/activity';
import type { ForgeConfig } from '../common/config';
import { parseTrainingJobSpec, specHash, type SpecIssue } from '../spec/parse';
import type { TrainingJobSpec } from '../spec/schema';
import type { FailureInfo } from '../spec/failure';
import { progressDecile } from '../spec/progress';
import { verifySpecSignature } from '../spec/signing';
import { BackendError, type Backend, type DeploymentRef, type DeploymentState, type DeploymentStatus, type Quote } from './backends/types';

export interface JobSettings {
  maxRetries: number;
  backoff: { initialSeconds: number; maxSeconds: number };
  followHeartbeatSeconds: number;
  admissionPollSeconds: number;
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
}

export interface AdmissionResult {
  index: number;
  hourlyUsd: number;
}

export interface Submission {
  deployment: DeploymentRef;
  /** The backend's first word on it (often RUNNING already). */
  status: DeploymentStatus;
}

export type SubmitOutcome = { index: number; submission: Submission } | { index: number; failure: FailureInfo };

interface FollowCursor {
  polls: number;
  last: DeploymentStatus | null;
}

export interface ControlDeps {
  config: ForgeConfig;
  backends: Map<string, Backend>;
  /** Poll interval of followDeployment per backend name (ms). */
  pollIntervalMs(backend: string): number;
}

/** A backend's refusal becomes a typed, non-retryable failure: the workflow decides what to do next. */
function asFailure(err: unknown): unknown {
  if (err instanceof BackendError) return ApplicationFailure.create({ message: err.message, type: err.failureClass, nonRetryable: true });
  return err;
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

  /** One pass over the candidates from `preferred` on: the first with capacity, or why none has. */
  async function firstAvailable(input: AdmissionInput): Promise<AdmissionResult | { waits: string[] }> {
    const n = input.candidates.length;
    const refusals: string[] = [];
    const waits: string[] = [];
    for (let k = 0; k < n; k++) {
      const index = (input.preferred + k) % n;
      const name = input.candidates[index]!;
      let quote: Quote;
      try {
        quote = await backend(name).quote(input.spec);
      } catch (err) {
        if (!(err instanceof BackendError) || err.failureClass !== 'REJECTED') throw asFailure(err);
        refusals.push(`${name}: ${err.message}`);
        continue;
      }
      if (quote.available) return { index, hourlyUsd: quote.hourlyUsd };
      waits.push(`${name}: ${quote.detail ?? 'no capacity'}`);
    }
    if (refusals.length === n) throw ApplicationFailure.create({ message: refusals.join('; '), type: 'REJECTED', nonRetryable: true });
    return { waits };
  }

  return {
    /** Schema, signature, operator policy (allowed owners, known backends). Runs as a local activity. */
    async validateSpec(raw: unknown): Promise<ValidationResult> {
      const parsed = parseTrainingJobSpec(raw);
      if (!parsed.ok) return parsed;
      const issues: SpecIssue[] = [];
      const sig = verifySpecSignature(raw);
      if (!sig.ok) issues.push({ path: 'signature_ed25519', message: sig.reason });
      const spec = parsed.spec;
      const allowed = deps.config.allowed_owners;
      if (allowed && !allowed.includes(spec.owner_did)) {
        issues.push({ path: 'owner_did', message: 'owner is not in the operator’s allowed_owners' });
      }
      const candidates = [spec.backend.provider, ...(spec.backend.fallbacks ?? [])];
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
        },
      };
    },

    /**
     * QUEUED, slow path: waits (heartbeating; one activity however long the wait) until a candidate backend has
     * capacity, trying them from `preferred` on. Fails REJECTED when every candidate refuses the job.
     */
    async awaitAdmission(input: AdmissionInput & { pollSeconds: number }): Promise<AdmissionResult> {
      const ctx = Context.current();
      for (;;) {
        const look = await firstAvailable(input);
        if ('index' in look) return look;
        ctx.heartbeat({ waiting: look.waits });
        await ctx.sleep(input.pollSeconds * 1000); // rejects with CancelledFailure when the job is cancelled
      }
    },

    /**
     * QUEUED → SUBMITTED in one short step (a local activity): the first candidate with capacity gets attempt n.
     * Null when none has capacity now (the workflow then waits in awaitAdmission). A backend that refuses the
     * submission comes back as a failure of that backend, for the workflow to classify.
     */
    async admitAndSubmit(input: AdmissionInput & { rawSpec: unknown; attempt: number }): Promise<SubmitOutcome | null> {
      const look = await firstAvailable(input);
      if (!('index' in look)) return null;
      const b = backend(input.candidates[look.index]!);
      try {
        const deployment = await b.submit(input.spec, input.rawSpec, input.attempt);
        return { index: look.index, submission: { deployment, status: await b.status(deployment) } };
      } catch (err) {
        if (err instanceof BackendError) return { index: look.index, failure: { class: err.failureClass, detail: err.message } };
        throw err;
      }
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
          const ended = status.state === 'SUCCEEDED' || status.state === 'FAILED';
          if (ended) await b.close(input.deployment).catch((err: unknown) => { throw asFailure(err); });
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
      try {
        await backend(deployment.backend).close(deployment);
      } catch (err) {
        throw asFailure(err);
      }
    },
  };
}

export type ControlActivities = ReturnType<typeof createControlActivities>;
