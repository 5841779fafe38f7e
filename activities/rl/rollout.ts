/**
 * The rollout activity (on `forge-rollout`, docs/architecture.md §7): `group_size` completions of one prompt from the policy
 * version the workflow names, with their token logprobs, scored by the task's checker; the completions go straight
 * to the trainer session (PUT /v1/rollouts/<id>), only the rewards and counts come back to the workflow.
 *
 * The weights of the version are downloaded from the trainer host into this worker's cache and verified against the
 * sha256 the workflow carries before the inference server loads them. The activity heartbeats throughout: a rollout
 * worker that dies costs only its in-flight activities, which Temporal retries on another worker. Each attempt uploads
 * under its own id (uploadId: the dispatched id plus the attempt), because the trainer takes an id once; the result
 * names the id that was uploaded, and the update names that one. The session's bearer token is derived here from the
 * session id and the RL session key (common/rl-session.ts): no token travels through Temporal.
 */
import os from 'node:os';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { z } from 'zod';
import { endpointToken } from '../../common/rl-session';
import { EvalSuiteError } from '../eval-suite';
import { complete, InferenceError, loadWeights, type Completion } from './inference';
import type { LoadedPolicy, PolicyCache } from './policy-cache';
import { PolicyIntegrityError } from './policy-cache';
import { rewardOf, UnknownTaskTypeError, type RewardChecker, type TaskRegistry } from './tasks';
import { RL_FAILURE } from '../../common/rl-names';
import { uploadId, type RolloutInput, type RolloutResult, type TrainerEndpoint } from './types';

export interface RolloutHooks {
  /** Tests: runs after the completions are scored, before the upload (to kill a worker mid-activity). */
  beforeUpload?(input: RolloutInput): void | Promise<void>;
  /** Tests: rewrites what the activity reports (a forging worker: inflated rewards). */
  report?(result: RolloutResult): RolloutResult;
  /** Tests: rewrites the completions before they are scored and uploaded (a forging worker: altered tokens, logprobs
   *  or proofs of another model, a claimed policy version it did not run). */
  forge?(completions: Completion[], input: RolloutInput, prompt: string): Completion[] | Promise<Completion[]>;
}

/** The trainer sessions this worker has served, by base URL (to prefetch the versions they announce). */
export class KnownSessions {
  private readonly sessions = new Map<string, TrainerEndpoint>();
  constructor(private readonly max = 64) {}

  remember(trainer: TrainerEndpoint): void {
    this.sessions.delete(trainer.baseUrl);
    this.sessions.set(trainer.baseUrl, trainer);
    while (this.sessions.size > this.max) this.sessions.delete(this.sessions.keys().next().value!);
  }

  /** The endpoint serving `url`, if this worker served one of its rollouts. */
  endpointOf(url: string): TrainerEndpoint | undefined {
    for (const t of this.sessions.values()) if (url.startsWith(`${t.baseUrl}/`)) return t;
    return undefined;
  }
}

export interface RolloutDeps {
  inferenceUrl: string;
  /** Bearer token of the inference server's weight loading, if it wants one. */
  inferenceAdminToken?: string;
  cache: PolicyCache;
  loaded: LoadedPolicy;
  tasks: TaskRegistry;
  checker?: RewardChecker;
  sessions?: KnownSessions;
  /** The RL session key: trainer sessions' tokens are derived from it. */
  sessionKey: () => Buffer;
  identity?: string;
  heartbeatMs?: number;
  uploadTimeoutMs?: number;
  hooks?: RolloutHooks;
}

const errorSchema = z.looseObject({ error: z.looseObject({ message: z.string() }) });

function reject(message: string, type = 'REJECTED'): ApplicationFailure {
  return ApplicationFailure.create({ message, type, nonRetryable: true });
}

