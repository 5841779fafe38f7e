/**
 * What the `akash` backend keeps: its record of an attempt on the orchestrator's disk (remote-state.ts; ids, prices
 * and the manifest with its token replaced, never a credential) and what its DeploymentRefs carry. Split from akash.ts.
 */
import { z } from 'zod';
import type { AkashBackendConfig } from '../../../common/config';
import { INSTALLATION_TAG } from '../../../common/config';
import { isOurs } from '../installation';
import { BackendError, type DeploymentRef } from '../types';
import { evalRunSchema, manifestSourceSchema, type ManifestSource } from './akash-manifest-source';
import type { ActiveDeployment, MarketBid } from './akash-market';
import { parseForgeGroupName } from './akash-sdl';

export const recordSchema = z.object({
  dseq: z.string().optional(),
  owner: z.string().default(''),
  manifest: z.string().optional(),
  manifestVersion: z.string(),
  createdAt: z.string(),
  bidDeadline: z.string(),
  /** The attempt's price cap, per block in the denom and as USD per hour. */
  capAmount: z.number(),
  capUsd: z.number(),
  lease: z.object({ provider: z.string(), gseq: z.number(), oseq: z.number(), amount: z.number(), leasedAt: z.string() }).optional(),
  manifestSentAt: z.string().optional(),
  closed: z.boolean().default(false),
  /** What the manifest is rebuilt from on a replica without this record (RefData's spec, raw_spec, raw_spec_kind, eval_run). */
  source: manifestSourceSchema.optional(),
  /** Its group is named with the forge mark (akash-sdl.ts forgeGroupName); records from before the mark have none. */
  groupMark: z.boolean().default(false),
  /** The installation tag in that name (installation.ts); absent in records from before tags. */
  groupTag: z.string().regex(INSTALLATION_TAG).optional(),
});
export type AkashRecord = z.output<typeof recordSchema>;

/** What a DeploymentRef of this backend carries (no credential, no token, no manifest). */
const refDataSchema = z.object({
  mode: z.enum(['chain', 'console']),
  dseq: z.string(),
  owner: z.string(),
  manifest_version: z.string(),
  denom: z.string(),
  cap_amount: z.number(),
  cap_usd_hour: z.number(),
  bid_deadline: z.string(),
  /**
   * The attempt's spec (parsed, JSON) and signed spec as submitted (`raw_spec_kind` says whether it was text or a JSON
   * value): with the operator config they rebuild the manifest on any replica (manifestOf). Neither is a secret: the
   * workflow's own input holds both. Absent in refs made before they were recorded.
   */
  spec: z.string().optional(),
  raw_spec: z.string().optional(),
  raw_spec_kind: z.enum(['text', 'json']).optional(),
  /**
   * An eval attempt's inputs as JSON (a ref's data holds only scalars), which its manifest carries as env
   * (trainer-contract.ts); absent for a training attempt.
   */
  eval_run: z.string().optional(),
  /** The manifest names its group with the forge mark (absent in refs of deployments made before the mark). */
  group_mark: z.boolean().optional(),
  /** The installation tag in the group's name (absent in refs from before tags). */
  group_tag: z.string().regex(INSTALLATION_TAG).optional(),
});
export type RefData = z.output<typeof refDataSchema>;

/** The ref data of an attempt from its record. */
export function refDataOf(rec: AkashRecord, mode: AkashBackendConfig['mode'], denom: string): RefData {
  return {
    mode,
    dseq: rec.dseq ?? '',
    owner: rec.owner,
    manifest_version: rec.manifestVersion,
    denom,
    cap_amount: rec.capAmount,
    cap_usd_hour: rec.capUsd,
    bid_deadline: rec.bidDeadline,
    ...(rec.source && { spec: rec.source.spec, raw_spec: rec.source.raw, raw_spec_kind: rec.source.kind }),
    ...(rec.source?.evalRun && { eval_run: JSON.stringify(rec.source.evalRun) }),
    ...(rec.groupMark && { group_mark: true }),
    ...(rec.groupTag !== undefined && { group_tag: rec.groupTag }),
  };
}

