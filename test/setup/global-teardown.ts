import { scanRecordedHistories } from './scan-histories';

export default async function globalTeardown(): Promise<void> {
  try {
    // Only the run's own server: a server given by hand (FORGE_TEST_TEMPORAL_ADDRESS) holds other histories too.
    if (globalThis.__forgeDevServer) await scanRecordedHistories(globalThis.__forgeDevServer.address);
  } finally {
    await globalThis.__forgeDevServer?.stop();
  }
}
