/**
 * The optional `rl` block of training-job-v1 (an extension, for job_type "rl"): GRPO's settings, each with a default.
 * Pure; jobspec/schema.ts embeds the schema, the grpoRun workflow reads the resolved values.
 */
import { z } from 'zod';
import { RL_DEFAULTS, type RlParams } from './rl-defaults';

export { RL_DEFAULTS, resolveRl, type RlParams } from './rl-defaults';

export const rlSchema = z
  .strictObject({
    /** Completions sampled per prompt; advantages are relative to the group, so at least 2. */
    group_size: z.int().min(2).max(128).default(RL_DEFAULTS.group_size),
    /** Prompts per policy update. */
    prompts_per_step: z.int().min(1).max(4096).default(RL_DEFAULTS.prompts_per_step),
    /** How many versions a rollout's policy may lag the one it updates (0 = synchronous). */
    max_off_policy_steps: z.int().min(0).max(16).default(RL_DEFAULTS.max_off_policy_steps),
    /** PPO-style clip range of the importance ratio. */
    clip_epsilon: z.number().gt(0).lt(1).default(RL_DEFAULTS.clip_epsilon),
    /** Weight of the k3 KL estimator against the reference (base) model. */
    kl_beta: z.number().min(0).max(10).default(RL_DEFAULTS.kl_beta),
    /** Sampling temperature of rollouts; > 0 (equal completions have no spread to learn from). */
    temperature: z.number().gt(0).max(2).default(RL_DEFAULTS.temperature),
    /** Completion budget per sample (a task may ask for fewer). */
    max_completion_tokens: z.int().min(1).max(65536).default(RL_DEFAULTS.max_completion_tokens),
  })
  .meta({ description: 'GRPO settings for job_type "rl" (defaults apply to absent keys and to an absent block)' });

// The schema's output and the zod-free RlParams that workflows use must stay the same type.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const rlParamsMatch: Same<z.output<typeof rlSchema>, RlParams> = true;
void rlParamsMatch;
