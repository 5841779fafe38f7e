/**
 * The defaults of the spec's `rl` block, and resolving an absent block to them. Free of zod on purpose: the grpo
 * workflows import it (jobspec/issues.ts says why that matters); jobspec/rl.ts builds its schema's defaults from here.
 */

export interface RlParams {
  group_size: number;
  prompts_per_step: number;
  max_off_policy_steps: number;
  clip_epsilon: number;
  kl_beta: number;
  temperature: number;
  max_completion_tokens: number;
}

export const RL_DEFAULTS: Readonly<RlParams> = Object.freeze({
  group_size: 8,
  prompts_per_step: 8,
  max_off_policy_steps: 1,
  clip_epsilon: 0.2,
  kl_beta: 0.04,
  temperature: 1,
  max_completion_tokens: 256,
});

/** The block as given (its absent keys already filled in by the schema), or every default when the spec has none. */
export function resolveRl(rl: RlParams | undefined): RlParams {
  return rl ?? { ...RL_DEFAULTS };
}
