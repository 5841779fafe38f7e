/**
 * Control activities of the trainingJob workflow, on `forge-orchestrator`: validate, admit, submit, follow, close.
 * Backend-neutral: each call goes to the backend named in its input. The admission engine is admit.ts, the follower
 * follow.ts; what crosses to the workflow is types.ts.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { outageSeconds } from '../../common/config';
import { resultSettings } from '../../common/results-config';
import { rlSettings } from '../../common/rl-config';
import { typedFailure } from '../../jobspec/failure';
import { acceptSpec, specIssuesOf } from '../../common/accept-spec';
import { forgeHome } from '../../common/paths';
import { backendCandidates } from '../../jobspec/candidates';
import { BackendError, type Backend, type DeploymentRef } from '../backends/types';
import { evalRunInputs } from '../backend-evals';
import { defaultSuiteDir } from '../eval-suite';
import type { Look } from './admission';
import { createAdmission } from './admit';
import { hasEnded } from './failures';
import { createFollow } from './follow';
import { pause } from './pause';
import {
  firstSubmission,
  type AcceptResult,
  type AdmissionInput,
  type AdmissionResult,
  type ControlDeps,
  type Submission,
  type SubmitOutcome,
  type SubmitRequest,
  type ValidationResult,
} from './types';
import type { SignedSpec } from '../../jobspec/signed-spec';

export type * from './types';
export { firstSubmission } from './types';
export { BACKEND_UNAVAILABLE } from './failures';

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
  const admission = createAdmission(deps, backend);
  const { fair, capOf, takeSlot, giveBack, leaveOthers, leaveEarlierAttempts, release, withLock, look, ranking, allRefused } = admission;
  const { firstAvailable, awaitSlot } = admission;

  /**
   * A trainer that ended before the submit looked (a no-op, a crash at start-up) is released right there, as its
   * follower would have: the workflow then needs no close step, and the job ends in its first workflow task.
   */
  const closeIfEnded = async (b: Backend, outcome: { index: number; submission: Submission }): Promise<SubmitOutcome> => {
    if (!hasEnded(outcome.submission.status)) return outcome;
    await release(b, outcome.submission.deployment);
    return { index: outcome.index, submission: { ...outcome.submission, closed: true } };
  };

  /**
   * Schema, signature, operator policy: the same check as the API's POST /jobs (common/accept-spec.ts), so a bare
   * Temporal client is refused here, before anything runs. The workflow gets the typed spec, its hash and the job's
   * settings (not the signed JSON again: it has that as its input).
   */
  const accept = (raw: unknown): { result: ValidationResult; signed?: SignedSpec } => {
    const a = acceptSpec(raw, { config: deps.config, backends: deps.backends, home: deps.home ?? forgeHome() });
    if (!a.ok) return { result: { ok: false, issues: specIssuesOf(a.errors) } };
    const { spec } = a.signed;
    const candidates = backendCandidates(spec);
    const c = deps.config;
    return {
      signed: a.signed,
      result: {
        ok: true,
        spec,
        specHash: a.signed.sha256,
        settings: {
          maxRetries: spec.backend.max_retries,
          backoff: { initialSeconds: c.retry_backoff.initial_seconds, maxSeconds: c.retry_backoff.max_seconds },
          followHeartbeatSeconds: c.follow_heartbeat_seconds,
          admissionPollSeconds: c.admission_poll_seconds,
          results: resultSettings(c.results),
          rl: rlSettings(c.rl),
          outageSeconds: Object.fromEntries(candidates.map((name) => [name, outageSeconds(c, name)])),
          historyEventsPerRun: c.history_events_per_run,
        },
      },
    };
  };

  const activities = {
    /** Schema, signature, operator policy (allowed owners, known backends, common/spec-policy.ts). A local activity. */
    async validateSpec(raw: unknown): Promise<ValidationResult> {
      return accept(raw).result;
    },

    /**
     * QUEUED, slow path: waits (heartbeating; one activity however long the wait) until a candidate backend has
     * capacity, trying them from `preferred` on. Fails REJECTED when every candidate refuses the job.
     */
    async awaitAdmission(input: AdmissionInput & { pollSeconds: number; attempt?: number }): Promise<AdmissionResult> {
      const ctx = Context.current();
      const { job_id: jobId, owner_did: owner } = input.spec;
      if (input.candidates.some((name) => capOf(name) !== undefined)) return awaitSlot(input);
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
            await pause(ctx, input.pollSeconds * 1000, ...(wake ? [wake.promise] : [])); // rejects when cancelled
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
    async admitAndSubmit(request: SubmitRequest): Promise<SubmitOutcome | null> {
      const { signed, ...rest } = request;
      const input: AdmissionInput & { attempt: number } = { ...rest, spec: signed.spec };
      const { job_id: jobId, owner_did: owner } = input.spec;
      await leaveEarlierAttempts(input, input.attempt);
      const r = await ranking(input, input.attempt);
      const refusals = [...r.refusals];
      const waits = [...r.waits];
      for (const c of r.order) {
        // Look again and submit under the backend's lock: two jobs admitted at once must not both take its last slot.
        const outcome = await withLock(c.name, async (): Promise<SubmitOutcome | Look> => {
          const l = await look(c.name, input.spec);
          if (l.kind !== 'room') return l;
          if (c.maxHourlyUsd !== undefined && l.hourlyUsd > c.maxHourlyUsd + 1e-9) return { kind: 'busy', detail: `now $${l.hourlyUsd}/h, over the budget` };
          // A capped backend: its admission entity decides, for every replica at once (and the owners' turn with it).
          const slot = await takeSlot(c.name, input.spec, input.attempt);
          if (slot && slot.kind !== 'granted') return slot;
          if (!slot && fair && !fair.mayAdmit(c.name, owner)) return { kind: 'busy', detail: 'fair share: jobs of other owners are due first' };
          const b = backend(c.name);
          try {
            const options = {
              ...(c.maxHourlyUsd !== undefined && { maxHourlyUsd: c.maxHourlyUsd }),
              ...(input.evalRun && { evalRun: evalRunInputs(input.evalRun, deps.config.results.evals.suite_dir ?? defaultSuiteDir()) }),
            };
            const deployment = await b.submit(signed, input.attempt, options);
            fair?.granted(c.name, jobId, owner);
            await leaveOthers(input, c.name, input.attempt); // the queues of capped candidates it may wait in
            return { index: c.index, submission: { deployment, status: await b.status(deployment) } };
          } catch (err) {
            if (err instanceof BackendError) {
              fair?.leave(jobId);
              // Refused: nothing runs, the slot is free again. (Any other error keeps it: the retried submit is
              // idempotent and takes the same slot.)
              if (slot) await giveBack(c.name, jobId, input.attempt);
              return { index: c.index, failure: { class: err.failureClass, detail: err.message } };
            }
            if (err instanceof ApplicationFailure) throw err;
            // The backend's API (or its disk) failed to answer: no room this round, as a failed quote. The job waits in
            // QUEUED; the backend's submit is idempotent per job and attempt, so a pod created before the answer was
            // lost is adopted by the next submit there.
            return { kind: 'busy', detail: `submit failed: ${(err as Error).message}` };
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

    /** Follows a deployment until its state changes (activities/control/follow.ts). */
    followDeployment: createFollow(deps, backend, release),

    async closeDeployment(deployment: DeploymentRef): Promise<void> {
      await release(backend(deployment.backend), deployment);
    },

    /** validateSpec, then (when the job starts with one) the first admitAndSubmit: one local activity (AcceptResult). */
    async acceptAndSubmit(input: { rawSpec: unknown; workflowId: string }): Promise<AcceptResult> {
      const { result: v, signed } = accept(input.rawSpec);
      const admission = signed ? firstSubmission(signed, input.workflowId) : undefined;
      if (!admission) return v;
      try {
        return { ...v, first: await activities.admitAndSubmit(admission) };
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
