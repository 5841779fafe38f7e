/**
 * acceptSpec: the one check of a submitted spec, shared by the API's POST /jobs and the workflow's validateSpec
 * activity — schema (zod), owner signature, allowed owners, known backends, then the operator's spec policy.
 * Pure apart from the policy's look at existing paths on this host (common/spec-policy.ts).
 */
import type { ForgeConfig } from './config';
import { specPolicyIssues } from './spec-policy';
import { verifySpecSignatureFast } from './spec-signature';
import { backendCandidates } from '../jobspec/candidates';
import { parseTrainingJobSpec, specHash, type SpecIssue } from '../jobspec/parse';
import type { TrainingJobSpec } from '../jobspec/schema';
import type { SignedSpec } from '../jobspec/signed-spec';

export type { SignedSpec } from '../jobspec/signed-spec';

/** What the operator allows: its config (allowed_owners, results, max_job_hours), its backends, FORGE_HOME. */
export interface AcceptPolicy {
  config: ForgeConfig;
  backends: { has(name: string): boolean; keys(): Iterable<string> };
  home: string;
}

/** Why a spec was refused, each error naming its field (`path`). */
export type SpecError =
  | { kind: 'schema'; path: string; message: string }
  /** `reason` as jobspec/signing words it ("field: message"). */
  | { kind: 'signature'; path: 'signature_ed25519'; message: string; reason: string }
  | { kind: 'owner-not-allowed'; path: 'owner_did'; message: string }
  | { kind: 'unknown-backend'; path: string; message: string; backend: string }
  | { kind: 'policy'; path: string; message: string };

export type AcceptedSpec =
  | { ok: true; signed: SignedSpec }
  /** `spec`: the parsed spec when it passed the schema (the API still checks its owner against the request signer). */
  | { ok: false; errors: SpecError[]; spec?: TrainingJobSpec };

/**
 * Signature, allowed owner and backends are checked together (every error at once); the policy only for a spec that
 * passed them. A schema failure stops before anything else.
 */
export function acceptSpec(raw: unknown, policy: AcceptPolicy): AcceptedSpec {
  const parsed = parseTrainingJobSpec(raw);
  if (!parsed.ok) return { ok: false, errors: parsed.issues.map((i) => ({ kind: 'schema', ...i })) };
  const spec = parsed.spec;
  const errors: SpecError[] = [];
  const sig = verifySpecSignatureFast(raw);
  if (!sig.ok) errors.push({ kind: 'signature', path: 'signature_ed25519', message: sig.reason, reason: sig.reason });
  const allowed = policy.config.allowed_owners;
  if (allowed && !allowed.includes(spec.owner_did)) {
    errors.push({ kind: 'owner-not-allowed', path: 'owner_did', message: 'owner is not in the operator’s allowed_owners' });
  }
  backendCandidates(spec).forEach((name, i) => {
    if (policy.backends.has(name)) return;
    errors.push({
      kind: 'unknown-backend',
      backend: name,
      path: i === 0 ? 'backend.provider' : `backend.fallbacks.${i - 1}`,
      message: `unknown backend "${name}"; configured: ${[...policy.backends.keys()].join(', ')}`,
    });
  });
  if (!errors.length) errors.push(...specPolicyIssues(spec, policy.config, policy.home).map((i) => ({ kind: 'policy' as const, ...i })));
  if (errors.length) return { ok: false, errors, spec };
  const record = raw as Record<string, unknown>;
  return { ok: true, signed: { spec, raw: record, sha256: specHash(record) } };
}

/** The errors as the spec issues a job's failure shows (path and message). */
export function specIssuesOf(errors: readonly SpecError[]): SpecIssue[] {
  return errors.map(({ path, message }) => ({ path, message }));
}
