/**
 * `npm run demo`: a real finetune on the embedded stack. Makes what it needs under FORGE_HOME when missing (a tiny
 * base model, a dataset in a git repository, the demo owner's key in FORGE_HOME/keys), fills in and signs
 * examples/finetune-tiny.json, starts the job on the running stack (`npm start`, or the cluster TEMPORAL_ADDRESS
 * names) with @temporalio/client, and prints state changes and training progress until the job ends.
 */
import { jobPriority } from '../../common/job-priority';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client, type Connection, type WorkflowHandle } from '@temporalio/client';
import { jobAttemptDir, forgeHome } from '../../common/paths';
import { connectClient, readTemporalEnv, temporalAddress } from '../../common/temporal';
import { isTerminal } from '../../workflows/lifecycle/states';
import { statusQuery, type JobStatus } from '../../workflows/messages';
import { TASK_QUEUE_ORCHESTRATOR, WORKFLOW_TYPE_TRAINING_JOB, jobWorkflowId } from '../../common/names';
import type { KeyPair } from '../../jobspec/signing';
import { queuePollers } from '../queue-pollers';
import { EXAMPLE_SPEC, demoPaths, type DemoPaths, ensureBareRepo, ensureGitRepo, ensureOwnerKey, ensureTinyModel, reverseWordExamples, signedExampleSpec } from './prepare';

export interface DemoOptions {
  home: string;
  client: Client;
  taskQueue: string;
  log: (line: string) => void;
  /** Fewer steps than the example's (tests). */
  maxSteps?: number;
  pollMs?: number;
  /** The trainer that makes the tiny model (default: .tools/venv/bin/forge-trainer). */
  trainer?: string;
}

