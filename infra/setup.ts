/**
 * The `setup` role of the image (docker-compose's and Kubernetes' one-shot job): waits for Temporal, registers the
 * Forge* search attributes in TEMPORAL_NAMESPACE and creates (or updates) the reaper's schedule (both idempotent),
 * exits 0. With `--create-orchestrator-key` it first provisions the orchestrator's one identity
 * (common/orchestrator-key.ts) where every replica reads it, unless it exists.
 */
import { orchestratorKeyFile, provisionOrchestratorKey } from '../common/orchestrator-key';
import { connectClient, temporalAddress } from '../common/temporal';
import { readSetupConfig } from '../workers/config/setup';
import { waitForTemporal } from './dev-server';
import { ensureReaperScheduleFor } from './reaper-schedule';
import { registerSearchAttributes } from './register-search-attributes';

export const CREATE_KEY_FLAG = '--create-orchestrator-key';

/** Makes the orchestrator key unless it exists; logs its did either way. */
export function createOrchestratorKeyStep(file: string = orchestratorKeyFile()): void {
  const { keys, created } = provisionOrchestratorKey(file);
  console.log(`[setup] orchestrator key ${file} ${created ? 'created' : 'already provisioned, kept'}: ${keys.did}`);
}

export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  if (argv.includes(CREATE_KEY_FLAG)) createOrchestratorKeyStep();
  const { temporal: t, operator: config, setup } = readSetupConfig(); // the reaper's schedule follows the operator config
  const address = temporalAddress(t);
  // A fresh cluster (compose, Helm) takes a while to answer: wait up to FORGE_SETUP_WAIT_SECONDS (120).
  const waitMs = setup.FORGE_SETUP_WAIT_SECONDS * 1000;
  if (!t.TEMPORAL_API_KEY && !t.TEMPORAL_TLS_CERT) await waitForTemporal(address, waitMs);
  const connection = await connectClient(t);
  try {
    const added = await registerSearchAttributes(connection, t.TEMPORAL_NAMESPACE);
    console.log(`[setup] ${added.length ? `registered ${added.join(', ')}` : 'all Forge* search attributes already registered'} in ${t.TEMPORAL_NAMESPACE} at ${address}`);
    console.log(`[setup] ${await ensureReaperScheduleFor(connection, t.TEMPORAL_NAMESPACE, config, { FORGE_ORCHESTRATOR_TASK_QUEUE: setup.FORGE_ORCHESTRATOR_TASK_QUEUE })}`);
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`[setup] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
