/**
 * The trainer host's wire with its policy process (`forge-trainer grpo-server`, trainer/src/forge_trainer/grpo_server.py),
 * as zod schemas: the `serving` event it prints, the JSON its routes answer (the verification answer's schema lives with
 * its caller, activities/rl/verify.ts), and the update request it is sent. The
 * host parses every answer with these; `trainer/schemas/grpo-wire-v1.schema.json` is their JSON Schema, generated here
 * (test/rl/grpo-wire-schema.test.ts keeps it current) and checked against the real process's answers by the trainer's
 * tests (trainer/tests/test_grpo_wire.py).
 */
import { z } from 'zod';
import type { StoredRollout } from '../rescore';
import { verifyAnswerSchema } from '../verify';

export const servingSchema = z.looseObject({
  event: z.literal('serving'),
  url: z.string(),
  version: z.int().min(0),
  sha256: z.string(),
  resumed_from: z.int().nullable(),
  // Absent from trainers that take one update at a time.
  pipeline_depth: z.int().min(1).default(1),
});

export const stepSchema = z.looseObject({
  step: z.int().min(1),
  policy_version: z.int(),
  reward_mean: z.number(),
  reward_std: z.number(),
  loss: z.number(),
  kl: z.number(),
  staleness_mean: z.number(),
  staleness_max: z.number(),
  trainer_idle_fraction: z.number(),
  rollout_tokens_per_s: z.number().nullable(),
  step_seconds: z.number(),
  update_seconds: z.number().optional(),
  clip_fraction: z.number().optional(),
  grad_norm: z.number().optional(),
  lr: z.number().optional(),
  version: z.int(),
  sha256: z.string(),
  url: z.string(),
  checkpoint: z.string().nullable(),
});

export const exportSchema = z.looseObject({
  version: z.int(),
  url: z.string(),
  files: z.array(z.strictObject({ path: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.int().min(0) })),
});

export const errorSchema = z.looseObject({ error: z.looseObject({ message: z.string() }) });

export const storedSchema = z.looseObject({
  rollouts: z.record(z.string(), z.looseObject({ prompt: z.string().nullable(), texts: z.array(z.string()), rewards: z.array(z.number()) })),
}) satisfies z.ZodType<{ rollouts: Record<string, StoredRollout> }>;

/** POST /v1/update: one GRPO step over the listed rollouts with the orchestrator's advantages. */
export const updateRequestSchema = z.strictObject({
  step: z.int().min(1),
  groups: z.array(z.strictObject({ rollout_id: z.string().min(1), advantages: z.array(z.number()) })).min(1),
  rollout_tokens_per_s: z.number().nullable().optional(),
});

export type UpdateRequestBody = z.input<typeof updateRequestSchema>;

export const GRPO_WIRE_SCHEMA_ID = 'https://chrysalis-forge.dev/schemas/grpo-wire-v1.json';

/** Every message of the wire under `$defs`, as JSON Schema (what a process must print or answer to be understood). */
export function grpoWireJsonSchema(): Record<string, unknown> {
  const defs = {
    serving: servingSchema,
    step: stepSchema,
    export: exportSchema,
    rolloutTexts: storedSchema,
    verifyAnswer: verifyAnswerSchema,
    error: errorSchema,
    updateRequest: updateRequestSchema,
  };
  const $defs = Object.fromEntries(
    Object.entries(defs).map(([name, schema]) => {
      // io 'input': what the process sends (defaulted fields may be absent); each without its own $schema.
      const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: 'input' }) as Record<string, unknown>;
      return [name, rest];
    }),
  );
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: GRPO_WIRE_SCHEMA_ID,
    title: 'Chrysalis Forge GRPO trainer host wire (grpo-wire-v1)',
    description: 'The messages between a trainer host (activities/rl/host/) and its policy process (forge-trainer grpo-server).',
    $defs,
  };
}
