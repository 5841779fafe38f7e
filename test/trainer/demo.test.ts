/**
 * `npm run demo` (client/demo) against the test run's Temporal server and a worker on this file's own task queue:
 * it makes the tiny model, the dataset repository and the owner key under FORGE_HOME, signs the example spec and
 * follows the job to COMPLETED, printing transitions and progress. Fewer steps than the real demo.
 */
import { existsSync, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import type { Client, Connection } from '@temporalio/client';
import { runDemo } from '../../client/demo/finetune-tiny';
import { demoPaths, ensureGitRepo, ensureOwnerKey, ensureTinyModel } from '../../client/demo/prepare';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { startWorker, tempDir, testClient, testConfig, type RunningWorker } from '../helpers/forge';
import { TRAINER, TRAINER_ENV, requireTrainer } from './helpers';

const TQ = 'test-trainer-demo';
const home = tempDir('forge-demo-');
// With result integration, as `npm start` runs it: the model is committed, evaluated on the toy suite, offered to the registry.
const config = testConfig({ local: { trainers: { [DEFAULT_TRAINER_IMAGE]: [TRAINER, 'run'] } } }, undefined, { results: { evals: { serve_env: TRAINER_ENV } } });
config.backends.local!.trainers[DEFAULT_TRAINER_IMAGE]!.env = TRAINER_ENV;

let worker: RunningWorker;
let client: Client;
let connection: Connection;

beforeAll(async () => {
  requireTrainer();
  worker = await startWorker(config, home, TQ);
  ({ client, connection } = await testClient());
});
afterAll(async () => {
  await worker?.stop();
  await connection?.close();
  await fs.rm(home, { recursive: true, force: true });
});

test('the demo prepares FORGE_HOME, signs the example spec and follows the job to COMPLETED', async () => {
  const lines: string[] = [];
  const result = await runDemo({ home, client, taskQueue: TQ, log: (l) => lines.push(l), maxSteps: 40, pollMs: 100 });

  expect(result.status.state).toBe('COMPLETED');
  expect(result.status.job_type).toBe('finetune');
  expect(existsSync(path.join(result.outputDir!, 'model.safetensors'))).toBe(true);
  const text = lines.join('\n');
  expect(text).toMatch(/made a tiny base model/);
  expect(text).toMatch(/made a dataset repository: file:\/\//);
  expect(text).toMatch(/made an owner key: .*demo-owner\.json \(did:key:z6Mk/);
  expect(text).toMatch(/RUNNING/);
  expect(text).toMatch(/progress +step \d+\/40 +loss \d/);
  expect(text).toMatch(/EVALUATING +artifacts committed to file:\/\/.*\/demo\/models jobs\//);
  expect(text).toMatch(/COMPLETED +evaluated: toy/);
  expect(text).toMatch(/artifacts: file:\/\/.*demo\/models jobs\/[0-9a-f-]{36} @ [0-9a-f]{12} \(\d+ files, signed manifest\)/);
  expect(text).toMatch(/eval toy: \d+\/20 /);
  expect(text).toMatch(/validation loss [\d.]+ → [\d.]+ in 40 steps/);

  // The key is private, and everything is reused the next time.
  const paths = demoPaths(home);
  expect(statSync(paths.key).mode & 0o777).toBe(0o600);
  expect(statSync(path.dirname(paths.key)).mode & 0o777).toBe(0o700);
  expect(ensureTinyModel(paths.model)).toBe(false);
  expect(ensureGitRepo(paths.dataRepo, {}).created).toBe(false);
  const again = ensureOwnerKey(paths.key);
  expect(again.created).toBe(false);
  expect(text).toContain(again.keys.did);
});

test('a key file that others can read is tightened to 0600', async () => {
  const file = path.join(home, 'other-keys', 'k.json');
  const { keys } = ensureOwnerKey(file);
  await fs.chmod(file, 0o644);
  expect(ensureOwnerKey(file).keys.did).toBe(keys.did);
  expect(statSync(file).mode & 0o777).toBe(0o600);
});
