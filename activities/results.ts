/**
 * Result-integration activities on `forge-orchestrator` (docs/architecture.md §8): commit the artifacts, evaluate, promote,
 * notify. Each is a thin shell around its module (artifacts.ts, evals.ts, registry.ts, notify.ts): it heartbeats while
 * the work runs, and turns what retrying cannot fix into a non-retryable, typed ApplicationFailure (type REJECTED, a
 * failure class the workflow records) — everything else is retried by Temporal.
 */
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { GitAccessError, isPermanentGitFailure } from '../common/git';
import { nostrKeyFile, orchestratorKey } from '../common/orchestrator-key';
import type { ResultsConfig } from '../common/results-config';
import { SecretFileError } from '../common/secret-file';
import { ArtifactsError, checkoutArtifacts, createArtifactActivities, type ArtifactsRecord, type CommitArtifactsInput } from './artifacts';
import type { Backend, DeploymentRef } from './backends/types';
import { BACKEND_ROWS_FILE, checkBackendRows, EvalRowsError, MAX_ROWS_BYTES, sha256File } from './backend-evals';
import { promises as fs } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import { EvalSuiteError, loadSuite } from './eval-suite';
import { appendEvalRows, EvalRunError, runEvalSuite, summarize, type EvalSummary, type EvalTarget } from './evals';
import { createNotifyActivities, DeliveryError, NotifyTargetError, type NotifyInput, type NotifyResult } from './notify';
import { EliteRegistry, RegistryError, type PromotionCandidate, type PromotionDecision } from './registry';
import { defaultSuiteDir } from './eval-suite';

export interface EvaluateInput {
  jobId: string;
  taskTypes: string[];
  /** The job's committed artifacts (finetune, rl), or the spec's base model (eval jobs). */
  model: { artifacts: ArtifactsRecord } | { baseModel: { name: string; source: string; revision: string } };
}

/** An eval attempt succeeded: its rows are taken from the deployment's outputs (activities/backend-evals.ts). */
export interface IngestEvalsInput extends EvaluateInput {
  deployment: DeploymentRef;
}

export interface ResultHooks {
  /** Tests: called right after the artifacts were pushed, before the activity returns. */
  afterArtifactsPush?: (record: ArtifactsRecord) => void | Promise<void>;
  /** Tests: called when commitArtifacts starts, before anything is fetched (throw to fail it on this worker). */
  beforeArtifactsCommit?: (input: CommitArtifactsInput) => void | Promise<void>;
}

export interface ResultDeps {
  config: ResultsConfig;
  home: string;
  backends: ReadonlyMap<string, Backend>;
  hooks?: ResultHooks;
  /** The operator's trainer_env_passthrough: what the eval suite's model server gets of the worker's environment. */
  envPassthrough?: readonly string[];
}

const HEARTBEAT_MS = 5_000;

/** The activity's context, or undefined when the function is called outside an activity (unit tests). */
function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

function isPermanent(err: unknown): boolean {
  return (
    err instanceof ArtifactsError ||
    err instanceof RegistryError ||
    err instanceof EvalSuiteError ||
    err instanceof SecretFileError ||
    err instanceof NotifyTargetError ||
    isPermanentGitFailure(err) ||
    ((err instanceof GitAccessError || err instanceof EvalRunError || err instanceof DeliveryError) && err.permanent)
  );
}

/** Heartbeats every few seconds while `fn` runs; maps permanent errors to non-retryable failures. */
async function guarded<T>(fn: (heartbeat: (details?: unknown) => void) => Promise<T>): Promise<T> {
  const ctx = activityContext();
  // The timer repeats the latest details (a download's progress), so they are not lost between two reports.
  let last: unknown;
  const heartbeat = (details?: unknown): void => {
    if (details !== undefined) last = details;
    ctx?.heartbeat(last);
  };
  const timer = ctx ? setInterval(heartbeat, HEARTBEAT_MS) : undefined;
  try {
    return await fn(heartbeat);
  } catch (err) {
    if (err instanceof EvalRowsError) throw ApplicationFailure.create({ message: err.message, type: 'EVAL_ROWS_REFUSED', nonRetryable: true });
    if (isPermanent(err)) throw ApplicationFailure.create({ message: (err as Error).message, type: 'REJECTED', nonRetryable: true });
    throw err;
  } finally {
    clearInterval(timer);
  }
}

