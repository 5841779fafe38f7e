/**
 * Control activities of the trainingJob workflow, on `forge-orchestrator`: validate, admit, submit, follow, close.
 * Backend-neutral: each call goes to the backend named in its input.
 */
import { Context, ApplicationFailure, activityInfo } from '@temporalio/activity';
import { outageSeconds, type ForgeConfig } from '../common/config';
import { resultSettings, type ResultSettings } from '../common/results-config';
import { rlSettings, type RlSettings } from '../common/rl-config';
import type { SpecIssue } from '../jobspec/parse';
import type { TrainingJobSpec } from '../jobspec/schema';
import { type FailureInfo, typedFailure } from '../jobspec/failure';
import { progressDecile } from '../jobspec/progress';
import { acceptSpec, specIssuesOf } from '../common/accept-spec';
import { forgeHome } from '../common/paths';
import { rankCandidates, type CandidateLook, type Look } from './admission';
import { FairAdmission } from './fair-admission';
import { CapacityGate } from './capacity';
import { jobWorkflowId, workflowIdMismatch } from '../common/names';
import { BackendError, type Backend, type DeploymentRef, type DeploymentState, type DeploymentStatus } from './backends/types';
import { backendCandidates } from '../jobspec/candidates';
import { isTransientError } from './backends/remote/remote-http';
import type { EvalAttemptRequest } from '../workflows/lifecycle/eval-placement';
import { evalRunInputs } from './backend-evals';
import { pause } from './pause';
import { defaultSuiteDir } from './eval-suite';

export interface JobSettings {
  maxRetries: number;
  backoff: { initialSeconds: number; maxSeconds: number };
  followHeartbeatSeconds: number;
  admissionPollSeconds: number;
  /** Result integration (common/results-config.ts); absent in histories older than it. */
  results?: ResultSettings;
  /** RL jobs' grpoRun settings (common/rl-config.ts); absent in histories older than RL. */
  rl?: RlSettings;
  /** Outage budget (backend_outage_seconds) of each candidate backend; absent in histories older than it. */
  outageSeconds?: Record<string, number>;
  /** history_events_per_run; absent in histories older than it (then 1000, its default). */
  historyEventsPerRun?: number;
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
  /** The workflow already knows the backend's API has been unreachable since then (ISO time). */
  unreachableSince?: string;
}

export interface FollowResult {
  status: DeploymentStatus;
  /**
   * Why the activity returned: the state changed, training passed another tenth of its steps (so the status query
   * shows progress at most ten extra times per attempt, however long it runs), or time or budget ran out.
   */
  reason: 'changed' | 'progress' | 'timeout' | 'budget' | 'unreachable' | 'reachable';
  /** The follower already closed the deployment (it had ended). */
  closed?: boolean;
  /**
   * reason "unreachable": the backend's API has failed to answer since then (the status query shows it); `status` is
   * the last good answer. "reachable": it answers again.
   */
  unreachableSince?: string;
}


export interface AdmissionInput {
  candidates: string[];
  preferred: number;
  spec: TrainingJobSpec;
  /** What is left of max_cost_usd for this attempt (absent in histories older than cost-aware admission). */
  budgetUsd?: number;
  /** The attempt evaluates a model instead of training (README "Where evaluation runs"). */
  evalRun?: EvalAttemptRequest;
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
  if (spec.job_type !== 'finetune' || workflowIdMismatch(workflowId, spec.job_id) !== undefined || spec.backend.max_cost_usd <= 0) return undefined;
  return { candidates: backendCandidates(spec), preferred: 0, spec, attempt: 1, budgetUsd: spec.backend.max_cost_usd };
}

interface FollowCursor {
  polls: number;
  last: DeploymentStatus | null;
  /** Epoch ms of the first failed status() since the last good answer (the backend's API is unreachable). */
  failingSince?: number;
  lastError?: string;
}

