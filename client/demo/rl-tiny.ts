/**
 * `npm run demo:rl`: the RL twin of `npm run demo`. Makes what it needs under FORGE_HOME when missing (the tiny base
 * model, the demo owner's key, the output repository), fills in and signs examples/rl-tiny.json (GRPO on the toy
 * task: reverse a short word), starts the job on the running stack (`npm start` runs the RL roles on this machine),
 * shows every step it sees live — reward, staleness of the rollouts, the trainer's idle share — and ends with the
 * eval and where the policy was committed.
 */
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { repoRoot } from '../../common/paths';
import type { StepLine } from '../../activities/rl/types';
import type { RlProgress } from '../../workflows/grpo-run';
import type { JobStatus } from '../../workflows/messages';
import { demoMain, follow, logCommitAndEvals, prepareDemoHome, startExample, type DemoOptions } from './finetune-tiny';

export const RL_EXAMPLE_SPEC = path.join(repoRoot(), 'examples', 'rl-tiny.json');

export interface RlDemoResult {
  jobId: string;
  status: JobStatus;
  /** The steps shown live (a poll may miss a step that came and went between two polls). */
  steps: StepLine[];
}

/** One line per step: what GRPO is doing. */
export function stepLine(s: StepLine, maxSteps: number): string {
  return (
    `step ${String(s.step).padStart(String(maxSteps).length)}/${maxSteps}  reward ${s.reward_mean.toFixed(3)}` +
    `  staleness ${s.staleness_mean.toFixed(2)} (max ${s.staleness_max})  trainer idle ${(s.trainer_idle_fraction * 100).toFixed(0)}%` +
    `  ${s.step_seconds.toFixed(1)} s`
  );
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

export async function runRlDemo(o: DemoOptions): Promise<RlDemoResult> {
  const { log } = o;
  const { owner } = prepareDemoHome(o);
  const { spec, handle } = await startExample(o, RL_EXAMPLE_SPEC, owner.keys);
  const steps: StepLine[] = [];
  // The grpoRun child of the current attempt answers its own status query with its newest step, live.
  const showSteps = async (status: JobStatus): Promise<void> => {
    const run = status.deployments[status.deployments.length - 1];
    if (!run || run.closed) return;
    let progress: RlProgress;
    try {
      progress = await (o.client.workflow.getHandle(run.id) as WorkflowHandle).query<RlProgress>('status');
    } catch {
      return; // not started yet, or just ended
    }
    const latest = progress.latest;
    if (!latest || latest.step <= (steps[steps.length - 1]?.step ?? 0)) return;
    steps.push(latest);
    log(`${' '.repeat(9)}${'grpo'.padEnd(10)} ${stepLine(latest, progress.max_steps)}`);
  };
  const status = await follow(handle, { ...o, pollMs: o.pollMs ?? 200 }, showSteps); // steps take about a second on a CPU
  const result: RlDemoResult = { jobId: spec.job_id, status, steps };
  if (status.state !== 'COMPLETED') {
    log(`job ended ${status.state}${status.last_error ? `: ${status.last_error.class}: ${status.last_error.detail}` : ''}`);
    return result;
  }
  if (steps.length >= 2) {
    const k = Math.max(1, Math.floor(steps.length / 4));
    log(
      `reward ${mean(steps.slice(0, k).map((s) => s.reward_mean)).toFixed(3)} (first ${k} steps shown) → ` +
        `${mean(steps.slice(-k).map((s) => s.reward_mean)).toFixed(3)} (last ${k}) over ${status.rl?.policy_version ?? '?'} policy versions`,
    );
  }
  logCommitAndEvals(status, log);
  if (status.artifacts) log(`policy: ${status.artifacts.repo} ${status.artifacts.branch}, folder models/job-${spec.job_id}/ (model.safetensors, training_log.jsonl)`);
  return result;
}

if (require.main === module) {
  demoMain(runRlDemo).catch((err: unknown) => {
    console.error(`[demo:rl] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
