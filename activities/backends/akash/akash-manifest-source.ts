/**
 * What an Akash attempt's manifest is rebuilt from on a replica that did not submit it: the spec and the signed spec
 * as submitted, and for an eval attempt its inputs (the suite's task files, the committed model; none of them is a
 * secret: the workflow's input and the orchestrator's suite_dir hold them). With the attempt, its price cap, the
 * operator config and the agent token derived from the backend's credential, the SDL generator (akash-sdl.ts) makes the
 * same manifest again; its version, committed on chain at creation, confirms it.
 */
import { z } from 'zod';
import { trainingJobSpecSchema } from '../../../jobspec/schema';
import type { ShippedSpec } from '../../../jobspec/signed-spec';
import { evalContractEnv } from '../trainer-contract';
import { BackendError, type EvalRunInputs } from '../types';

/** An eval attempt's inputs (types.ts EvalRunInputs) as a record or a deployment ref keeps them. */
export const evalRunSchema = z.strictObject({
  suite: z.record(z.string(), z.string()),
  model: z.strictObject({ kind: z.literal('git'), repo: z.string(), branch: z.string(), commit: z.string(), path: z.string() }).optional(),
});

/** `evalRun` is absent for a training attempt, and in every record and ref made before eval attempts ran on Akash. */
export const manifestSourceSchema = z.object({
  spec: z.string(),
  raw: z.string(),
  kind: z.enum(['text', 'json']),
  evalRun: evalRunSchema.optional(),
});
export type ManifestSource = z.output<typeof manifestSourceSchema>;

/**
 * The most bytes FORGE_EVAL_SUITE_B64 (the suite, base64) may have on Akash. The suite travels as one environment
 * variable of the container, and Linux refuses to exec a process with an environment string over MAX_ARG_STRLEN
 * (32 pages: 128 KiB with its name): the agent could not even start the trainer. 96 KiB leaves room under that, and
 * keeps the deployment ref, which carries the suite (about 72 KiB as JSON) through Temporal's history, well under
 * Temporal's 512 KiB payload warning. The repository's suites (evals/) are a few KiB each.
 */
export const MAX_EVAL_SUITE_B64_BYTES = 96 * 1024;

/** An eval attempt whose suite does not fit the container's environment is REJECTED, saying what to do. */
export function checkEvalSize(evalRun: EvalRunInputs, backend: string): void {
  const size = Buffer.byteLength(evalContractEnv(evalRun).FORGE_EVAL_SUITE_B64 ?? '');
  if (size <= MAX_EVAL_SUITE_B64_BYTES) return;
  throw new BackendError(
    'REJECTED',
    `backend "${backend}" (akash): the eval suite (${Object.keys(evalRun.suite).join(', ')}) is ${size} bytes as FORGE_EVAL_SUITE_B64, over the ` +
      `${MAX_EVAL_SUITE_B64_BYTES} an Akash container's environment carries: set results.evaluation.backends.${backend} to "orchestrator", ` +
      'or evaluate fewer or smaller task files (objective.task_types, results.evals.suite_dir)',
  );
}

export function manifestSourceOf(signed: ShippedSpec, evalRun?: EvalRunInputs): ManifestSource {
  const evaluates = evalRun && { evalRun: evalRunSchema.parse(evalRun) };
  const spec = JSON.stringify(signed.spec);
  if (typeof signed.raw === 'string') return { spec, raw: signed.raw, kind: 'text', ...evaluates };
  return { spec, raw: JSON.stringify(signed.raw), kind: 'json', ...evaluates };
}

/** The shipped spec and eval inputs back; a source that no longer parses is LOST (the job retries with a new attempt). */
export function specFromSource(source: ManifestSource, dseq: string): { signed: ShippedSpec; evalRun?: EvalRunInputs } {
  let json: unknown;
  let raw: ShippedSpec['raw'];
  try {
    json = JSON.parse(source.spec);
    raw = source.kind === 'text' ? source.raw : z.record(z.string(), z.unknown()).parse(JSON.parse(source.raw));
  } catch (err) {
    throw new BackendError('LOST', `deployment ${dseq}: the spec in its deployment ref is not JSON (${(err as Error).message}); the job retries with a new attempt`);
  }
  const parsed = trainingJobSpecSchema.safeParse(json);
  if (!parsed.success) throw new BackendError('LOST', `deployment ${dseq}: the spec in its deployment ref no longer parses (${parsed.error.issues[0]?.message ?? ''}); the job retries with a new attempt`);
  return { signed: { spec: parsed.data, raw }, ...(source.evalRun && { evalRun: source.evalRun }) };
}

/** A rebuilt manifest whose version is not the one on chain is never sent: the replicas' operator configs differ. */
export function checkRebuiltVersion(o: { rebuilt: string; committed: string; dseq: string; backend: string; attempt: number }): void {
  if (o.rebuilt === o.committed) return;
  throw new BackendError(
    'LOST',
    `deployment ${o.dseq}: the manifest rebuilt on this replica (version ${o.rebuilt}) is not the one the deployment committed (${o.committed}); ` +
      `backends.${o.backend} (trainers, service, placement, attributes, agent_port, denom, akt_usd, block_seconds) or its credential differs from the replica that submitted attempt ${o.attempt}: give every replica the same operator config`,
  );
}
