#!/usr/bin/env node
/**
 * cf-keygen: a new Ed25519 owner key (file mode 0600) and its did:key. `--orchestrator` provisions the orchestrator's
 * one identity instead (common/orchestrator-key.ts), idempotently: an existing key is kept and its did printed.
 */
import path from 'node:path';
import { orchestratorKeyFile, provisionOrchestratorKey } from '../../common/orchestrator-key';
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

if (require.main === module) {
  void runCli(spec, async ({ values, out }) => {
    if (values.orchestrator === true && values.force !== true) {
      const file = path.resolve(typeof values.out === 'string' ? values.out : orchestratorKeyFile());
      const { keys, created } = provisionOrchestratorKey(file);
      if (out.json) out.data({ did: keys.did, key_file: file, created });
      else {
        out.line(keys.did);
        out.note(created ? `orchestrator key written to ${file} (mode 0600): give this file to every replica` : `orchestrator key ${file} already exists: kept`);
      }
      return EXIT.OK;
    }
    const file = path.resolve(typeof values.out === 'string' ? values.out : values.orchestrator === true ? orchestratorKeyFile() : defaultKeyFile());
    const keys = generateKeyPair();
    writeKeyFile(file, keys, values.force === true);
    if (out.json) out.data({ did: keys.did, key_file: file });
    else {
      out.line(keys.did);
      out.note(`key written to ${file} (mode 0600)`);
    }
    return EXIT.OK;
  });
}
