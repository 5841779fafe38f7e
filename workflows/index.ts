/** Workflow entry points registered on `forge-orchestrator` (the bundle's root). */
export { trainingJob } from './training-job';
export { integrateResults } from './integrate-results';
export { grpoRun } from './grpo-run';
export { forgeReaper } from './reaper';
export { backendCapacity } from './backend-capacity';
export { backendRead } from './backend-read';