export interface DemoResult {
  jobId: string;
  status: JobStatus;
  /** The successful attempt's FORGE_OUTPUT_DIR (local backend). */
  outputDir?: string;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
export const clock = (iso: string): string => iso.slice(11, 19);

/** What every demo needs under FORGE_HOME, made when missing: the tiny model, the dataset, the output repo, the owner key. */
export function prepareDemoHome(o: Pick<DemoOptions, 'home' | 'log' | 'trainer'>): { paths: DemoPaths; owner: ReturnType<typeof ensureOwnerKey> } {
  const { home, log } = o;
  const paths = demoPaths(home);
  log(ensureTinyModel(paths.model, o.trainer) ? `made a tiny base model: ${paths.model}` : `base model: ${paths.model}`);
  const readme = '# reverse-words\n\nA toy dataset for `npm run demo`: reverse a short word.\n';
  const data = ensureGitRepo(paths.dataRepo, {
    'datasets/reverse-words/train.jsonl': reverseWordExamples(1000),
    'README.md': readme,
  });
  log(`${data.created ? 'made a dataset repository' : 'dataset repository'}: ${data.url}`);
  const models = ensureBareRepo(paths.modelsRepo);
  log(`${models.created ? 'made the output repository' : 'output repository'}: ${models.url}`);
  const owner = ensureOwnerKey(paths.key);
  log(`${owner.created ? 'made an owner key' : 'owner key'}: ${paths.key} (${owner.keys.did})`);
  return { paths, owner };
}

/** Fills in and signs an example spec (examples/*.json) for this FORGE_HOME and owner, and starts its job. */
export async function startExample(o: DemoOptions, file: string, keys: KeyPair): Promise<{ spec: { job_id: string }; handle: WorkflowHandle }> {
  const template: unknown = JSON.parse(readFileSync(file, 'utf8'));
  const spec = signedExampleSpec(template, { home: o.home, keys, ...(o.maxSteps !== undefined && { maxSteps: o.maxSteps }) });
  const handle = await o.client.workflow.start(WORKFLOW_TYPE_TRAINING_JOB, {
    taskQueue: o.taskQueue,
    workflowId: jobWorkflowId(spec.job_id),
    args: [spec],
    priority: jobPriority(keys.did),
  });
  o.log(`signed ${path.basename(file)} and started ${handle.workflowId} on task queue ${o.taskQueue}`);
  return { spec, handle };
}

/** Where the job's outputs were committed, and its evals. */
export function logCommitAndEvals(status: JobStatus, log: (line: string) => void): void {
  const a = status.artifacts;
  if (a) log(`artifacts: ${a.repo} ${a.branch} @ ${a.commit.slice(0, 12)} (${a.files.length} files, signed manifest)`);
  for (const e of status.evals) log(`eval ${e.task_type}: ${e.successes}/${e.tasks} (${(e.success_rate * 100).toFixed(1)}%)${e.promotion ? `; ${e.promotion}` : ''}`);
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const { home, log } = o;
  const { owner } = prepareDemoHome(o);

  const { spec, handle } = await startExample(o, EXAMPLE_SPEC, owner.keys);

  const status = await follow(handle, o);
  const result: DemoResult = { jobId: spec.job_id, status };
  if (status.state !== 'COMPLETED') {
    log(`job ended ${status.state}${status.last_error ? `: ${status.last_error.class}: ${status.last_error.detail}` : ''}`);
    return result;
  }
  result.outputDir = path.join(jobAttemptDir(home, spec.job_id, status.attempt), 'output');
  log(`outputs: ${result.outputDir}`);
  try {
    const m = JSON.parse(readFileSync(path.join(result.outputDir, 'metrics.json'), 'utf8')) as Record<string, unknown>;
    const num = (key: string, digits: number): string => (typeof m[key] === 'number' ? (m[key] as number).toFixed(digits) : '?');
    log(`validation loss ${num('initial_val_loss', 3)} → ${num('val_loss', 3)} in ${String(m.steps)} steps, ${num('tokens_per_second', 0)} tokens/s`);
  } catch {
    // metrics.json is the trainer's: when it is missing the outputs line above still says where to look
  }
  logCommitAndEvals(status, log);
  log(`try it: .tools/venv/bin/forge-trainer serve --model ${result.outputDir}`);
  return result;
}

/**
 * Prints each new transition and each new progress report from the `status` query until the job ends; `more` runs
 * at every poll (the RL demo shows its steps there).
 */
export async function follow(handle: WorkflowHandle, o: DemoOptions, more?: (status: JobStatus) => Promise<void>): Promise<JobStatus> {
  let shown = 0;
  let lastProgress = '';
  for (;;) {
    const status = await handle.query(statusQuery);
    for (const t of status.transitions.slice(shown)) o.log(`${clock(t.at)} ${t.state.padEnd(10)} ${t.reason}`);
    shown = status.transitions.length;
    const p = status.deployments[status.deployments.length - 1]?.progress;
    if (p) {
      const line = `step ${p.step}/${p.maxSteps ?? '?'}${p.loss === undefined ? '' : `  loss ${p.loss.toFixed(4)}`}`;
      if (line !== lastProgress) o.log(`${' '.repeat(9)}${'progress'.padEnd(10)} ${line}`);
      lastProgress = line;
    }
    await more?.(status);
    if (isTerminal(status.state)) return status;
    await sleep(o.pollMs ?? 500);
  }
}

/** A job started with no worker on its queue would just wait: say so at once instead. */
async function requireWorker(connection: Connection, namespace: string, taskQueue: string, address: string): Promise<void> {
  const { live } = await queuePollers(connection, namespace, taskQueue);
  if (live.length === 0) {
    throw new Error(
      `no orchestrator worker polls task queue ${taskQueue} on ${address}: start the stack with \`npm start\` in another terminal`,
    );
  }
}

/** A demo's command line: connects to the running stack, runs `demo`, exit code 0 only for COMPLETED. */
export async function demoMain(demo: (o: DemoOptions) => Promise<{ status: JobStatus }>): Promise<void> {
  const temporal = readTemporalEnv();
  const address = temporalAddress(temporal);
  const taskQueue = process.env.FORGE_ORCHESTRATOR_TASK_QUEUE || TASK_QUEUE_ORCHESTRATOR;
  const log = (line: string): void => console.log(`[demo] ${line}`);
  let connection: Connection;
  try {
    connection = await connectClient(temporal);
    await connection.healthService.check({});
  } catch (err) {
    throw new Error(`cannot reach Temporal at ${address} (${(err as Error).message}): start the stack with \`npm start\` first`);
  }
  try {
    await requireWorker(connection, temporal.TEMPORAL_NAMESPACE, taskQueue, address);
    const client = new Client({ connection, namespace: temporal.TEMPORAL_NAMESPACE });
    process.once('SIGINT', () => {
      log('stopped following; the job goes on (see the Web UI, or cancel it with a signed cancel)');
      process.exit(130);
    });
    const { status } = await demo({ home: forgeHome(), client, taskQueue, log });
    process.exitCode = status.state === 'COMPLETED' ? 0 : 1;
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  demoMain(runDemo).catch((err: unknown) => {
    console.error(`[demo] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
