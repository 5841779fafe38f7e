/**
 * trainingJob's patched() ids: histories recorded before these behaviours replay along their old paths. The strings
 * are in recorded histories and never change.
 */
export const PATCH_RESULTS = 'forge-results-integration';
export const PATCH_EVAL_JOBS = 'forge-eval-jobs';
/** A cancelled job's owner is notified too (job.cancelled, at on_cancel or else on_failure). */
export const PATCH_NOTIFY_CANCEL = 'forge-notify-cancel';
/**
 * Deprecated: every rl job's history has this marker, so there is no old path to keep. As patched() it failed a query
 * in CI: replaying the job for a query, the SDK (1.24) had not announced the marker yet when the workflow reached it
 * (its look-ahead), patched() answered false and the replay hit a nondeterminism error. deprecatePatch() writes the
 * marker in the same place without asking.
 */
export const PATCH_RL = 'forge-rl-grpo';
export const PATCH_ACCEPT_AND_SUBMIT = 'forge-accept-and-submit';
export const PATCH_EVAL_JOBS_RUN = 'forge-eval-jobs-run';
/** A remote attempt's deployment stays open after SUCCEEDED until its outputs are committed (fetched from its agent). */
export const PATCH_REMOTE_OUTPUTS = 'forge-remote-outputs-from-agent';
/** A cancelled follow or admission wait is the job's cancellation, not a failed attempt (no FAILED, no RETRY). */
export const PATCH_CANCEL_NOT_FAILURE = 'forge-cancel-not-failure';
/** Eval jobs and EVALUATING as attempts on a backend (`forge-trainer eval`) where results.evaluation says so. */
export const PATCH_EVAL_ON_BACKEND = 'forge-eval-on-backend';
/** A run continues as new past history_events_per_run (or when Temporal suggests it), between two attempts. */
export const PATCH_CONTINUE_AS_NEW = 'forge-continue-as-new';
