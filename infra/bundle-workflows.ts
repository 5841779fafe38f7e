/** Pre-bundles the workflow code (production workers load it instead of bundling at start): dist/workflow-bundle.js. */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

export async function bundleWorkflows(outFile: string): Promise<void> {
  const noop = (): void => undefined;
  const logger = { log: noop, trace: noop, debug: noop, info: noop, warn: console.warn, error: console.error };
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows'), logger });
  await writeFile(outFile, code);
}

if (require.main === module) {
  const out = path.resolve(__dirname, '..', 'workflow-bundle.js');
  bundleWorkflows(out)
    .then(() => console.error(`[build] workflow bundle written to ${path.relative(process.cwd(), out)}`))
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
