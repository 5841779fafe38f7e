/**
 * Registers the Forge* search attributes (docs/architecture.md §3) on a Temporal server you run yourself
 * (`TEMPORAL_ADDRESS=host:7233 node dist/infra/register-search-attributes.js`). The dev server of `npm start`
 * registers them itself. For Temporal Cloud, add them in the Cloud UI or with `tcld`: the operator service
 * is not open to API keys there.
 */
import { Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import { connectionOptions, readTemporalEnv } from '../common/temporal';
import { FORGE_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';

export async function registerSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const known = new Set(Object.keys(existing.customAttributes ?? {}));
  const missing = FORGE_SEARCH_ATTRIBUTES.filter((k) => !known.has(k.name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(missing.map((k) => [k.name, encodeSearchAttributeIndexedValueType(k.type)!])),
  });
  return missing.map((k) => k.name);
}

if (require.main === module) {
  (async () => {
    const t = readTemporalEnv();
    const connection = await Connection.connect(connectionOptions(t));
    try {
      const added = await registerSearchAttributes(connection, t.TEMPORAL_NAMESPACE);
      console.log(added.length ? `registered: ${added.join(', ')}` : 'all Forge* search attributes already registered');
    } finally {
      await connection.close();
    }
  })().catch((err: unknown) => {
    console.error(`cannot register search attributes: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
