/**
 * Names shared by the rl workflows and activities. Free of zod on purpose: workflow code imports it (jobspec/issues.ts
 * says why that matters).
 */

/** The backend name an rl attempt's deployment carries (status, ForgeBackend): its trainer hosts' queue. */
export const RL_BACKEND = 'forge-grpo';
/** The DeploymentRef kind of an rl attempt (its grpoRun child). */
export const RL_BACKEND_KIND = 'grpo';

/** Failure types of RL activities that the grpoRun workflow tells apart (ApplicationFailure.type). */
export const RL_FAILURE = {
  /** The trainer session is gone (its process died, or a newer session holds the job). */
  SESSION_LOST: 'RL_SESSION_LOST',
  /** The trainer refused an update that cannot succeed as sent (missing or stale rollouts). */
  UPDATE_REFUSED: 'RL_UPDATE_REFUSED',
} as const;
