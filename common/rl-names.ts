/**
 * Names shared by the rl workflows and activities. Free of zod on purpose: workflow code imports it (spec/issues.ts
 * says why that matters).
 */

/** The backend name an rl attempt's deployment carries (status, ForgeBackend): its trainer hosts' queue. */
export const RL_BACKEND = 'forge-grpo';
/** The DeploymentRef kind of an rl attempt (its grpoRun child). */
export const RL_BACKEND_KIND = 'grpo';
