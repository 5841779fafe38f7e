#!/usr/bin/env node
/**
 * cf-export-elites: writes a signed export of the elite registry and, with --auto-publish, pushes
 * the registry to its publish remote. Runs on the orchestrator's host: it reads the registry of the operator config
 * (FORGE_CONFIG) and signs with the orchestrator's key under FORGE_HOME/keys.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { GitAccessError } from '../../common/git';
import { loadConfig } from '../../common/config';
import { orchestratorKey } from '../../common/orchestrator-key';
import { forgeHome } from '../../common/paths';
import { EliteRegistry, RegistryError, type Elites } from '../../activities/registry';
import { CliError, EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';

export const spec: CommandSpec = {
  name: 'cf-export-elites',
  summary: 'signed export of the elite registry; --auto-publish pushes the registry to its remote',
  args: '[--out FILE] [--auto-publish]',
  positionals: { min: 0, max: 0 },
  usesApi: false,
  options: {
    out: { type: 'string', short: 'o', value: 'FILE', description: 'where the export goes (default ./elites-export.json; - for stdout)' },
    'auto-publish': { type: 'boolean', description: 'also push the registry to results.registry.publish_remote' },
  },
  details:
    'The export holds the registry (every entry signed by the orchestrator), the signature of its elites.json and the registry commit, and is itself signed (signature_ed25519 over its RFC 8785 JSON). Environment: FORGE_HOME, FORGE_CONFIG.',
  exitCodes: [EXIT.OK, EXIT.USAGE, EXIT.UNAVAILABLE, EXIT.NOT_FOUND, EXIT.VERIFY_FAILED],
};

if (require.main === module) {
  void runCli(spec, async ({ values, out }) => {
    const home = forgeHome();
    let config;
    try {
      config = loadConfig().results;
    } catch (err) {
      throw new CliError(EXIT.USAGE, (err as Error).message);
    }
    const registry = new EliteRegistry({ home, git: config.git, registry: config.registry, key: () => orchestratorKey(home) });
    let exported: Record<string, unknown>;
    try {
      exported = await registry.exportSigned();
    } catch (err) {
      if (err instanceof RegistryError) throw new CliError(/no elites yet/.test(err.message) ? EXIT.NOT_FOUND : EXIT.VERIFY_FAILED, err.message);
      if (err instanceof GitAccessError) throw new CliError(EXIT.USAGE, err.message);
      throw new CliError(EXIT.UNAVAILABLE, `cannot read the registry ${registry.url}: ${(err as Error).message}`);
    }
    const target = typeof values.out === 'string' ? values.out : 'elites-export.json';
    const text = `${JSON.stringify(exported, null, 2)}\n`;
    if (target === '-') process.stdout.write(text);
    else writeFileSync(path.resolve(target), text);
    let published: { remote: string; commit: string } | undefined;
    if (values['auto-publish'] === true) {
      try {
        published = await registry.publish();
      } catch (err) {
        if (err instanceof RegistryError || err instanceof GitAccessError) throw new CliError(EXIT.USAGE, err.message);
        throw new CliError(EXIT.UNAVAILABLE, `publishing failed: ${(err as Error).message}`);
      }
    }
    const elites = (exported.elites as Elites).elites;
    if (out.json) out.data({ out: target === '-' ? null : path.resolve(target), task_types: Object.keys(elites), published: published ?? null });
    else if (target !== '-') {
      for (const [type, e] of Object.entries(elites)) out.line(`${type.padEnd(12)} ${e.agent_id}  ${(e.metrics.success_rate * 100).toFixed(1)}%  (${e.artifacts.repo} @ ${e.artifacts.commit.slice(0, 12)})`);
      out.line(`signed export written to ${path.resolve(target)}`);
      if (published) out.line(`registry ${published.commit.slice(0, 12)} pushed to ${published.remote}`);
    }
    return EXIT.OK;
  });
}
