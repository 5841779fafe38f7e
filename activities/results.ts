/**
 * Result-integration activities on `forge-orchestrator` (DESIGN.md §8): commit the artifacts, evaluate, promote,
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
import type { Backend } from './backends/types';
import { EvalSuiteError } from './eval-suite';
import { appendEvalRows, EvalRunError, runEvalSuite, type EvalSummary, type EvalTarget } from './evals';
import { createNotifyActivities, DeliveryError, NotifyTargetError, type NotifyInput, type NotifyResult } from './notify';
import { EliteRegistry, RegistryError, type PromotionCandidate, type PromotionDecision } from './registry';
import { defaultSuiteDir } from './eval-suite';

export interface EvaluateInput {
  jobId: string;
  taskTypes: string[];
  /** The job's committed artifacts (finetune, rl), or the spec's base model (eval jobs). */
  model: { artifacts: ArtifactsRecord } | { baseModel: { name: string; source: string; revision: string } };
}

export interface ResultHooks {
  /** Tests: called right after the artifacts were pushed, before the activity returns. */
  afterArtifactsPush?: (record: ArtifactsRecord) => void | Promise<void>;
}

export interface ResultDeps {
  config: ResultsConfig;
  home: string;
  backends: ReadonlyMap<string, Backend>;
  hooks?: ResultHooks;
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
async function guarded<T>(fn: (heartbeat: () => void) => Promise<T>): Promise<T> {
  const ctx = activityContext();
  const heartbeat = (): void => ctx?.heartbeat();
  const timer = ctx ? setInterval(heartbeat, HEARTBEAT_MS) : undefined;
  try {
    return await fn(heartbeat);
  } catch (err) {
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
      return guarded((heartbeat) => {
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
          onTask: heartbeat,
        });
        await appendEvalRows(evalsFile, result.rows, (info?.attempt ?? 1) > 1);
        return result.summaries;
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

export type ResultActivities = ReturnType<typeof createResultActivities>;
