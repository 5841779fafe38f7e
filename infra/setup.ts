/**
 * The `setup` role of the image (docker-compose's and Kubernetes' one-shot job): waits for Temporal, registers the
 * Forge* search attributes in TEMPORAL_NAMESPACE (idempotent), exits 0.
 */
import { connectClient, readTemporalEnv, temporalAddress } from '../common/temporal';
import { waitForTemporal } from './dev-server';
import { registerSearchAttributes } from './register-search-attributes';

export async function main(): Promise<void> {
  const t = readTemporalEnv();
  const address = temporalAddress(t);
  // A fresh cluster (compose, Helm) takes a while to answer: wait up to FORGE_SETUP_WAIT_SECONDS (120).
  const waitMs = Number(process.env.FORGE_SETUP_WAIT_SECONDS ?? 120) * 1000;
  if (!t.TEMPORAL_API_KEY && !t.TEMPORAL_TLS_CERT) await waitForTemporal(address, waitMs);
  const connection = await connectClient(t);
  try {
    const added = await registerSearchAttributes(connection, t.TEMPORAL_NAMESPACE);
    console.log(`[setup] ${added.length ? `registered ${added.join(', ')}` : 'all Forge* search attributes already registered'} in ${t.TEMPORAL_NAMESPACE} at ${address}`);
  } finally {
    await connection.close();
  }
}