export interface ControlDeps {
  config: ForgeConfig;
  backends: Map<string, Backend>;
  /** Poll interval of followDeployment per backend name (ms). */
  pollIntervalMs(backend: string): number;
  /** Per-owner round robin of free slots among waiting jobs (activities/fair-admission.ts); default on. */
  fairness?: 'owner' | 'off';
  /** FORGE_HOME, the default root of the spec policy's paths (common/spec-policy.ts); default forgeHome(). */
  home?: string;
  /** Slots of backends with max_concurrent, shared by every replica (activities/capacity.ts); default: the entity via the worker's client. */
  capacity?: CapacityGate;
}

/** How often a job near the head of a capped backend's queue asks its admission entity again. */
const NEAR_POLL_MS = 1000;

/** Type of the retryable failure of a backend whose API (network, 5xx, 429) or disk does not answer now. */
export const BACKEND_UNAVAILABLE = 'BACKEND_UNAVAILABLE';

/**
 * A backend's refusal becomes a typed, non-retryable failure: the workflow decides what to do next. A transient error
 * becomes a retryable BACKEND_UNAVAILABLE, retried through the outage budget (then LOST, or close pending).
 */
function asFailure(err: unknown): unknown {
  if (err instanceof BackendError) return ApplicationFailure.create({ message: err.message, type: err.failureClass, nonRetryable: true });
  if (isTransientError(err)) return ApplicationFailure.create({ message: (err as Error).message, type: BACKEND_UNAVAILABLE, nonRetryable: false });
  return err;
}

/** The backend's API stayed unreachable for its whole outage budget: the attempt is LOST (the retry plan moves on). */
function outageFailure(d: DeploymentRef, since: number, outageMs: number, lastError: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: 'LOST',
    nonRetryable: true,
    message:
      `backend ${d.backend}: API unreachable since ${new Date(since).toISOString()}, longer than its outage budget ` +
      `(backend_outage_seconds ${outageMs / 1000}); deployment ${d.id} is closed and the job retries per its plan. Last error: ${lastError}`,
  });
}

/**
 * The trainer is done, one way or the other: its deployment is released at once — unless its outputs are still on it
 * (a remote backend's SUCCEEDED): then the workflow closes it once they are committed.
 */
