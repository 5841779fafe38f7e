/** infra/register-search-attributes against the real dev server, on a namespace created for the test. */
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { registerSearchAttributes } from '../../infra/register-search-attributes';
import { FORGE_SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';
import { temporalAddress } from '../helpers/forge';

test('registers every Forge* attribute on a namespace that lacks them, and nothing the second time', async () => {
  const connection = await Connection.connect({ address: temporalAddress() });
  const namespace = `forge-sa-${Date.now()}`;
  try {
    await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
    const added = await registerSearchAttributes(connection, namespace);
    expect(added.sort()).toEqual(FORGE_SEARCH_ATTRIBUTES.map((k) => k.name).sort());
    expect(await registerSearchAttributes(connection, namespace)).toEqual([]);
    const listed = await connection.operatorService.listSearchAttributes({ namespace });
    expect(Object.keys(listed.customAttributes ?? {})).toEqual(expect.arrayContaining(added));
  } finally {
    await connection.close();
  }
});
