/**
 * grpoRun (child of trainingJob, id `job-<job_id>-grpo-<attempt>`; DESIGN.md §3, §7): GRPO for one attempt of an
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
 * after draining the pipeline, carrying its state (host lease, version, counters). Fails with a typed, non-retryable
 * ApplicationFailure (spec/failure.ts classes) that trainingJob records and retries like any attempt.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  TimeoutFailure,
  workflowInfo,
} from '@temporalio/workflow';
import type { AcquireActivities, HostActivities } from '../activities/rl/grpo-host';
import type { RlCollectActivities } from '../activities/rl/collect';
import type { RolloutActivities } from '../activities/rl/rollout';
import {
  RL_FAILURE,
  type ExportedFile,
  type HostLease,
  type PolicyRef,
  type RolloutResult,
  type StepLine,
  type TrainerSessionConfig,
} from '../activities/rl/types';
import type { RlSettings } from '../common/rl-config';
import type { FailureClass } from '../spec/failure';
import type { RlParams } from '../spec/rl';
import { groupAdvantages } from './rl/advantages';
import { assertUsable, dispatchableSteps } from './rl/pipeline';
import { fnv1a, promptsForStep, samplingSeed } from './rl/prompts';

export interface GrpoRunInput {
  jobId: string;
  attempt: number;
  /** The parent trainingJob, told of progress by signal (null: started on its own, e.g. by a test or a bench). */
  parentWorkflowId: string | null;
  taskTypes: string[];
  maxSteps: number;
  rl: RlParams;
  trainer: TrainerSessionConfig;
  settings: RlSettings;
  /** ISO time at which the attempt has run out of resources.max_hours; null: no limit. */
  deadline: string | null;
  /** What the attempt may still spend (max_cost_usd minus the job's earlier attempts); null: no limit. */
  budgetUsd: number | null;
  /** State carried across continue-as-new. */
  carry?: GrpoCarry;
}

export interface GrpoCarry {
  host: HostLease | null;
  version: number;
  policy: PolicyRef | null;
  hostLosses: number;
  latest: StepLine | null;
  startedAt: number;
  runs: number;
  stepsRedone: number;
  lastSignalAt: number;
}

/** The status query of grpoRun, and what it signals to its job (the `rl` part of the job's status). */
export interface RlProgress {
  run_id: string;
  phase: 'acquiring' | 'training' | 'host-lost' | 'finishing' | 'done';
  host: string | null;
  session: string | null;
  policy_version: number;
  policy_sha256: string | null;
  max_steps: number;
  host_losses: number;
  steps_redone: number;
  /** Continue-as-new count of this run. */
  runs: number;
  cost_usd: number;
  /** The newest line of training_log.jsonl. */
  latest: StepLine | null;
}

export interface GrpoRunResult {
  steps: number;
  policy: PolicyRef;
  /** The collected outputs on the orchestrator host (what the results pipeline commits). */
  outputDir: string;
  files: ExportedFile[];
  hostId: string;
  hostLosses: number;
  stepsRedone: number;
  runs: number;
  costUsd: number;
  latest: StepLine | null;
}

export const rlStatusQuery = defineQuery<RlProgress>('status');
/** grpoRun → trainingJob: the latest progress (throttled to one per status_interval_seconds, plus phase changes). */
export const rlProgressSignal = defineSignal<[RlProgress]>('rlProgress');

function fail(failureClass: FailureClass, message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: failureClass, nonRetryable: true });
}

/** The innermost ApplicationFailure type of an activity failure, and its message. */
function causeOf(err: unknown): { type: string | undefined; message: string; timeout: boolean } {
  let cause: unknown = err;
  while (cause instanceof ActivityFailure && cause.cause) cause = cause.cause;
  if (cause instanceof ApplicationFailure) return { type: cause.type ?? undefined, message: cause.message, timeout: false };
  if (cause instanceof TimeoutFailure) return { type: undefined, message: `${cause.timeoutType} timeout`, timeout: true };
  return { type: undefined, message: cause instanceof Error ? cause.message : String(cause), timeout: false };
}

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

