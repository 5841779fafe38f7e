/**
 * One real Temporal dev server (the bootstrap's CLI, in memory, headless, on a free port) and one workflow bundle
 * for the whole run. Test files reach both through the environment.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startDevServer, type DevServer } from '../../infra/dev-server';
import { freePort } from '../helpers/ports';

declare global {
  var __forgeDevServer: DevServer | undefined;
}

export default async function globalSetup(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-test-'));
  // FORGE_TEST_TEMPORAL_ADDRESS set by hand: use that server (e.g. one with a Web UI, to look at what tests did).
  const given = process.env.FORGE_TEST_TEMPORAL_ADDRESS;
  const [server, bundle] = await Promise.all([
    given ? undefined : startDevServer({ port: await freePort(), logFile: path.join(dir, 'temporal.log'), readyTimeoutMs: 60_000 }),
    bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quietLogger }),
  ]);
  const bundlePath = path.join(dir, 'workflow-bundle.js');
  writeFileSync(bundlePath, bundle.code);
  globalThis.__forgeDevServer = server;
  process.env.FORGE_TEST_TEMPORAL_ADDRESS = given ?? server!.address;
  process.env.FORGE_TEST_WORKFLOW_BUNDLE = bundlePath;
  process.env.FORGE_TEST_DIR = dir;
  // The test harnesses are the embedded stack: an orchestrator key is made in each FORGE_HOME on first use, and the
  // registry may default to FORGE_HOME/registry (common/provisioning.ts). Tests of a provisioned replica unset it.
  process.env.FORGE_EMBEDDED = '1';
}

const noop = (): void => undefined;
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error };
