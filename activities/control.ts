/**
 * Control activities of the trainingJob workflow, on `forge-orchestrator`: validate, admit, submit, follow, close.
 * Backend-neutral: each call goes to the backend named in its input.
 */
import { Context, ApplicationFailure, activityInfo } from '@temporalio/activity';
import type { ForgeConfig } from '../common/config';
import { parseTrainingJobSpec, specHash, type SpecIssue } from '../spec/parse';
import type { TrainingJobSpec } from '../spec/schema';
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
}


export interface AdmissionResult {
  index: number;
  hourlyUsd: number;
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
     * QUEUED: waits (heartbeating, one activity however long the wait) until one of the candidate backends has
     * capacity, trying them from `preferred` on; returns its index. Fails REJECTED when every candidate refuses.
     */
    async awaitAdmission(input: { candidates: string[]; preferred: number; spec: TrainingJobSpec; pollSeconds: number }): Promise<AdmissionResult> {
      const ctx = Context.current();
      const n = input.candidates.length;
      for (;;) {
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
        if (refusals.length === n) {
          throw ApplicationFailure.create({ message: refusals.join('; '), type: 'REJECTED', nonRetryable: true });
        }
        ctx.heartbeat({ waiting: waits });
        await ctx.sleep(input.pollSeconds * 1000); // rejects with CancelledFailure when the job is cancelled
      }
    },

    async submitAttempt(input: { backend: string; spec: TrainingJobSpec; rawSpec: unknown; attempt: number }): Promise<DeploymentRef> {
      try {
        return await backend(input.backend).submit(input.spec, input.rawSpec, input.attempt);
      } catch (err) {
        throw asFailure(err);
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
        if (status.state !== input.known) return { status, reason: 'changed' };
        if (progressDecile(status.progress) > input.knownDecile) return { status, reason: 'progress' };
        if (status.costUsd >= input.budgetUsd) return { status, reason: 'budget' };
        if (Date.now() >= deadline) return { status, reason: 'timeout' };
        await ctx.sleep(pollMs); // rejects with CancelledFailure when the job is cancelled (delivered via heartbeat)
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
