/**
 * Parsing a submitted spec into either a typed spec or a list of issues that each name one field.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { z } from 'zod';
import { canonicalize } from './canonical-json';
import { trainingJobSpecSchema, type TrainingJobSpec } from './schema';

import type { SpecIssue } from './issues';

export { formatSpecIssues, type SpecIssue } from './issues';

export type ParseSpecResult = { ok: true; spec: TrainingJobSpec } | { ok: false; issues: SpecIssue[] };

function formatPath(path: readonly PropertyKey[]): string {
  // A key that is empty or holds a dot is quoted, so that every path names its field unambiguously (found by fuzzing).
  const segment = (k: PropertyKey): string => (String(k) === '' || String(k).includes('.') ? JSON.stringify(String(k)) : String(k));
  return path.length === 0 ? '(root)' : path.map(segment).join('.');
}

/** Zod reports unknown keys once, at their parent; we want one issue naming each key. */
function toSpecIssues(issue: z.core.$ZodIssue): SpecIssue[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ path: formatPath([...issue.path, key]), message: 'unknown key' }));
  }
  return [{ path: formatPath(issue.path), message: issue.message }];
}

/** A missing field reads better as "required" than as "expected string, received undefined". */
const errorMap: z.core.$ZodErrorMap = (issue) =>
  issue.code === 'invalid_type' && issue.input === undefined ? `required (${issue.expected})` : undefined;

export function parseTrainingJobSpec(input: unknown): ParseSpecResult {
  const result = trainingJobSpecSchema.safeParse(input, { error: errorMap });
  if (result.success) return { ok: true, spec: result.data };
  return { ok: false, issues: result.error.issues.flatMap(toSpecIssues) };
}

/** Identity of a submission: sha256 of the canonical JSON, signature included. */
export function specHash(rawSpec: Record<string, unknown>): string {
  return bytesToHex(sha256(new TextEncoder().encode(canonicalize(rawSpec))));
}
