/**
 * One attempt of an rl job inside trainingJob (docs/architecture.md §4, §7): instead of a backend submission, the grpoRun child
 * (id `job-<job_id>-grpo-<attempt>`) runs GRPO on the trainer hosts and rollout workers. The lifecycle is the same:
 *
 *   QUEUED / RETRY ──(a trainer host holds the policy)──→ SUBMITTED ──(first step done)──→ RUNNING
 *        └──────────── the child returned a failure: FAILED with its class (NO_CAPACITY, LOST, EXIT_CODE, ...) ──┘
 *
 * The child tells the job its progress by signal (rlProgressSignal, throttled); the job shows the latest in its status
 * (`rl`, and the attempt's deployment record: step, loss, cost). The attempt's deployment (backend `forge-grpo`, kind
 * `grpo`) is never "open" once the child has ended: the child releases its trainer host itself, on success, failure
 * and cancellation (a cancelled job waits for the child's cancellation to complete). Its `output_dir` is where the
 * child collected the final policy, which the results pipeline then commits like a finetune's outputs.
 */
import {
  CancellationScope,
  ChildWorkflowFailure,
  isCancellation,
  ParentClosePolicy,
  ChildWorkflowCancellationType,
  condition,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import type { JobSettings } from '../../activities/control/activities';
import type { DeploymentRef } from '../../activities/backends/types';
import { RL_BACKEND, RL_BACKEND_KIND } from '../../common/rl-names';
import { type FailureInfo, typedFailure } from '../../jobspec/failure';
import { fnv1a } from '../../common/prng';
import { resolveRl } from '../../jobspec/rl-defaults';
import type { TrainingJobSpec } from '../../jobspec/schema';
import { grpoRun, type GrpoRunInput, type RlProgress } from '../grpo-run';
import type { JobRecord } from '../lifecycle/job-record';
import { isoAfter } from '../lifecycle/time-bounds';
import { grpoWorkflowId } from '../../common/names';

/** The child's latest progress, written by trainingJob's rlProgress signal handler. */
export class RlProgressBox {
  latest: RlProgress | null = null;
  seq = 0;

  receive(job: JobRecord, p: RlProgress): void {
    if (!job.status.deployments.some((d) => d.id === p.run_id)) return; // an earlier attempt's child, late
    this.latest = p;
    this.seq++;
    job.setRl(p);
    const d = job.status.deployments.find((x) => x.id === p.run_id)!;
    job.updateDeployment(d.ref, {
      state: d.state === 'SUCCEEDED' || d.state === 'FAILED' ? d.state : p.latest ? 'RUNNING' : 'PENDING',
      costUsd: p.cost_usd,
      ...(p.latest ? { progress: { step: p.latest.step, maxSteps: p.max_steps, loss: p.latest.loss } } : {}),
    });
  }
}

export type RlAttemptOutcome = { ok: true } | { ok: false; failure: FailureInfo };

/** The failure of a child from before forge-grpo-no-fail (grpo-run.ts), which failed its execution instead. */
function childFailure(err: unknown): FailureInfo | undefined {
  if (!(err instanceof ChildWorkflowFailure)) return undefined;
  return typedFailure(err.cause) ?? { class: 'LOST', detail: `grpoRun ${err.execution?.workflowId ?? ''} ended: ${err.cause?.message ?? err.message}` };
}

export function grpoRunInput(spec: TrainingJobSpec, settings: JobSettings, attempt: number, budgetUsd: number): GrpoRunInput {
  const rl = resolveRl(spec.rl);
  const h = spec.hyperparameters;
  return {
    jobId: spec.job_id,
    attempt,
    parentWorkflowId: workflowInfo().workflowId,
    taskTypes: spec.objective.task_types,
    maxSteps: spec.objective.max_steps,
    rl,
    trainer: {
      base_model: { name: spec.base_model.name, source: spec.base_model.source, revision: spec.base_model.revision },
      learning_rate: h.learning_rate,
      weight_decay: h.weight_decay,
      warmup_steps: h.warmup_steps,
      clip_epsilon: rl.clip_epsilon,
      kl_beta: rl.kl_beta,
      max_off_policy_steps: rl.max_off_policy_steps,
      checkpoint_interval_steps: spec.artifacts.checkpoint_interval_steps,
      max_steps: spec.objective.max_steps,
      seed: fnv1a(spec.job_id) & 0x7fffffff,
    },
    settings: settings.rl!,
    deadline: isoAfter(Date.now(), spec.resources.max_hours),
    budgetUsd,
  };
}

/** Runs the attempt's grpoRun child to its end: QUEUED/RETRY → SUBMITTED → RUNNING on its progress, or FAILED. */
export async function runRlAttempt(
  job: JobRecord,
  spec: TrainingJobSpec,
  settings: JobSettings,
  attempt: number,
  box: RlProgressBox,
): Promise<RlAttemptOutcome> {
  const budgetLeft = spec.backend.max_cost_usd - job.status.cost_usd;
  job.beginAttempt(attempt, RL_BACKEND);
  if (budgetLeft <= 0) {
    const failure: FailureInfo = { class: 'BUDGET', detail: `max_cost_usd $${spec.backend.max_cost_usd} spent` };
    job.failed(failure);
    return { ok: false, failure };
  }
  const id = grpoWorkflowId(spec.job_id, attempt);
  const ref: DeploymentRef = {
    backend: RL_BACKEND,
    kind: RL_BACKEND_KIND,
    id,
    jobId: spec.job_id,
    attempt,
    submittedAt: new Date().toISOString(),
    data: {},
  };
  job.addDeployment(ref);
  const child = await startChild(grpoRun, {
    workflowId: id,
    args: [grpoRunInput(spec, settings, attempt, budgetLeft)],
    // A cancelled job waits until the child has released its trainer host; a terminated one still asks it to.
    cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
    parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
  });
  let done = false;
  const result = child.result().finally(() => {
    done = true;
  });
  result.catch(() => undefined); // observed below
  const attemptFailed = (failure: FailureInfo): RlAttemptOutcome => {
    const d = job.status.deployments.find((x) => x.id === id)!;
    job.updateDeployment(ref, { state: 'FAILED', failure, costUsd: d.cost_usd, ...(d.progress ? { progress: d.progress } : {}) });
    job.failed(failure);
    return { ok: false, failure };
  };
  const advance = (): void => {
    const p = box.latest;
    if (!p || p.run_id !== id) return;
    if (p.host && (job.state === 'QUEUED' || job.state === 'RETRY')) {
      job.transition('SUBMITTED', `attempt ${attempt}: trainer host ${p.host} holds the policy (version ${p.policy_version}) for ${id}`);
    }
    if (p.latest && job.state === 'SUBMITTED')
      job.transition('RUNNING', `attempt ${attempt}: step ${p.latest.step} of ${p.max_steps} done on ${p.host}`);
  };
  try {
    for (let seen = -1; !done;) {
      if (box.seq !== seen) {
        seen = box.seq;
        advance();
      }
      const at = box.seq;
      await condition(() => done || box.seq !== at);
    }
    const r = await result;
    if (r.ok === false) return attemptFailed(r.failure);
    advance();
    if (job.state === 'QUEUED' || job.state === 'RETRY') job.transition('SUBMITTED', `attempt ${attempt}: ${id} ran on ${r.hostId}`);
    if (job.state === 'SUBMITTED') job.transition('RUNNING', `attempt ${attempt}: ${id} already finished`);
    Object.assign(ref.data, {
      output_dir: r.outputDir,
      host: r.hostId,
      steps: r.steps,
      policy_sha256: r.policy.sha256,
      cost_usd: r.costUsd,
      finished_at: new Date().toISOString(),
    });
    job.updateDeployment(ref, {
      state: 'SUCCEEDED',
      costUsd: r.costUsd,
      progress: { step: r.steps, maxSteps: spec.objective.max_steps, ...(r.latest ? { loss: r.latest.loss } : {}) },
    });
    return { ok: true };
  } catch (err) {
    if (isCancellation(err)) {
      // The job is cancelled: so is the child (started in the job's scope). Wait until it has released its host.
      await CancellationScope.nonCancellable(() =>
        result.then(
          () => undefined,
          () => undefined,
        ),
      );
      throw err;
    }
    const failure = childFailure(err);
    if (!failure) throw err;
    return attemptFailed(failure);
  } finally {
    // The child released everything it held, whatever happened: nothing for closeAll to close.
    job.markClosed(ref);
  }
}
