/**
 * RL metrics of the grpo worker, in its own registry (served on its /metrics, FORGE_HEALTH_ADDRESS): each step's
 * trainer idle share (the fraction of the step the trainer waited for rollouts), the steps counted, and the rollout
 * groups the host dropped from updates (activities/rl/rescore.ts).
 */
import { Counter, Histogram, Registry } from 'prom-client';
import type { RejectedRollout } from '../../common/rl-rejections';
import type { StepLine } from './types';

export const rlRegistry = new Registry();
const registers = [rlRegistry];

const idle = new Histogram({
  name: 'forge_rl_trainer_idle_fraction',
  help: 'Per GRPO step: the fraction of the step the trainer sat idle waiting for rollouts (training_log trainer_idle_fraction)',
  buckets: [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1],
  registers,
});
const steps = new Counter({ name: 'forge_rl_steps_total', help: 'GRPO steps (policy updates) this worker applied', registers });

export function recordRlStep(line: Pick<StepLine, 'trainer_idle_fraction'>): void {
  steps.inc();
  if (Number.isFinite(line.trainer_idle_fraction)) idle.observe(Math.min(1, Math.max(0, line.trainer_idle_fraction)));
}

const rejectedTotal = new Counter({
  name: 'forge_rl_rejected_rollouts_total',
  help: 'Rollout groups this trainer host dropped from updates, by rollout worker and reason (reward-mismatch, prompt-mismatch, sample-count, refused-worker, toploc-mismatch, logprob-mismatch, proof-missing)',
  labelNames: ['worker', 'reason'] as const,
  registers,
});

export function recordRejections(rejected: readonly RejectedRollout[]): void {
  for (const r of rejected) rejectedTotal.inc({ worker: r.worker, reason: r.reason });
}

const verified = new Counter({
  name: 'forge_rl_verified_rollouts_total',
  help: 'Rollout groups this trainer host verified by TOPLOC proofs and logprobs (rl.verify_fraction of each step)',
  registers,
});
const verifySeconds = new Counter({
  name: 'forge_rl_verify_seconds_total',
  help: 'Seconds the trainer sessions spent verifying rollout groups (prefills under the claimed policy versions)',
  registers,
});

export function recordVerification(groups: number, seconds: number): void {
  verified.inc(groups);
  verifySeconds.inc(seconds);
}
