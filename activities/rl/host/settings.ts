/** What a GRPO trainer host is configured with (workers/config/grpo.ts builds it). */
import type { PolicyBus } from '../policy-bus';
import type { TaskRegistry } from '../tasks';

export interface GrpoHostSettings {
  hostId: string;
  /** The shared queue (forge-grpo). */
  taskQueue: string;
  /** This host's own queue, forge-grpo@<hostId> (common/names.ts grpoHostTaskQueue). */
  hostQueue: string;
  slots: number;
  /** Jobs' state folders (checkpoints, training logs, exports): shared by every trainer host. */
  stateDir: string;
  /** This host's scratch space (served weights). */
  workDir: string;
  /** argv of the policy process; `--config …` and the rest are appended. */
  trainerCommand: string[];
  /** Extra environment of the policy processes; CUDA_VISIBLE_DEVICES per slot comes from `devices`. */
  trainerEnv: Record<string, string>;
  /** Names of this worker's variables the policy process also gets (FORGE_GRPO_TRAINER_ENV_PASSTHROUGH). */
  trainerEnvPassthrough: string[];
  /** One entry per slot (e.g. "0", "1" or "0,1,2,3"); empty: the processes see every device. */
  devices: string[];
  bindHost: string;
  /** The name rollout workers reach this host by. */
  advertiseHost: string;
  leaseSeconds: number;
  startTimeoutMs: number;
  /** Benchmarks: pad every update to at least this long (simulated accelerator time). */
  minUpdateSeconds: number;
  /** Updates a policy process takes at once (1: no pipelining); the process reports what it does in its lease. */
  pipelineDepth: number;
  /** Announce each version here (Tashi / MQTT 5), if set. */
  bus?: PolicyBus;
  /** The RL session key (common/rl-session.ts): a session's rollout token is derived from it and the session id, so
   *  that the lease (in the workflow's history) carries no secret. */
  sessionKey: () => Buffer;
  /** Where the re-scoring of rollouts finds each task and its checker (default: the eval suite's task files). */
  tasks?: TaskRegistry;
}
