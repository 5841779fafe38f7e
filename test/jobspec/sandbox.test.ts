/**
 * jobspec/ is imported by workflow code: prove it bundles for, and runs in, Temporal's workflow sandbox.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { specHash } from '../../jobspec/parse';
import { signCancelRequest, generateKeyPair } from '../../jobspec/signing';
import { makeSignedSpec } from './fixtures';
import type { specSandboxProbe } from './sandbox-workflow';

const noop = (): void => undefined;
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error };

it('parses, verifies and hashes specs inside the workflow sandbox', async () => {
  const address = process.env.FORGE_TEST_TEMPORAL_ADDRESS;
  if (!address) throw new Error('FORGE_TEST_TEMPORAL_ADDRESS unset: run the tests through jest (global setup starts Temporal)');
  // ERROR only: the worker warns that it polls no activity queue, which is the point here.
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('./sandbox-workflow'), logger: quietLogger });

  const keys = generateKeyPair();
  const raw = makeSignedSpec({}, keys);
  const now = Math.floor(Date.now() / 1000);
  const cancel = signCancelRequest(raw.job_id, now, keys.secretKey);

  const taskQueue = `spec-sandbox-${randomUUID()}`;
  const nativeConnection = await NativeConnection.connect({ address });
  const connection = await Connection.connect({ address });
  try {
    const worker = await Worker.create({ connection: nativeConnection, taskQueue, workflowBundle: { code } });
    const result = await worker.runUntil(
      new Client({ connection }).workflow.execute<typeof specSandboxProbe>('specSandboxProbe', {
        taskQueue,
        workflowId: `spec-sandbox-${randomUUID()}`,
        args: [raw, cancel, now],
      }),
    );
    expect(result).toEqual({
      parsed: 'ok',
      outputBranch: `jobs/${raw.job_id}`,
      signature: { ok: true },
      cancel: { ok: true },
      staleCancel: { ok: false, reason: 'issued_at: request is stale (older than 300 s)' },
      hash: specHash(raw),
      canonical: '{"a":"€","b":[1e+21,0]}',
    });
  } finally {
    await connection.close();
    await nativeConnection.close();
  }
});
