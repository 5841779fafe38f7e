/** Names of the v1 contract shared by the schema, the config and the backends. */
export const SPEC_VERSION = 'training-job-v1';
export const DEFAULT_TRAINER_IMAGE = 'chrysalis/trainer:latest';
export const DEFAULT_MAX_RETRIES = 3;

// Bounds of the schema: no value a spec can carry makes a workflow's arithmetic (dates, backoff, history) trip.
/** `backend.max_retries` at most: each retry adds history events and a backoff to the job. */
export const MAX_RETRIES_LIMIT = 100;
/** `backend.fallbacks` at most. */
export const MAX_FALLBACKS = 16;
/** `resources.max_hours` at most (one year): deadlines are `now + max_hours` as a Date. Operators bound it lower (`max_job_hours`). */
export const MAX_HOURS_LIMIT = 8760;
/** `created_at` at most: 9999-12-31T23:59:59Z, the last second an ISO date can show. */
export const MAX_CREATED_AT = 253_402_300_799;