export function parseRefData(ref: DeploymentRef): RefData {
  const parsed = refDataSchema.safeParse(ref.data);
  if (!parsed.success) throw new BackendError('REJECTED', `deployment ${ref.id} is not an Akash deployment of this orchestrator`);
  return parsed.data;
}

/**
 * What the manifest is rebuilt from, as the ref carries it (undefined: a ref from before the spec was recorded). Eval
 * inputs that no longer parse are LOST, like a damaged spec (akash-manifest-source.ts specFromSource).
 */
export function sourceOfRef(d: RefData): ManifestSource | undefined {
  if (d.spec === undefined || d.raw_spec === undefined) return undefined;
  const source: ManifestSource = { spec: d.spec, raw: d.raw_spec, kind: d.raw_spec_kind ?? 'json' };
  if (d.eval_run === undefined) return source;
  let parsed: ReturnType<typeof evalRunSchema.safeParse>;
  try {
    parsed = evalRunSchema.safeParse(JSON.parse(d.eval_run));
  } catch (err) {
    throw new BackendError('LOST', `deployment ${d.dseq}: the eval inputs in its deployment ref are not JSON (${(err as Error).message}); the job retries with a new attempt`);
  }
  if (!parsed.success) throw new BackendError('LOST', `deployment ${d.dseq}: the eval inputs in its deployment ref no longer parse (${parsed.error.issues[0]?.message ?? ''}); the job retries with a new attempt`);
  return { ...source, evalRun: parsed.data };
}

/** The record a replica that did not submit the attempt keeps once it has sent its manifest (no manifest: rebuilt when needed). */
export function adoptedRecord(ref: DeploymentRef, d: RefData): z.input<typeof recordSchema> {
  const rebuiltFrom = sourceOfRef(d);
  const source = rebuiltFrom ? { source: rebuiltFrom } : {};
  return {
    dseq: d.dseq,
    owner: d.owner,
    manifestVersion: d.manifest_version,
    createdAt: ref.submittedAt,
    bidDeadline: d.bid_deadline,
    capAmount: d.cap_amount,
    capUsd: d.cap_usd_hour,
    ...source,
  };
}

export function leaseRecord(bid: MarketBid, at: string): NonNullable<AkashRecord['lease']> {
  return { provider: bid.id.provider, gseq: bid.id.gseq, oseq: bid.id.oseq, amount: bid.price.amount, leasedAt: at };
}

/** How an attempt's group is named: with the forge mark (and this installation's tag), or plain for a pre-mark one. */
export interface GroupMark {
  groupMark: boolean;
  groupTag?: string;
}

/**
 * The attempt an active deployment of the account is, known from its group's forge mark alone (a deployment not
 * created here, or whose record is gone: what closing it needs is on chain, its age is unknown, epoch 0); undefined
 * for one that is no forge attempt, or another installation's on a shared account (its own reaper closes it).
 */
export function markedAttempt(
  d: ActiveDeployment,
  installation: string | undefined,
  earlierTags: readonly string[] = [],
): { jobId: string; attempt: number; record: AkashRecord } | undefined {
  const mark = d.groups.map(parseForgeGroupName).find((m) => m !== undefined);
  if (!mark || !isOurs(mark.tag, installation, earlierTags)) return undefined;
  const unknown = new Date(0).toISOString();
  const record = recordSchema.parse({
    dseq: d.dseq,
    owner: d.owner,
    manifestVersion: d.version,
    createdAt: unknown,
    bidDeadline: unknown,
    capAmount: 0,
    capUsd: 0,
    groupMark: true,
    ...(mark.tag !== undefined && { groupTag: mark.tag }),
  });
  return { jobId: mark.jobId, attempt: mark.attempt, record };
}
