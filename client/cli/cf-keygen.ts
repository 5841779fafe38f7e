#!/usr/bin/env node
/**
 * cf-keygen: a new Ed25519 owner key (file mode 0600) and its did:key. `--orchestrator` provisions the orchestrator's
 * one identity instead (common/orchestrator-key.ts), idempotently: an existing key is kept and its did printed, with
 * the installation tag it gives the deployments' names; `--orchestrator --force` rotates it and names the old tag for
 * `reaper.earlier_tags`, so that the reaper still closes what the old key started.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { installationTag, loadKeyFile, orchestratorKeyFile, provisionOrchestratorKey } from '../../common/orchestrator-key';
import { generateKeyPair } from '../../jobspec/signing';
import { EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';
import { defaultKeyFile, writeKeyFile } from './shared/key-file';

export const spec: CommandSpec = {
  name: 'cf-keygen',
  summary: 'make a new Ed25519 owner key and print its did:key',
  args: '[--out FILE] [--force] [--orchestrator]',
  positionals: { min: 0, max: 0 },
  usesApi: false,
  options: {
    out: { type: 'string', short: 'o', value: 'FILE', description: 'where to write the key (default $FORGE_HOME/keys/owner.json)' },
    force: { type: 'boolean', description: 'replace an existing key file' },
    orchestrator: {
      type: 'boolean',
      description: 'provision the orchestrator key (default --out $FORGE_ORCHESTRATOR_KEY_FILE or $FORGE_HOME/keys/orchestrator.json); an existing one is kept',
    },
  },
  details: 'The key file holds {"did", "secret_key"} (base64url); it is written with mode 0600. Keep it secret: it signs your jobs and cancels.',
  exitCodes: [EXIT.OK, EXIT.USAGE],
};

/** The installation tag of the key in `file`; undefined when it cannot be read (a damaged key is why one rotates). */
function tagOf(file: string): string | undefined {
  try {
    return installationTag(loadKeyFile(file).did);
  } catch {
    return undefined;
  }
}

if (require.main === module) {
  void runCli(spec, async ({ values, out }) => {
    if (values.orchestrator === true && values.force !== true) {
      const file = path.resolve(typeof values.out === 'string' ? values.out : orchestratorKeyFile());
      const { keys, created } = provisionOrchestratorKey(file);
      const tag = installationTag(keys.did);
      if (out.json) out.data({ did: keys.did, key_file: file, created, installation_tag: tag });
      else {
        out.line(keys.did);
        out.note(created ? `orchestrator key written to ${file} (mode 0600): give this file to every replica` : `orchestrator key ${file} already exists: kept`);
        out.note(`installation tag ${tag}: in the provider-visible name of every remote deployment this key's orchestrator starts`);
      }
      return EXIT.OK;
    }
    const orchestrator = values.orchestrator === true;
    const file = path.resolve(typeof values.out === 'string' ? values.out : orchestrator ? orchestratorKeyFile() : defaultKeyFile());
    // Rotating the orchestrator key changes the installation tag: the old one must reach reaper.earlier_tags.
    const replacedTag = orchestrator && existsSync(file) ? tagOf(file) : undefined;
    const keys = generateKeyPair();
    writeKeyFile(file, keys, values.force === true);
    const tag = orchestrator ? installationTag(keys.did) : undefined;
    if (out.json) {
      const tags = { ...(tag && { installation_tag: tag }), ...(replacedTag && { replaced_installation_tag: replacedTag }) };
      out.data({ did: keys.did, key_file: file, ...tags });
    } else {
      out.line(keys.did);
      out.note(`key written to ${file} (mode 0600)`);
      if (tag) out.note(`installation tag ${tag}: in the provider-visible name of every remote deployment this key's orchestrator starts`);
      if (replacedTag) {
        out.note(
          `the replaced key's installation tag was ${replacedTag}: add it to reaper.earlier_tags in the operator config, or the reaper ` +
            'no longer closes the deployments the old key started (give the new key file to every replica)',
        );
      }
    }
    return EXIT.OK;
  });
}
