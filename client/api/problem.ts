/**
 * RFC 9457 problem details: every error the API returns is `application/problem+json` with a stable `type`, and,
 * when a request field is at fault, an `errors` list naming each field by its JSON path.
 */
import type { z } from 'zod';
import type { SpecIssue } from '../../jobspec/parse';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const PROBLEM_BASE = 'https://chrysalis-forge.dev/problems/';
/** A body with 100 000 bad array items must not produce a 10 MB answer. */
export const MAX_FIELD_ERRORS = 100;

/** Where the field sits in the request. */
export type FieldLocation = 'body' | 'query' | 'path' | 'header';

export interface FieldError {
  in: FieldLocation;
  /** Dotted JSON path as jobspec/parse reports it, e.g. `hyperparameters.learning_rate`; `(root)` for the whole part. */
  path: string;
  /** The same place as an RFC 6901 JSON Pointer in URI fragment form. */
  pointer: string;
  detail: string;
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  request_id?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

/** Problem kinds the API answers with: slug → (status, title). Clients may switch on `type`. */
export const PROBLEMS = {
  'invalid-request': [400, 'Invalid request'],
  'invalid-spec': [400, 'Invalid training job spec'],
  'unauthorized': [401, 'Missing or wrong API token'],
  'unauthenticated': [401, 'Sign the request with your did:key, or send the operator token'],
  'request-signature': [401, 'Request signature refused'],
  'owner-mismatch': [403, 'Spec owner is not the request signer'],
  'operator-only': [403, 'Operator token required'],
  'cors-refused': [403, 'Cross-origin request refused'],
  'bad-signature': [401, 'Signature does not verify'],
  'owner-not-allowed': [403, 'Owner not allowed'],
  'policy-refused': [403, "Refused by the operator's policy"],
  'cancel-refused': [403, 'Cancel refused'],
  'key-refused': [403, 'API key refused'],
  'not-found': [404, 'Not found'],
  'method-not-allowed': [405, 'Method not allowed'],
  'misdirected': [421, 'Misdirected request: host not served'],
  'job-id-conflict': [409, 'job_id already used by a different spec'],
  'already-terminal': [409, 'Job already finished'],
  'payload-too-large': [413, 'Request body too large'],
  'unsupported-media-type': [415, 'Unsupported media type'],
  'internal': [500, 'Internal server error'],
  'records-full': [507, 'Record quota used up'],
  'temporal-unavailable': [503, 'Temporal unavailable'],
  'replay-cache-full': [503, 'Too many signed requests in the replay window'],
  'timeout': [504, 'Upstream did not answer in time'],
} as const satisfies Record<string, readonly [number, string]>;
export type ProblemKind = keyof typeof PROBLEMS;

export function problemType(kind: ProblemKind): string {
  return `${PROBLEM_BASE}${kind}`;
}

export class ProblemError extends Error {
  override name = 'ProblemError';
  readonly status: number;
  constructor(
    readonly kind: ProblemKind,
    detail: string,
    readonly errors: FieldError[] = [],
    readonly extensions: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.status = PROBLEMS[kind][0];
  }

  toBody(instance: string, requestId: string): ProblemBody {
    return {
      type: problemType(this.kind),
      title: PROBLEMS[this.kind][1],
      status: this.status,
      detail: this.message,
      instance,
      request_id: requestId,
      ...(this.errors.length ? { errors: this.errors.slice(0, MAX_FIELD_ERRORS) } : {}),
      ...(this.errors.length > MAX_FIELD_ERRORS ? { errors_omitted: this.errors.length - MAX_FIELD_ERRORS } : {}),
      ...this.extensions,
    };
  }
}

/** `a.b.0` → `#/a/b/0` (RFC 6901 escaping of "~" and "/", then URI fragment encoding). */
export function pointerOf(path: string): string {
  if (path === '(root)') return '#';
  const segments = path.split('.').map((s) => encodeURIComponent(s.replaceAll('~', '~0').replaceAll('/', '~1')));
  return `#/${segments.join('/')}`;
}

export function fieldError(location: FieldLocation, path: string, detail: string): FieldError {
  return { in: location, path, pointer: pointerOf(path), detail };
}

export function fromSpecIssues(issues: readonly SpecIssue[]): FieldError[] {
  return issues.map((i) => fieldError('body', i.path, i.message));
}

function formatPath(path: readonly PropertyKey[]): string {
  // A key that is empty or holds a dot is quoted, so that every path names its field unambiguously (found by fuzzing).
  const segment = (k: PropertyKey): string => (String(k) === '' || String(k).includes('.') ? JSON.stringify(String(k)) : String(k));
  return path.length === 0 ? '(root)' : path.map(segment).join('.');
}

/** Zod issues as field errors; an unknown key is named itself, as jobspec/parse does. */
export function fromZodIssues(location: FieldLocation, issues: readonly z.core.$ZodIssue[]): FieldError[] {
  return issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => fieldError(location, formatPath([...issue.path, key]), 'unknown key'))
      : [fieldError(location, formatPath(issue.path), issue.message)],
  );
}

/** A missing field reads better as "required" than as "expected string, received undefined" (as in jobspec/parse). */
export const zodErrorMap: z.core.$ZodErrorMap = (issue) =>
  issue.code === 'invalid_type' && issue.input === undefined ? `required (${issue.expected})` : undefined;

/** "3 fields are invalid: a, b, c" — a one-line summary for `detail`. */
export function summarize(errors: readonly FieldError[], max = 5): string {
  const names = [...new Set(errors.map((e) => e.path))];
  const shown = names.slice(0, max).join(', ');
  const more = names.length > max ? ` and ${names.length - max} more` : '';
  return `${names.length} field${names.length === 1 ? ' is' : 's are'} invalid: ${shown}${more}`;
}
