/**
 * training-job-v1 (docs/architecture.md §1) as a zod schema. Every object is strict, so a misspelt key is an error rather than
 * a silently ignored setting. Extensions of v1: base_model.source "local", backend.fallbacks,
 * backend.max_retries, trainer.image, rl (GRPO settings of rl jobs, jobspec/rl.ts).
 */
import { z } from 'zod';
import { DEFAULT_MAX_RETRIES, DEFAULT_TRAINER_IMAGE, MAX_CREATED_AT, MAX_FALLBACKS, MAX_HOURS_LIMIT, MAX_RETRIES_LIMIT } from './constants';
import { findControlCharacters } from './control-chars';
import { isEd25519DidKey } from './did-key';
import { gitRefProblem, gitUrlProblem, relativePathProblem } from './git-names';
import { rlSchema } from './rl';

export const JOB_TYPES = ['finetune', 'rl', 'eval'] as const;
export type JobType = (typeof JOB_TYPES)[number];

export const MODEL_SOURCES = ['huggingface', 'local'] as const;
export const BACKEND_NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
export const JOB_ID_PLACEHOLDER = '${job_id}';

/** Lower-case only: job ids become workflow ids and paths, where case variants must not be distinct jobs. */
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Any UUID stands for all here: hex digits and inner dashes cannot make or break a git ref. */
const SAMPLE_JOB_ID = '00000000-0000-4000-8000-000000000000';
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]+$/;

/** A string check whose message comes from one of the problem functions in git-names.ts. */
function checked(problem: (value: string) => string | undefined) {
  return z.string().superRefine((value, ctx) => {
    const message = problem(value);
    if (message !== undefined) ctx.addIssue({ code: 'custom', message, input: value });
  });
}

const nonEmpty = () => z.string().min(1, 'must not be empty');
const gitUrl = () => checked(gitUrlProblem).meta({ description: 'git URL: https://, ssh://, user@host:path or file:///' });
const backendName = () =>
  z.string().regex(BACKEND_NAME_PATTERN, 'must be a backend name (lower-case letters, digits and "-")');

export function substituteJobId(template: string, jobId: string): string {
  return template.replaceAll(JOB_ID_PLACEHOLDER, jobId);
}

const baseModelSchema = z.strictObject({
  name: nonEmpty().meta({ description: 'hub id, or for source "local" the path of a model directory' }),
  source: z.enum(MODEL_SOURCES),
  revision: nonEmpty().default('main'),
});

const objectiveSchema = z.strictObject({
  optimize_for: nonEmpty(),
  task_types: z.array(nonEmpty()).min(1, 'must name at least one task type'),
  target_metric: z.number().min(0),
  max_steps: z.int().min(1),
});

const dataSchema = z.strictObject({
  source: z.literal('git'),
  repo: gitUrl(),
  branch: checked(gitRefProblem).meta({ description: 'git branch (git check-ref-format rules)' }),
  path: checked(relativePathProblem).meta({ description: 'path inside the repository, relative, no ".."' }),
  format: z.literal('jsonl'),
  validation_split: z.number().min(0).lt(1),
});

const hyperparametersSchema = z.strictObject({
  learning_rate: z.number().positive(),
  batch_size: z.int().min(1),
  gradient_accumulation_steps: z.int().min(1),
  warmup_steps: z.int().min(0),
  weight_decay: z.number().min(0),
});

const resourcesSchema = z
  .strictObject({
    gpus: z.int().min(0),
    gpu_type: nonEmpty().optional().meta({ description: 'required when gpus > 0' }),
    gpu_mem_gb: z.number().min(0).optional(),
    cpus: z.number().positive(),
    ram_gb: z.number().positive(),
    storage_gb: z.number().positive(),
    max_hours: z
      .number()
      .positive()
      .max(MAX_HOURS_LIMIT, `must be at most ${MAX_HOURS_LIMIT} (one year); the operator may allow less (max_job_hours)`),
  })
  .superRefine((resources, ctx) => {
    if (resources.gpus > 0 && resources.gpu_type === undefined) {
      ctx.addIssue({ code: 'custom', message: 'required when gpus > 0', path: ['gpu_type'], input: resources });
    }
  });

const fallbacksSchema = z
  .array(backendName())
  .max(MAX_FALLBACKS, `must list at most ${MAX_FALLBACKS} backends`)
  .meta({ description: 'backends tried in order after provider' })
  .superRefine((names, ctx) => {
    // One pass with a set: a body of tens of thousands of names must not cost quadratic time before the signature check.
    const seen = new Set<string>();
    names.forEach((name, i) => {
      if (seen.has(name)) ctx.addIssue({ code: 'custom', message: `duplicate backend "${name}"`, path: [i], input: names });
      seen.add(name);
    });
  });