export function createResultActivities(deps: ResultDeps) {
  const { config, home } = deps;
  const key = () => orchestratorKey(home);
  const backend = (name: string): Backend => {
    const b = deps.backends.get(name);
    if (!b) throw new ArtifactsError(`backend "${name}" is not configured on this worker`);
    return b;
  };
  const registry = new EliteRegistry({ home, git: config.git, registry: config.registry, key });
  const notifier = createNotifyActivities({ settings: config.notifications, defaultNostrKeyFile: nostrKeyFile(home) });
  const evalsFile = config.evals.results_file ?? path.join(home, 'evals.jsonl');

  return {
    async commitArtifacts(input: CommitArtifactsInput): Promise<ArtifactsRecord> {
      return guarded(async (heartbeat) => {
        await deps.hooks?.beforeArtifactsCommit?.(input);
        const artifacts = createArtifactActivities({
          home,
          git: config.git,
          key,
          backend,
          heartbeat,
          ...(deps.hooks?.afterArtifactsPush ? { afterPush: deps.hooks.afterArtifactsPush } : {}),
        });
        return artifacts.commitArtifacts(input);
      });
    },

    /** Runs the suite for the job's task types; rows go to evals.jsonl (once, even when retried). */
    async evaluateModel(input: EvaluateInput): Promise<EvalSummary[]> {
      return guarded(async (heartbeat) => {
        let target: EvalTarget;
        let modelRef: string;
        if ('artifacts' in input.model) {
          const a = input.model.artifacts;
          target = { kind: 'dir', dir: await checkoutArtifacts(a, input.jobId, config.git, home, key().did) };
          modelRef = `git:${a.repo}@${a.commit}:${a.path}`;
        } else {
          const m = input.model.baseModel;
          const endpoint = config.evals.endpoints[m.name];
          if (endpoint) target = { kind: 'endpoint', url: endpoint };
          else if (m.source === 'local') target = { kind: 'dir', dir: m.name };
          else throw new EvalRunError(`base model ${m.source}:${m.name} is not a local directory: map it to an endpoint in results.evals.endpoints`, true);
          modelRef = endpoint ?? `${m.source}:${m.name}@${m.revision}`;
        }
        const ctx = activityContext();
        const info = ctx?.info;
        const evalId = `${info?.workflowExecution?.workflowId ?? `job-${input.jobId}`}/${info?.activityId ?? 'eval'}`;
        const result = await runEvalSuite({
          target,
          taskTypes: input.taskTypes,
          suiteDir: config.evals.suite_dir ?? defaultSuiteDir(),
          modelRef,
          jobId: input.jobId,
          evalId,
          settings: config.evals,
          ...(deps.envPassthrough ? { envPassthrough: deps.envPassthrough } : {}),
          onTask: heartbeat,
        });
        await appendEvalRows(evalsFile, result.rows, (info?.attempt ?? 1) > 1);
        return result.summaries;
      });
    },

    /**
     * An eval attempt's rows (README "Where evaluation runs"): fetched from its deployment, checked against this job,
     * the model and the suite (EVAL_ROWS_REFUSED otherwise), appended to evals.jsonl once; the summaries returned.
     */
    async ingestBackendEvals(input: IngestEvalsInput): Promise<EvalSummary[]> {
      return guarded(async () => {
        const suiteDir = config.evals.suite_dir ?? defaultSuiteDir();
        const suites = new Map(input.taskTypes.map((t) => [t, loadSuite(suiteDir, t)] as const));
        const shipped = new Map([...suites].filter((e): e is [string, NonNullable<(typeof e)[1]>] => e[1] !== undefined));
        const expected = await expectedModel(input);
        const dir = await mkdtemp(path.join(os.tmpdir(), 'forge-evals-'));
        try {
          const files = await backend(input.deployment.backend).collectArtifacts(input.deployment, dir);
          // No task file for any of the job's task types: nothing was shipped, and no rows are owed.
          if (!files.includes(BACKEND_ROWS_FILE) && shipped.size === 0) return input.taskTypes.map((t) => summarize(t, undefined, []));
          if (!files.includes(BACKEND_ROWS_FILE)) throw new EvalRowsError(`the eval attempt's outputs have no ${BACKEND_ROWS_FILE} (got: ${files.slice(0, 10).join(', ') || 'nothing'})`);
          const file = path.join(dir, BACKEND_ROWS_FILE);
          if ((await fs.stat(file)).size > MAX_ROWS_BYTES) throw new EvalRowsError(`${BACKEND_ROWS_FILE} is larger than ${MAX_ROWS_BYTES} bytes`);
          const rows = checkBackendRows(await fs.readFile(file, 'utf8'), {
            jobId: input.jobId,
            modelSha256: expected.sha256,
            suites: shipped,
            modelRef: expected.ref,
            evalId: `job-${input.jobId}/${input.deployment.backend}/${input.deployment.id}`,
          });
          await appendEvalRows(evalsFile, rows, true);
          return input.taskTypes.map((t) => summarize(t, suites.get(t), rows));
        } finally {
          await fs.rm(dir, { recursive: true, force: true });
        }
      });
    },

    async promoteElites(candidate: PromotionCandidate): Promise<PromotionDecision[]> {
      return guarded(() => registry.promote(candidate));
    },

    async notify(input: NotifyInput): Promise<NotifyResult> {
      return guarded(() => notifier.notify(input));
    },
  };
}

/** The model the rows must name: its ref in evals.jsonl and the sha256 of its model.safetensors (null: unknowable here). */
async function expectedModel(input: EvaluateInput): Promise<{ ref: string; sha256: string | null }> {
  if ('artifacts' in input.model) {
    const a = input.model.artifacts;
    const weights = a.files.find((f) => f.path === 'model.safetensors');
    if (!weights) throw new EvalRowsError(`the committed model ${a.repo}@${a.commit}:${a.path} has no model.safetensors to check the rows against`);
    return { ref: `git:${a.repo}@${a.commit}:${a.path}`, sha256: weights.sha256 };
  }
  const m = input.model.baseModel;
  const ref = `${m.source}:${m.name}@${m.revision}`;
  if (m.source !== 'local') return { ref, sha256: null };
  // The spec policy already kept a local base model under file_roots (common/spec-policy.ts); hashed where it lies.
  try {
    return { ref, sha256: await sha256File(path.join(m.name, 'model.safetensors')) };
  } catch (err) {
    throw new EvalRowsError(`base model ${m.name}: cannot hash its model.safetensors to check the rows (${(err as Error).message})`);
  }
}

export type ResultActivities = ReturnType<typeof createResultActivities>;