/** PUT the completions to the trainer session. 409/410: the session moved on or is gone (the workflow decides). */
async function upload(
  trainer: TrainerEndpoint,
  token: string,
  rolloutId: string,
  body: unknown,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const url = `${trainer.baseUrl}/v1/rollouts/${encodeURIComponent(rolloutId)}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
  } catch (err) {
    if (signal.aborted) throw err;
    throw new Error(`PUT ${url}: ${(err as Error).message}`); // retryable: the host may be busy or restarting
  }
  if (res.ok) {
    await res.arrayBuffer();
    return;
  }
  const text = await res.text();
  let message = text.slice(0, 300);
  try {
    const e = errorSchema.safeParse(JSON.parse(text));
    if (e.success) message = e.data.error.message;
  } catch {
    // not JSON
  }
  if (res.status === 409 && /uploaded already/.test(message)) {
    // Never by this worker (each attempt has its own id): someone else took the id. Retried under the next attempt's.
    throw new Error(`trainer session refused rollout ${rolloutId}: ${message}`);
  }
  if (res.status === 403) {
    // This worker reached rl.max_rejections in the run: retried (maybe on another worker), never uploaded from here.
    throw new Error(`trainer session refused rollout ${rolloutId}: ${message}`);
  }
  if (res.status === 409 || res.status === 410) throw reject(`trainer session refused rollout ${rolloutId}: ${message}`, RL_FAILURE.SESSION_LOST);
  if (res.status === 401) {
    throw reject(
      `trainer refused rollout ${rolloutId} (HTTP 401): ${message}; the token is derived from FORGE_RL_SESSION_KEY, which must be the same on rollout workers and trainer hosts`,
    );
  }
  if (res.status === 400 || res.status === 413) throw reject(`trainer refused rollout ${rolloutId} (HTTP ${res.status}): ${message}`);
  throw new Error(`PUT ${url}: HTTP ${res.status}: ${message}`);
}

export function createRolloutActivities(deps: RolloutDeps) {
  const identity = deps.identity ?? `${os.hostname()}-${process.pid}`;
  const heartbeatMs = deps.heartbeatMs ?? 2_000;
  return {
    async rollout(input: RolloutInput): Promise<RolloutResult> {
      const ctx = Context.current();
      const signal = ctx.cancellationSignal;
      let phase = 'task';
      const beat = (): void => ctx.heartbeat({ phase });
      const timer = setInterval(beat, heartbeatMs);
      beat();
      try {
        let task;
        try {
          task = deps.tasks.source(input.task.taskType).task(input.task.seed);
        } catch (err) {
          if (err instanceof UnknownTaskTypeError || err instanceof EvalSuiteError) throw reject(err.message);
          throw err;
        }
        deps.sessions?.remember(input.trainer);
        const token = endpointToken(deps.sessionKey, input.trainer);
        const uploadAs = uploadId(input.rolloutId, ctx.info.attempt);
        phase = 'weights';
        const folder = await deps.cache.ensure(input.policy, token, signal);
        phase = 'generate';
        const startedAt = Date.now();
        const maxTokens = Math.min(input.maxTokens, task.maxTokens ?? input.maxTokens);
        const weightVersion = `${input.policy.version}:${input.policy.sha256}`;
        const completions = await deps.loaded.use(
          input.policy.sha256,
          () => loadWeights(deps.inferenceUrl, folder, weightVersion, deps.inferenceAdminToken),
          () =>
            complete(
              deps.inferenceUrl,
              {
                prompt: task.prompt,
                n: input.groupSize,
                maxTokens,
                temperature: input.temperature,
                seed: input.seed,
                ...(task.stop ? { stop: task.stop } : {}),
              },
              signal,
            ),
          signal,
        );
        const made = deps.hooks?.forge ? await deps.hooks.forge(completions, input, task.prompt) : completions;
        const scored = made.map((c) => ({ c, r: rewardOf(task, c.text, deps.checker) }));
        await deps.hooks?.beforeUpload?.(input);
        phase = 'upload';
        await upload(
          input.trainer,
          token,
          uploadAs,
          {
            policy_version: input.policy.version,
            prompt: task.prompt,
            worker: identity,
            samples: scored.map(({ c, r }) => ({
              token_ids: c.tokenIds,
              logprobs: c.logprobs,
              reward: r.reward,
              ...(c.toplocProofs ? { toploc_proofs: c.toplocProofs } : {}),
            })),
          },
          deps.uploadTimeoutMs ?? 60_000,
          signal,
        );
        const result: RolloutResult = {
          rolloutId: uploadAs,
          step: input.step,
          index: input.index,
          policyVersion: input.policy.version,
          taskType: task.taskType,
          taskId: task.id,
          rewards: scored.map(({ r }) => r.reward),
          successes: scored.filter(({ r }) => r.success).length,
          completionTokens: made.reduce((n, c) => n + c.tokenIds.length, 0),
          startedAt,
          endedAt: Date.now(),
          worker: identity,
        };
        return deps.hooks?.report ? deps.hooks.report(result) : result;
      } catch (err) {
        if (err instanceof InferenceError && err.permanent) throw reject(`inference server refused: ${err.message}`);
        if (err instanceof PolicyIntegrityError) throw err; // retried: a transfer may have been cut; the workflow sees it fail if it persists
        throw err;
      } finally {
        clearInterval(timer);
      }
    },
  };
}

export type RolloutActivities = ReturnType<typeof createRolloutActivities>;