function hasEnded(status: DeploymentStatus): boolean {
  return (status.state === 'SUCCEEDED' && !status.outputsOnDeployment) || status.state === 'FAILED';
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

  // ---- global max_concurrent: the backend's admission entity (workflows/backend-capacity.ts) ----
  const gate = deps.capacity ?? new CapacityGate(deps.config.admission.reclaim_seconds);
  const capOf = (name: string): number | undefined => deps.config.backends[name]?.max_concurrent;
  // A grant waits this long for its job to come back (a few admission polls), then goes to the next waiter.
  const claimMs = Math.max(30_000, deps.config.admission_poll_seconds * 3000 + 10_000);

  /** A capped backend's slot for the job: undefined when the backend has no max_concurrent (nothing to ask). */
  async function takeSlot(name: string, spec: TrainingJobSpec, attempt: number | undefined): Promise<{ kind: 'granted' } | (Look & { near: boolean }) | undefined> {
    const cap = capOf(name);
    if (cap === undefined) return undefined;
    const r = await gate.acquire(name, {
      workflowId: jobWorkflowId(spec.job_id),
      owner: spec.owner_did,
      cap,
      claimMs,
      ...(attempt !== undefined && { attempt }),
    });
    if (r.granted) return { kind: 'granted' };
    // near: among the next 2 × cap to be granted, so it asks again soon (its grant may come from another replica).
    return { kind: 'busy', near: r.position <= 2 * Math.max(1, r.cap), detail: `max_concurrent ${r.cap} reached across all orchestrators (${r.held} held); place ${r.position} of ${r.waiting} in the owners' round robin` };
  }

  /** Gives a capped backend's slot back (and leaves its queue). */
  async function giveBack(name: string, jobId: string, attempt?: number): Promise<void> {
    if (capOf(name) !== undefined) await gate.release(name, { workflowId: jobWorkflowId(jobId), ...(attempt !== undefined && { attempt }) });
  }

  /** Admitted on `taken`: the job leaves the queues of the other capped candidates it may wait in. */
  async function leaveOthers(input: AdmissionInput, taken: string, attempt: number): Promise<void> {
    for (const name of new Set(input.candidates)) if (name !== taken) await giveBack(name, input.spec.job_id, attempt);
  }

  /**
   * Attempt n begins: slots the job still holds for earlier attempts go back. An attempt whose submit failed untyped
   * (the API down, its answer lost) keeps its slot so that the retried submit reuses it; when that attempt then fails
   * LOST and the next one goes to another backend, nothing else would free it until the job ends. Once per job and
   * attempt on this replica (a repeated release is answered by the entity's validator anyway).
   */
  const leftEarlier = new Set<string>();
  async function leaveEarlierAttempts(input: AdmissionInput, attempt: number): Promise<void> {
    const key = `${input.spec.job_id}#${attempt}`;
    if (attempt <= 1 || leftEarlier.has(key)) return;
    for (const name of new Set(input.candidates)) await giveBack(name, input.spec.job_id, attempt - 1);
    if (leftEarlier.size >= 10_000) leftEarlier.clear();
    leftEarlier.add(key);
  }

  /** Closes a deployment (nothing of it left running or billing) and lets the owner due on its backend look. */
  const release = async (b: Backend, deployment: DeploymentRef): Promise<void> => {
    try {
      await b.close(deployment);
    } catch (err) {
      throw asFailure(err);
    }
    await giveBack(deployment.backend, deployment.jobId, deployment.attempt);
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
    const looks: CandidateLook[] = await Promise.all(
      rotation(input).map(async ({ index, name }) => ({ index, name, look: await look(name, input.spec) })),
    );
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

  /**
   * awaitAdmission when a candidate has max_concurrent: polls the candidates' admission entities (and the others'
   * quotes) until one grants a slot; the entity picks whose turn it is, so no local round robin applies. Woken early
   * when a call on this replica frees a slot that went to this job.
   */
  async function awaitSlot(input: AdmissionInput & { pollSeconds: number; attempt?: number }): Promise<AdmissionResult> {
    const ctx = Context.current();
    let r: Awaited<ReturnType<typeof ranking>> | undefined;
    let rankedAt = 0;
    for (;;) {
      // The backends are quoted every admission_poll_seconds; the quicker polls near the head only ask the entity.
      if (!r || Date.now() - rankedAt >= input.pollSeconds * 1000) {
        r = await ranking(input, 1);
        rankedAt = Date.now();
        allRefused(r.refusals, input);
      }
      const waits = [...r.waits];
      let near = false;
      for (const c of r.order) {
        const slot = await takeSlot(c.name, input.spec, input.attempt);
        if (slot && 'near' in slot) near ||= slot.near;
        if (slot?.kind === 'granted' || (!slot && (!fair || fair.mayAdmit(c.name, input.spec.owner_did)))) return { index: c.index, hourlyUsd: c.hourlyUsd };
        waits.push(`${c.name}: ${slot?.kind === 'busy' ? slot.detail : slot ? 'refused' : 'fair share: other owners are due first'}`);
      }
      const over = r.overBudget[0];
      if (over && r.order.length === 0) return { index: over.index, hourlyUsd: 0 };
      ctx.heartbeat({ waiting: waits });
      // Woken at once by a release on this replica that granted it the slot; a grant made on another replica is seen
      // at the next poll: within a second for the jobs near the head of the queue, else admission_poll_seconds.
      const wake = gate.wakeup(jobWorkflowId(input.spec.job_id));
      try {
        await pause(ctx, Math.min(input.pollSeconds * 1000, near ? NEAR_POLL_MS : Infinity), wake.promise); // rejects when cancelled
      } finally {
        wake.cancel();
      }
    }
  }

  const activities = {
    /** Schema, signature, operator policy (allowed owners, known backends, jobspec/policy.ts). Runs as a local activity. */
    async validateSpec(raw: unknown): Promise<ValidationResult> {
      // The same check as the API's POST /jobs (common/accept-spec.ts): a bare Temporal client is refused here,
      // before anything runs.
      const a = acceptSpec(raw, { config: deps.config, backends: deps.backends, home: deps.home ?? forgeHome() });
      if (!a.ok) return { ok: false, issues: specIssuesOf(a.errors) };
      const { spec } = a.signed;
      const candidates = backendCandidates(spec);
      const c = deps.config;
      return {
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
      };
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
    async admitAndSubmit(input: AdmissionInput & { rawSpec: unknown; attempt: number }): Promise<SubmitOutcome | null> {
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
            const deployment = await b.submit(input.spec, input.rawSpec, input.attempt, options);
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

    /**
     * Follows a deployment and returns only when its state changes (or time or budget runs out), so the workflow's
     * history grows with transitions, not with duration. Heartbeat details carry the cursor for a retried attempt.
     */
    async followDeployment(input: FollowInput): Promise<FollowResult> {
      const ctx = Context.current();
      const b = backend(input.deployment.backend);
      const since = input.unreachableSince ? Date.parse(input.unreachableSince) : undefined;
      const cursor: FollowCursor = (activityInfo().heartbeatDetails as FollowCursor | undefined) ?? {
        polls: 0,
        last: null,
        ...(since ? { failingSince: since } : {}),
      };
      const deadline = Date.parse(input.deadline);
      const pollMs = deps.pollIntervalMs(input.deployment.backend);
      const outageMs = outageSeconds(deps.config, input.deployment.backend) * 1000;
      for (;;) {
        let status: DeploymentStatus;
        const asked = Date.now();
        try {
          status = await b.status(input.deployment);
        } catch (err) {
          if (err instanceof BackendError || err instanceof ApplicationFailure) throw asFailure(err);
          // The backend's API does not answer (network, 5xx, 429, disk): keep polling through the outage budget.
          cursor.failingSince ??= asked;
          cursor.lastError = (err as Error).message;
          ctx.heartbeat(cursor);
          const failingMs = Date.now() - cursor.failingSince;
          if (failingMs >= outageMs) throw outageFailure(input.deployment, cursor.failingSince, outageMs, cursor.lastError);
          // Past a third of the budget (30 s at most) the workflow learns of it once, so the status query shows it.
          if (!since && failingMs >= Math.min(30_000, outageMs / 3)) {
            return { status: cursor.last ?? { state: input.known, costUsd: 0 }, reason: 'unreachable', unreachableSince: new Date(cursor.failingSince).toISOString() };
          }
          await pause(ctx, pollMs);
          continue;
        }
        delete cursor.failingSince;
        delete cursor.lastError;
        cursor.polls += 1;
        cursor.last = status;
        ctx.heartbeat(cursor);
        if (status.state !== input.known) {
          // An ended deployment is released by its follower right away: one step less before the job can end.
          const ended = hasEnded(status);
          if (ended) await release(b, input.deployment);
          return { status, reason: 'changed', closed: ended };
        }
        if (since) return { status, reason: 'reachable' };
        if (progressDecile(status.progress) > input.knownDecile) return { status, reason: 'progress' };
        if (status.costUsd >= input.budgetUsd) return { status, reason: 'budget' };
        if (Date.now() >= deadline) return { status, reason: 'timeout' };
        // Wakes early when the backend sees a change; ctx.cancelled rejects when the job is cancelled.
        await pause(ctx, pollMs, ...(b.waitForChange ? [b.waitForChange(input.deployment, pollMs)] : []));
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
