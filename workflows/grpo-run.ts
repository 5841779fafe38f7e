/**
 * grpoRun (child of trainingJob, id `job-<job_id>-grpo-<attempt>`; docs/architecture.md §3, §7): GRPO for one attempt of an
 * rl job, asynchronous with bounded staleness.
 *
 *   acquire a trainer host (forge-grpo) ─→ watch it ─┬─→ rollouts of step s (forge-rollout, `group_size` completions
 *        ↑                                          │    of `prompts_per_step` prompts, rewards from the checkers)
 *        └──── host lost: resume from its last ─────┤─→ advantages (pure) → update s on forge-grpo@<hostId>
 *              checkpoint on another host           └─→ version s: its weights' URL and sha256
 *
 * The batch of step s is dispatched as soon as the latest version is at least s − 1 − max_off_policy_steps, with the
 * latest version (workflows/rl/pipeline.ts), so rollouts of later steps run while earlier steps update; the versions
 * each update uses are checked again before it is sent. Updates are pipelined: a step's update is sent as soon as its
 * batch is complete, even while the step before still updates (the host runs them in order), so that the trainer
 * starts the next step without waiting for this workflow's round trip. Continues-as-new when Temporal suggests it,
 * after draining the pipeline, carrying its state (host lease, version, counters). A failure (jobspec/failure.ts classes;
 * INTERNAL for an error nobody typed) is returned after the trainer host is released — `{ ok: false, failure }`, the
 * execution completes, never Failed — and trainingJob records and retries it like any attempt. Only cancellation
 * propagates.
 */
