/**
 * Which orchestrator installation made a deployment. Provider accounts (an Akash wallet, a Prime Intellect team) may be
 * shared by several installations — staging and production, two teams — and each one's reaper lists the account's
 * forge deployments: a deployment's provider-visible name carries its installation's tag, so a reaper closes only its
 * own (docs/architecture.md §5). The tag is derived from the orchestrator key, the one identity every replica of an
 * installation is given, so replicas agree on it without configuration.
 */
import { installationTag, orchestratorKey } from '../../common/orchestrator-key';

/**
 * Whether a marked deployment is this installation's to reap: one tagged with our tag, or with the tag of one of our
 * earlier orchestrator keys (config `reaper.earlier_tags`); one tagged by another installation never; an untagged
 * (legacy) mark, made before tags, is taken as ours as it always was.
 */
export function isOurs(markTag: string | undefined, ourTag: string | undefined, earlierTags: readonly string[] = []): boolean {
  return markTag === undefined || markTag === ourTag || earlierTags.includes(markTag);
}

/** This installation's tag, from the orchestrator key of `home` (made on first use only in the embedded stack). */
export function ourInstallationTag(home: string, env: NodeJS.ProcessEnv = process.env): string {
  return installationTag(orchestratorKey(home, env).did);
}
