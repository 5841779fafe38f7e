/**
 * What a replica must be given before it starts, outside the embedded stack: the one orchestrator identity
 * (common/orchestrator-key.ts) and an elite registry every replica shares (results.registry.repo). A replica that
 * lacks either refuses to start, saying what to provision, rather than minting its own identity or keeping the registry
 * on its own disk. The embedded stack (npm start, test harnesses: FORGE_EMBEDDED=1) makes both itself.
 */
import type { ForgeConfig } from './config';
import { isEmbedded, orchestratorKey } from './orchestrator-key';

export class ProvisioningError extends Error {
  override name = 'ProvisioningError';
}

export const REGISTRY_MISSING =
  'results.registry.repo is not set in FORGE_CONFIG: outside the embedded stack the elite registry must be shared ' +
  'state every replica reaches, a git remote URL (e.g. "ssh://git@git.example.com/forge/registry.git", its ' +
  'credentials in results.git.credentials), not the default repository in this replica\'s FORGE_HOME/registry; set ' +
  'it (docs/operations.md "The orchestrator identity"), or set results.enabled to false';

/** The problems that keep a replica from starting (empty: none); also loads and caches the orchestrator key. */
export function replicaProvisioningProblems(config: ForgeConfig, home: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const problems: string[] = [];
  try {
    orchestratorKey(home, env);
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (!isEmbedded(env) && config.results.enabled && config.results.registry.repo === undefined) problems.push(REGISTRY_MISSING);
  return problems;
}

/** Throws a ProvisioningError listing every problem (see replicaProvisioningProblems). */
export function requireReplicaProvisioning(config: ForgeConfig, home: string, env: NodeJS.ProcessEnv = process.env): void {
  const problems = replicaProvisioningProblems(config, home, env);
  if (problems.length) throw new ProvisioningError(`refusing to start: ${problems.join('; and ')}`);
}
