/**
 * The global teardown's scan: every workflow history the run recorded on its dev server is checked for secrets
 * (test/helpers/history-secrets.ts: token-shaped values under secret-sounding names, and the values test files
 * registered with registerTestSecret). A finding fails the run, naming the workflow and the field.
 */
import { Client, Connection } from '@temporalio/client';
import { historyJson, knownTestSecrets, scanHistory } from '../helpers/history-secrets';

export async function scanRecordedHistories(address: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection });
    const known = knownTestSecrets();
    const found: string[] = [];
    for await (const wf of client.workflow.list()) {
      const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      for (const f of scanHistory(historyJson(history), known)) found.push(`${wf.workflowId} (${wf.runId}) ${f.at}: ${f.why}`);
    }
    if (found.length > 0) {
      throw new Error(`secrets in recorded workflow histories (keep them out of activity inputs and results):\n${found.join('\n')}`);
    }
  } finally {
    await connection.close();
  }
}