const backendSchema = z
  .strictObject({
    provider: backendName(),
    region: nonEmpty().default('any'),
    max_cost_usd: z.number().min(0).meta({ description: 'cap for the whole job, all attempts together' }),
    fallbacks: fallbacksSchema.optional(),
    max_retries: z.int().min(0).max(MAX_RETRIES_LIMIT, `must be at most ${MAX_RETRIES_LIMIT}`).default(DEFAULT_MAX_RETRIES),
  })
  .superRefine((backend, ctx) => {
    backend.fallbacks?.forEach((name, i) => {
      if (name === backend.provider) {
        ctx.addIssue({ code: 'custom', message: 'must not repeat provider', path: ['fallbacks', i], input: name });
      }
    });
  });

const artifactsSchema = z.strictObject({
  output_repo: gitUrl(),
  output_branch: checked((template) => {
    const problem = gitRefProblem(substituteJobId(template, SAMPLE_JOB_ID));
    return problem === undefined ? undefined : `${problem} (after substituting ${JOB_ID_PLACEHOLDER})`;
  }).meta({ description: `git branch; ${JOB_ID_PLACEHOLDER} is replaced by the job id` }),
  save_checkpoints: z.boolean().default(false),
  checkpoint_interval_steps: z.int().min(1).default(1000),
});

const notificationsSchema = z.strictObject({
  on_complete: nonEmpty().optional(),
  on_failure: nonEmpty().optional(),
  on_cancel: nonEmpty()
    .optional()
    .meta({ description: 'told when the job ends CANCELLED (event job.cancelled); default: on_failure' }),
});

const trainerSchema = z.strictObject({
  image: z
    .string()
    .regex(/^\S+$/, 'must be a non-empty image name without spaces')
    .default(DEFAULT_TRAINER_IMAGE)
    .meta({ description: 'which trainer runs; each backend maps it to a container or an operator-configured command' }),
});

const specObjectSchema = z.strictObject({
  $schema: z.string().optional(),
  job_id: z.string().regex(UUID_PATTERN, 'must be a lower-case UUID'),
  owner_did: z
    .string()
    .refine(isEd25519DidKey, 'must be an Ed25519 did:key (did:key:z6Mk…)')
    .meta({ description: 'the owner: an Ed25519 did:key (did:key:z6Mk…) whose key signed this spec' }),
  created_at: z.int().min(0).max(MAX_CREATED_AT, 'must be a Unix time in seconds before the year 10000').meta({ description: 'Unix seconds' }),
  job_type: z.enum(JOB_TYPES),
  base_model: baseModelSchema,
  objective: objectiveSchema,
  data: dataSchema,
  hyperparameters: hyperparametersSchema,
  resources: resourcesSchema,
  backend: backendSchema,
  artifacts: artifactsSchema,
  notifications: notificationsSchema.optional(),
  // Defaulted as a whole so that consumers can always read spec.trainer.image.
  trainer: trainerSchema.default({ image: DEFAULT_TRAINER_IMAGE }),
  rl: rlSchema.optional(),
  signature_ed25519: z
    .string()
    .regex(BASE64URL_PATTERN, 'must be a non-empty base64url string')
    .meta({ description: 'Ed25519 over the RFC 8785 canonical JSON of the spec without this field; base64url, no padding' }),
});

type SpecObject = z.output<typeof specObjectSchema>;

/**
 * Cross-field rules: an `rl` block belongs to rl jobs only; no string anywhere in the spec holds a control character
 * (C0, DEL, C1, bidi overrides and isolates: jobspec/control-chars.ts). Runs once the shape is right, so on bounded data.
 */
const specChecked = specObjectSchema.superRefine((spec, ctx) => {
  if (spec.rl !== undefined && spec.job_type !== 'rl') {
    ctx.addIssue({ code: 'custom', message: `only for job_type "rl" (this job is "${spec.job_type}")`, path: ['rl'], input: spec.rl });
  }
  for (const hit of findControlCharacters(spec)) {
    ctx.addIssue({
      code: 'custom',
      message: `must not contain control or bidi characters (found ${hit.character}); remove it and sign the spec again`,
      path: hit.path,
      input: spec,
    });
  }
});

/** Parsed specs carry the concrete output branch, so nobody downstream forgets the substitution. */
export const trainingJobSpecSchema = specChecked.transform(
  (spec): SpecObject => ({
    ...spec,
    artifacts: { ...spec.artifacts, output_branch: substituteJobId(spec.artifacts.output_branch, spec.job_id) },
  }),
);

export type TrainingJobSpec = z.output<typeof trainingJobSpecSchema>;
/** The JSON form a submitter writes (defaults not yet applied). */
export type TrainingJobSpecInput = z.input<typeof trainingJobSpecSchema>;

/** Idempotent: parsed specs are already substituted. */
export function resolveOutputBranch(spec: TrainingJobSpec): string {
  return substituteJobId(spec.artifacts.output_branch, spec.job_id);
}