export async function grpoRun(input: GrpoRunInput): Promise<GrpoRunResult> {
  // First, so that its marker is this run's first command.
  const updateDepth = patched(PATCH_PIPELINED_UPDATES) ? UPDATE_DEPTH : 1;
  const { settings, rl } = input;
  const info = workflowInfo();
  const runId = info.workflowId;
  const jobSeed = fnv1a(input.jobId);
  const c: GrpoCarry = input.carry ?? {
    host: null,
    version: 0,
    policy: null,
    hostLosses: 0,
    latest: null,
    startedAt: Date.now(),
    runs: 0,
    stepsRedone: 0,
    lastSignalAt: 0,
  };
  let phase: RlProgress['phase'] = c.host ? 'training' : 'acquiring';
  const costUsd = (): number => (settings.hourlyUsd * (Date.now() - c.startedAt)) / 3_600_000;
  const progress = (): RlProgress => ({
    run_id: runId,
    phase,
    host: c.host?.hostId ?? null,
    session: c.host?.sessionId ?? null,
    policy_version: c.version,
    policy_sha256: c.policy?.sha256 ?? null,
    max_steps: input.maxSteps,
    host_losses: c.hostLosses,
    steps_redone: c.stepsRedone,
    runs: c.runs,
    cost_usd: costUsd(),
    latest: c.latest,
  });
  setHandler(rlStatusQuery, progress);

  /** Tells the parent job; `force` for phase changes, otherwise at most once per status interval. */
  async function report(force = false): Promise<void> {
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

  const acquireActs = proxyActivities<AcquireActivities>({
    taskQueue: settings.grpoTaskQueue,
    scheduleToStartTimeout: `${settings.acquireTimeoutSeconds} seconds`,
    startToCloseTimeout: `${settings.loadTimeoutSeconds} seconds`,
    heartbeatTimeout: `${Math.max(settings.hostHeartbeatSeconds, 10)} seconds`,
    retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 3, nonRetryableErrorTypes: ['EXIT_CODE', 'REJECTED'] },
  });
  const hostActs = (lease: HostLease, opts: { timeoutSeconds: number; attempts: number }) =>
    proxyActivities<HostActivities>({
      taskQueue: lease.taskQueue,
      scheduleToStartTimeout: `${settings.hostStartTimeoutSeconds} seconds`,
      startToCloseTimeout: `${opts.timeoutSeconds} seconds`,
      heartbeatTimeout: `${settings.hostHeartbeatSeconds} seconds`,
      retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: opts.attempts, nonRetryableErrorTypes: [RL_FAILURE.SESSION_LOST, RL_FAILURE.UPDATE_REFUSED] },
    });
  const rolloutActs = proxyActivities<RolloutActivities>({
    taskQueue: settings.rolloutTaskQueue,
    scheduleToCloseTimeout: `${settings.rolloutTimeoutSeconds} seconds`,
    heartbeatTimeout: `${settings.rolloutHeartbeatSeconds} seconds`,
    retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 10, nonRetryableErrorTypes: ['REJECTED', RL_FAILURE.SESSION_LOST] },
  });
  const orchestratorActs = proxyActivities<RlCollectActivities>({
    startToCloseTimeout: `${settings.updateTimeoutSeconds} seconds`,
    heartbeatTimeout: '2 minutes',
    retry: { initialInterval: '2 seconds', maximumInterval: '1 minute', maximumAttempts: 5 },
  });

  function checkLimits(): void {
    if (input.deadline && Date.now() >= Date.parse(input.deadline)) throw fail('TIMEOUT', `the RL attempt ran past resources.max_hours at step ${c.version}`);
    if (input.budgetUsd !== null && costUsd() >= input.budgetUsd) {
      throw fail('BUDGET', `the RL attempt cost $${costUsd().toFixed(4)}, reaching what max_cost_usd left it ($${input.budgetUsd.toFixed(4)})`);
    }
  }

  async function acquire(): Promise<HostLease> {
    phase = 'acquiring';
    try {
      const lease = await acquireActs.acquireTrainerHost({ jobId: input.jobId, runId, attempt: input.attempt, config: input.trainer });
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
            rolloutActs.rollout({
              jobId: input.jobId,
              rolloutId: `${runId}.s${step}.p${index}.v${policy.version}.${lease.sessionId.slice(-8)}`,
              step,
              index,
              task: pick,
              policy,
              trainer: lease.trainer,
              groupSize: rl.group_size,
              temperature: rl.temperature,
              maxTokens: rl.max_completion_tokens,
              seed: samplingSeed(jobSeed, step, index),
            }),
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
      const groups = results.map((r) => ({ rolloutId: r.rolloutId, advantages: groupAdvantages(r.rewards).advantages }));
      const tokens = results.reduce((n, r) => n + r.completionTokens, 0);
      const span = (Math.max(...results.map((r) => r.endedAt)) - Math.min(...results.map((r) => r.startedAt))) / 1000;
      try {
        const u = await scope.run(() =>
          ha.grpoUpdate({ jobId: input.jobId, sessionId: lease.sessionId, step, groups, rolloutTokensPerS: span > 0 ? tokens / span : null }),
        );
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
        if (lost) return { kind: 'lost', reason: lost, alive: !watchFailed };
        if (c.version >= input.maxSteps && updating === 0) return { kind: 'done' };
        if (!draining && workflowInfo().continueAsNewSuggested) {
          draining = true;
          log.info(`continue-as-new suggested at version ${c.version}: draining the pipeline first`);
        }
        const ready = batches.get(sent + 1);
        if (draining && updating === 0 && inFlight === 0 && !(ready && ready.pending === 0)) return { kind: 'continue-as-new' };
        if (!draining) {
          for (const step of dispatchableSteps(nextStep, c.version, rl.max_off_policy_steps, input.maxSteps)) {
            dispatch(step);
            nextStep = step + 1;
          }
        }
        // The next update goes out as soon as its batch is complete: while the one before still runs when pipelined
        // (the host queues it, so the trainer starts it without waiting for this workflow's round trip).
        for (let next = ready; updating < depth && next && next.pending === 0; next = batches.get(sent + 1)) {
          updating++;
          sent = next.step;
          void update(next).finally(() => {
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
    throw err;
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
