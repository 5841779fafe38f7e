#!/usr/bin/env node
/** cf-keygen: a new Ed25519 owner key (file mode 0600) and its did:key. */
import path from 'node:path';
import { generateKeyPair } from '../../spec/signing';
import { defaultKeyFile, EXIT, runCli, writeKeyFile, type CommandSpec } from './shared';

export const spec: CommandSpec = {
  name: 'cf-keygen',
  summary: 'make a new Ed25519 owner key and print its did:key',
  args: '[--out FILE] [--force]',
  positionals: { min: 0, max: 0 },
  usesApi: false,
  options: {
    out: { type: 'string', short: 'o', value: 'FILE', description: 'where to write the key (default $FORGE_HOME/keys/owner.json)' },
    force: { type: 'boolean', description: 'replace an existing key file' },
  },
  details: 'The key file holds {"did", "secret_key"} (base64url); it is written with mode 0600. Keep it secret: it signs your jobs and cancels.',
  exitCodes: [EXIT.OK, EXIT.USAGE],
};

if (require.main === module) {
  void runCli(spec, async ({ values, out }) => {
    const file = path.resolve(typeof values.out === 'string' ? values.out : defaultKeyFile());
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
