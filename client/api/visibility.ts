/**
 * GET /jobs filters → a Temporal visibility query over the Forge* search attributes. Values are validated by zod
 * first (enums, did:key and backend-name patterns) and then quoted, so no filter can change the query's shape.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { BACKEND_NAME_PATTERN, JOB_TYPES } from '../../jobspec/schema';
import { WORKFLOW_TYPE_TRAINING_JOB } from '../../common/names';
import { JOB_STATES } from '../../workflows/lifecycle/states';
import { ForgeBackend, ForgeJobState, ForgeJobType, ForgeOwner } from '../../workflows/search-attributes';

/** A comma-separated list of enum values, e.g. `state=RUNNING,QUEUED`. */
function enumList<const T extends readonly [string, ...string[]]>(values: T) {
  const allowed = new Set<string>(values);
  return z
    .string()
    .max(512)
    .transform((s, ctx) => {
      const items = s.split(',').map((v) => v.trim());
      const bad = items.filter((v) => !allowed.has(v));
      if (bad.length) {
        ctx.addIssue({ code: 'custom', message: `${bad.map((v) => JSON.stringify(v)).join(', ')}: must be one of ${values.join(', ')}`, input: s });
        return z.NEVER;
      }
      return items as T[number][];
    });
}

const DID_KEY = /^did:key:z[1-9A-HJ-NP-Za-km-z]{1,128}$/;

export const listQuerySchema = z.strictObject({
  state: enumList(JOB_STATES).optional().meta({ description: 'job state(s), comma-separated' }),
  job_type: enumList(JOB_TYPES).optional().meta({ description: 'finetune, rl or eval (comma-separated for several)' }),
  backend: z.string().max(63).regex(BACKEND_NAME_PATTERN, 'must be a backend name').optional(),
  owner: z.string().regex(DID_KEY, 'must be a did:key (did:key:z…)').optional(),
  page_size: z.coerce.number().int().min(1).max(500).default(50),
  page_token: z
    .string()
    .max(8192)
    .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{11}$/, 'must be the next_page_token of an earlier page')
    .refine((t) => decodePageToken(t) !== undefined, 'must be the next_page_token of an earlier page')
    .optional(),
});
export type ListQuery = z.output<typeof listQuerySchema>;

/** A string literal of the visibility query language; refuses what it cannot express safely. */
export function quoteLiteral(value: string): string {
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new Error('control characters cannot appear in a visibility query value');
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

function inList(attribute: string, values: readonly string[]): string {
  return values.length === 1 ? `${attribute} = ${quoteLiteral(values[0]!)}` : `${attribute} IN (${values.map(quoteLiteral).join(', ')})`;
}

export function buildVisibilityQuery(q: Pick<ListQuery, 'state' | 'job_type' | 'backend' | 'owner'>): string {
  const clauses = [`WorkflowType = ${quoteLiteral(WORKFLOW_TYPE_TRAINING_JOB)}`];
  if (q.state) clauses.push(inList(ForgeJobState.name, q.state));
  if (q.job_type) clauses.push(inList(ForgeJobType.name, q.job_type));
  if (q.backend) clauses.push(inList(ForgeBackend.name, [q.backend]));
  if (q.owner) clauses.push(inList(ForgeOwner.name, [q.owner]));
  return clauses.join(' AND ');
}

/**
 * Temporal's page token, made opaque and checked: a token that did not come from us fails fast with 400 instead of
 * reaching the server (which retries some malformed tokens until the deadline).
 */
function tokenCheck(raw: Uint8Array): string {
  return createHash('sha256').update(raw).digest('base64url').slice(0, 11);
}

export function encodePageToken(raw: Uint8Array): string {
  return `${Buffer.from(raw).toString('base64url')}.${tokenCheck(raw)}`;
}

export function decodePageToken(token: string): Buffer | undefined {
  const [body = '', check] = token.split('.');
  const raw = Buffer.from(body, 'base64url');
  return raw.length > 0 && check === tokenCheck(raw) ? raw : undefined;
}
