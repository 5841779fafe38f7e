/** Typed search attributes (DESIGN.md §3, contract: saved Web UI queries depend on these names). */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

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
