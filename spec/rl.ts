/**
 * The optional `rl` block of training-job-v1 (an extension, for job_type "rl"): GRPO's settings, each with a default.
 * Pure; spec/schema.ts embeds the schema, the grpoRun workflow reads the resolved values.
 */
import { z } from 'zod';

export const rlSchema = z
  .strictObject({
    /** Completions sampled per prompt; advantages are relative to the group, so at least 2. */
    group_size: z.int().min(2).max(128).default(8),
    /** Prompts per policy update. */
    prompts_per_step: z.int().min(1).max(4096).default(8),
    /** How many versions a rollout's policy may lag the one it updates (0 = synchronous). */
    max_off_policy_steps: z.int().min(0).max(16).default(1),
    /** PPO-style clip range of the importance ratio. */
    clip_epsilon: z.number().gt(0).lt(1).default(0.2),
    /** Weight of the k3 KL estimator against the reference (base) model. */
    kl_beta: z.number().min(0).max(10).default(0.04),
    /** Sampling temperature of rollouts; > 0 (equal completions have no spread to learn from). */
    temperature: z.number().gt(0).max(2).default(1),
    /** Completion budget per sample (a task may ask for fewer). */
    max_completion_tokens: z.int().min(1).max(65536).default(256),
  })
  .meta({ description: 'GRPO settings for job_type "rl" (defaults apply to absent keys and to an absent block)' });

export type RlParams = z.output<typeof rlSchema>;

/** The block as given, or every default when the spec has none. */
export function resolveRl(rl: RlParams | undefined): RlParams {
  return rl ?? rlSchema.parse({});
}