import {
  type ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  setCurrentDetails,
  setHandler,
  sleep,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { HostLease, RolloutResult } from '../activities/rl/types';
import { DEFAULT_MAX_REJECTIONS, DEFAULT_VERIFY_LOGPROB_TOLERANCE, addRejections, refusedWorkers } from '../common/rl-rejections';
import { RL_FAILURE } from '../common/rl-names';
import { groupAdvantages } from './rl/advantages';
import { grpoDetails } from './lifecycle/details';
import { causeOf, fail, runFailure } from './rl/failures';
import { assertUsable } from './rl/pipeline';
import { planHostTick } from './rl/planner';
import { fnv1a, promptsForStep, samplingSeed } from './rl/prompts';
import { grpoActivities } from './rl/run-activities';
import { freshCarry, progressOf, type GrpoCarry, type GrpoRunInput, type GrpoRunOutcome, type GrpoRunResult, type RlProgress } from './rl/run-types';

export type { GrpoCarry, GrpoRunFailed, GrpoRunInput, GrpoRunOutcome, GrpoRunResult, RlProgress } from './rl/run-types';

/**
 * patched() id: a failure is returned as GrpoRunFailed (the execution completes). Histories recorded before it failed
 * the execution with the typed ApplicationFailure (and an untyped error failed the workflow task).
 */
const PATCH_NO_FAIL = 'forge-grpo-no-fail';

export const rlStatusQuery = defineQuery<RlProgress>('status');
/** grpoRun → trainingJob: the latest progress (throttled to one per status_interval_seconds, plus phase changes). */
export const rlProgressSignal = defineSignal<[RlProgress]>('rlProgress');

interface Batch {
  step: number;
  results: (RolloutResult | null)[];
  pending: number;
}

/**
 * patched() id: updates are pipelined (the next step's update is sent while the one before runs; at most
 * UPDATE_DEPTH in flight, and never more than the host's trainer says it takes: HostLease.pipelineDepth). Histories
 * recorded before replay with one update at a time.
 */
const PATCH_PIPELINED_UPDATES = 'forge-rl-pipelined-updates';
const UPDATE_DEPTH = 2;

export async function grpoRun(input: GrpoRunInput): Promise<GrpoRunOutcome> {
  // First, so that its marker is this run's first command.
  const updateDepth = patched(PATCH_PIPELINED_UPDATES) ? UPDATE_DEPTH : 1;
  const { settings, rl } = input;
  const info = workflowInfo();
  const runId = info.workflowId;
  const jobSeed = fnv1a(input.jobId);
  const c: GrpoCarry = input.carry ?? freshCarry(Date.now());
  let phase: RlProgress['phase'] = c.host ? 'training' : 'acquiring';
  const costUsd = (): number => (settings.hourlyUsd * (Date.now() - c.startedAt)) / 3_600_000;
  const progress = (): RlProgress => progressOf(c, { runId, phase, maxSteps: input.maxSteps, costUsd: costUsd() });
  setHandler(rlStatusQuery, progress);

  /** Tells the parent job; `force` for phase changes, otherwise at most once per status interval. */
  async function report(force = false): Promise<void> {
    // The Web UI's current details (user metadata, no command): at every step and phase change.
    setCurrentDetails(grpoDetails(progress(), input.jobId, input.attempt));
    if (!input.parentWorkflowId) return;
    if (!force && Date.now() - c.lastSignalAt < settings.statusIntervalSeconds * 1000) return;
    c.lastSignalAt = Date.now();
    try {
      await getExternalWorkflowHandle(input.parentWorkflowId).signal(rlProgressSignal, progress());
    } catch (err) {
      if (isCancellation(err)) throw err;
      log.warn('could not signal the job its RL progress', { error: (err as Error).message });
    }
  }

  const { acquireActs, hostActs, rolloutActs, orchestratorActs } = grpoActivities(settings);

  function checkLimits(): void {
    if (input.deadline && Date.now() >= Date.parse(input.deadline)) throw fail('TIMEOUT', `the RL attempt ran past resources.max_hours at step ${c.version}`);
    if (input.budgetUsd !== null && costUsd() >= input.budgetUsd) {
      throw fail('BUDGET', `the RL attempt cost $${costUsd().toFixed(4)}, reaching what max_cost_usd left it ($${input.budgetUsd.toFixed(4)})`);
    }
  }

  async function acquire(): Promise<HostLease> {
    phase = 'acquiring';
    try {
      const lease = await acquireActs.acquireTrainerHost.executeWithOptions({ summary: `acquire a trainer host for attempt ${input.attempt}` }, [
        { jobId: input.jobId, runId, attempt: input.attempt, config: input.trainer },
      ]);
      if (lease.policy.version < c.version) {
        c.stepsRedone += c.version - lease.policy.version;
        log.warn(`trainer host ${lease.hostId} resumed version ${lease.policy.version}: steps ${lease.policy.version + 1}-${c.version} are redone`);
      }
      c.host = lease;
      c.version = lease.policy.version;
      c.policy = lease.policy;
      phase = 'training';
      await report(true);
      return lease;
    } catch (err) {
      if (isCancellation(err)) throw err;
      const cause = causeOf(err);
      if (cause.type === 'EXIT_CODE' || cause.type === 'REJECTED') throw fail(cause.type, `the trainer host could not load the policy: ${cause.message}`);
      if (cause.type === 'TRANSIENT') throw fail('TRANSIENT', `the trainer host failed transiently: ${cause.message}`);
      throw fail('NO_CAPACITY', `no trainer host on ${settings.grpoTaskQueue} took the run within ${settings.acquireTimeoutSeconds} s (${cause.message})`);
    }
  }

  /** lost: `alive` when the host still answered (an update or upload failed): its session is released first. */
  type HostOutcome = { kind: 'done' } | { kind: 'lost'; reason: string; alive: boolean } | { kind: 'continue-as-new' };

  /** The pipeline on one trainer host, until the run is done, the host is lost, or it is time to continue-as-new. */
  async function onHost(lease: HostLease): Promise<HostOutcome> {
    const scope = new CancellationScope();
    const batches = new Map<number, Batch>();
    let nextStep = c.version + 1;
    /** The newest step whose update was sent to this host, and how many updates are in flight. */
    let sent = c.version;
    let updating = 0;
    let inFlight = 0;
    let lost: string | null = null;
    let watchFailed = false;
    let fatal: ApplicationFailure | null = null;
    let draining = false;
    let changes = 0;
    const changed = (): void => void changes++;
    const ha = hostActs(lease, { timeoutSeconds: settings.updateTimeoutSeconds, attempts: 3 });
    // Never more updates in flight than the host's trainer takes (one, for a trainer from before pipelining).
    const depth = Math.min(updateDepth, lease.pipelineDepth ?? 1);

    // The watch: returns only when cancelled; fails when the session dies, the host drains, or stops heartbeating.
    void scope
      .run(() => hostActs(lease, { timeoutSeconds: 365 * 24 * 3600, attempts: 1 }).watchTrainerHost({ sessionId: lease.sessionId }))
      .then(
        () => undefined,
        (err: unknown) => {
          if (!isCancellation(err)) {
            watchFailed = true;
            lost ??= `trainer host ${lease.hostId}: ${causeOf(err).message}`;
          }
          changed();
        },
      );
    if (input.deadline) void scope.run(() => sleep(Math.max(0, Date.parse(input.deadline!) - Date.now()))).then(changed, () => undefined);

    const dispatch = (step: number): void => {
      const policy = c.policy!;
      const picks = promptsForStep(jobSeed, step, rl.prompts_per_step, input.taskTypes);
      const batch: Batch = { step, results: picks.map(() => null), pending: picks.length };
      batches.set(step, batch);
      picks.forEach((pick, index) => {
        inFlight++;
        void scope
          .run(() =>
            rolloutActs.rollout.executeWithOptions({ summary: `rollout step ${step} #${index} (${pick.taskType}) with policy v${policy.version}` }, [{
              jobId: input.jobId,
              // Unique per dispatch and unguessable (uuid4 draws from the workflow's seeded, replay-safe random): the
              // trainer takes an id once, so nobody can upload a group under an id before its rollout does.
              rolloutId: `${runId}.s${step}.p${index}.v${policy.version}.${uuid4().replace(/-/g, '').slice(0, 20)}`,
              step,
              index,
              task: pick,
              policy,
              trainer: lease.trainer,
              groupSize: rl.group_size,
              temperature: rl.temperature,
              maxTokens: rl.max_completion_tokens,
              seed: samplingSeed(jobSeed, step, index),
            }]),
          )
          .then(
            (r) => {
              batch.results[index] = r;
              batch.pending--;
            },
            (err: unknown) => {
              if (isCancellation(err)) return;
              const cause = causeOf(err);
              if (cause.type === RL_FAILURE.SESSION_LOST) lost ??= `rollout upload: ${cause.message}`;
              else if (cause.type === 'REJECTED') fatal ??= fail('REJECTED', `rollout of step ${step} (${pick.taskType}): ${cause.message}`);
              else fatal ??= fail('LOST', `rollout of step ${step} (${pick.taskType}) kept failing: ${cause.message}`);
            },
          )
          .finally(() => {
            inFlight--;
            changed();
          });
      });
    };

    const update = async (batch: Batch): Promise<void> => {
      const step = batch.step;
      const results = batch.results as RolloutResult[];
      // Bounded staleness, checked from the versions the rollouts recorded (never an older one than the bound).
      try {
        for (const r of results) assertUsable(step, r.policyVersion, rl.max_off_policy_steps);
      } catch (err) {
        fatal ??= fail('LOST', `refusing to update: ${(err as Error).message}`);
        return;
      }
      // What the host re-scores each group against: the task (the same pick as at dispatch), the reported rewards.
      const picks = promptsForStep(jobSeed, step, rl.prompts_per_step, input.taskTypes);
      const groups = results.map((r) => ({
        rolloutId: r.rolloutId,
        advantages: groupAdvantages(r.rewards).advantages,
        task: picks[r.index]!,
        worker: r.worker,
        rewards: r.rewards,
      }));
      const refusedNow = refusedWorkers(c.rejected ?? [], settings.maxRejections ?? DEFAULT_MAX_REJECTIONS);
      const tokens = results.reduce((n, r) => n + r.completionTokens, 0);
      const span = (Math.max(...results.map((r) => r.endedAt)) - Math.min(...results.map((r) => r.startedAt))) / 1000;
      try {
        const u = await scope.run(() =>
          ha.grpoUpdate.executeWithOptions({ summary: `update the policy with step ${step} on ${lease.hostId}` }, [
            {
              jobId: input.jobId,
              sessionId: lease.sessionId,
              step,
              groups,
              rolloutTokensPerS: span > 0 ? tokens / span : null,
              ...(refusedNow.length ? { refusedWorkers: refusedNow } : {}),
              ...(settings.verifyFraction !== undefined
                ? {
                    verify: {
                      fraction: settings.verifyFraction,
                      logprobTolerance: settings.verifyLogprobTolerance ?? DEFAULT_VERIFY_LOGPROB_TOLERANCE,
                    },
                  }
                : {}),
            },
          ]),
        );
        if (u.rejected?.length) {
          c.rejected = addRejections(c.rejected ?? [], u.rejected);
          log.warn(`step ${step}: the trainer host rejected ${u.rejected.length} rollouts`, { rejected: u.rejected });
        }
        // Pipelined answers come in step order (the host applies them in order); the max keeps that true here too.
        if (u.line.step > c.version) {
          c.version = u.line.step;
          c.policy = u.policy;
          c.latest = u.line;
        }
        batches.delete(step);
      } catch (err) {
        if (isCancellation(err)) return;
        lost ??= `update of step ${step} on ${lease.hostId}: ${causeOf(err).message}`;
      }
    };

    try {
      for (;;) {
        if (fatal) throw fatal;
        checkLimits();
        const complete = new Set([...batches.values()].filter((b) => b.pending === 0).map((b) => b.step));
        const tick = planHostTick({
          version: c.version, maxSteps: input.maxSteps, maxOffPolicySteps: rl.max_off_policy_steps,
          nextStep, sent, updating, depth, inFlight, complete, draining, lost, alive: !watchFailed,
          continueAsNewSuggested: workflowInfo().continueAsNewSuggested,
        });
        if (tick.kind === 'lost' || tick.kind === 'done') return tick;
        if (tick.startDraining) {
          draining = true;
          log.info(`continue-as-new suggested at version ${c.version}: draining the pipeline first`);
        }
        if (tick.kind === 'continue-as-new') return { kind: 'continue-as-new' };
        for (const step of tick.dispatch) {
          dispatch(step);
          nextStep = step + 1;
        }
        // The next update goes out as soon as its batch is complete: while the one before still runs when pipelined
        // (the host queues it, so the trainer starts it without waiting for this workflow's round trip).
        for (const step of tick.update) {
          updating++;
          sent = step;
          void update(batches.get(step)!).finally(() => {
            updating--;
            changed();
            void report(c.version >= input.maxSteps).catch(() => undefined);
          });
        }
        const seen = changes;
        await condition(() => changes !== seen);
      }
    } finally {
      scope.cancel();
    }
  }

  async function releaseHost(lease: HostLease, final: boolean): Promise<void> {
    await CancellationScope.nonCancellable(async () => {
      try {
        await hostActs(lease, { timeoutSeconds: 300, attempts: 2 }).releaseTrainerHost({ sessionId: lease.sessionId, final });
      } catch (err) {
        log.warn(`could not release trainer session ${lease.sessionId}`, { error: causeOf(err).message });
      }
    });
  }

  let continueNow = false;
  try {
    while (c.version < input.maxSteps || !c.host) {
      checkLimits();
      const lease = c.host ?? (await acquire());
      if (c.version >= input.maxSteps) break;
      const outcome = await onHost(lease);
      if (outcome.kind === 'done') break;
      if (outcome.kind === 'continue-as-new') {
        continueNow = true;
        break;
      }
      c.hostLosses++;
      // A host that still answers keeps its slot until released: free it (a dead one is not waited for).
      if (outcome.alive) await releaseHost(lease, false);
      c.host = null;
      phase = 'host-lost';
      log.warn(`trainer host lost (${c.hostLosses} so far): ${outcome.reason}`);
      await report(true);
      if (c.hostLosses > settings.maxHostLosses) {
        throw fail('LOST', `lost ${c.hostLosses} trainer hosts (max_host_losses ${settings.maxHostLosses}); last: ${outcome.reason}`);
      }
    }
    if (!continueNow) return await finish(c.host!);
  } catch (err) {
    // Cancelled, or failed: nothing is left running — the trainer session checkpoints and stops (rollouts in flight
    // were cancelled with their scope).
    if (c.host) await releaseHost(c.host, true);
    if (isCancellation(err) || !patched(PATCH_NO_FAIL)) throw err;
    const failure = runFailure(err);
    log.warn(`grpoRun failed: ${failure.class}: ${failure.detail}`);
    return { ok: false, failure };
  }
  c.runs++;
  return await continueAsNew<typeof grpoRun>({ ...input, carry: c });

  async function finish(lease: HostLease): Promise<GrpoRunResult> {
    phase = 'finishing';
    const ha = hostActs(lease, { timeoutSeconds: settings.updateTimeoutSeconds, attempts: 3 });
    let collected;
    try {
      const exported = await ha.exportPolicy({ sessionId: lease.sessionId });
      collected = await orchestratorActs.collectPolicy({ jobId: input.jobId, attempt: input.attempt, exported, trainer: lease.trainer });
    } catch (err) {
      if (isCancellation(err)) throw err;
      throw fail('LOST', `the final policy could not be collected from ${lease.hostId}: ${causeOf(err).message}`);
    }
    await releaseHost(lease, true);
    phase = 'done';
    await report(true);
    return {
      ok: true,
      steps: c.version,
      policy: c.policy!,
      outputDir: collected.dir,
      files: collected.files,
      hostId: lease.hostId,
      hostLosses: c.hostLosses,
      stepsRedone: c.stepsRedone,
      runs: c.runs,
      costUsd: costUsd(),
      latest: c.latest,
    };
  }
}
