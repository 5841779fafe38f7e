/** Typed search attributes (docs/architecture.md §3, contract: saved Web UI queries depend on these names). */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';

export const ForgeJobState = defineSearchAttributeKey('ForgeJobState', SearchAttributeType.KEYWORD);
export const ForgeJobType = defineSearchAttributeKey('ForgeJobType', SearchAttributeType.KEYWORD);
export const ForgeBackend = defineSearchAttributeKey('ForgeBackend', SearchAttributeType.KEYWORD);
export const ForgeOwner = defineSearchAttributeKey('ForgeOwner', SearchAttributeType.KEYWORD);
export const ForgeBaseModel = defineSearchAttributeKey('ForgeBaseModel', SearchAttributeType.KEYWORD);
export const ForgeAttempt = defineSearchAttributeKey('ForgeAttempt', SearchAttributeType.INT);
export const ForgeCostUsd = defineSearchAttributeKey('ForgeCostUsd', SearchAttributeType.DOUBLE);

export const FORGE_SEARCH_ATTRIBUTES = [
  ForgeJobState,
  ForgeJobType,
  ForgeBackend,
  ForgeOwner,
  ForgeBaseModel,
  ForgeAttempt,
  ForgeCostUsd,
] as const;

/** Names as the Temporal CLI and operator API spell the types. */
export const SEARCH_ATTRIBUTE_CLI_TYPES: Record<string, string> = {
  [SearchAttributeType.KEYWORD]: 'Keyword',
  [SearchAttributeType.INT]: 'Int',
  [SearchAttributeType.DOUBLE]: 'Double',
};

/** Longer values are left out of the search attributes (a Keyword holds at most this much here). */
export const MAX_ATTRIBUTE_LENGTH = 512;

/** The facts a job's search attributes carry from its spec (absent or unusable ones left out). */
export interface JobFacts {
  job_type?: string | null;
  owner_did?: string | null;
  base_model?: { name?: unknown } | null;
}

function keyword(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ATTRIBUTE_LENGTH ? v : undefined;
}

/**
 * ForgeJobType, ForgeOwner, ForgeBaseModel of a spec, in this order: the one builder for the API's start and the
 * workflow's first upsert (workflows/lifecycle/job-record.ts), so a job lists the same before and after a worker runs it.
 */
export function jobFactAttributes(facts: JobFacts): SearchAttributePair[] {
  const pairs: SearchAttributePair[] = [];
  const type = keyword(facts.job_type);
  const owner = keyword(facts.owner_did);
  const model = keyword(facts.base_model?.name);
  if (type) pairs.push({ key: ForgeJobType, value: type });
  if (owner) pairs.push({ key: ForgeOwner, value: owner });
  if (model) pairs.push({ key: ForgeBaseModel, value: model });
  return pairs;
}
