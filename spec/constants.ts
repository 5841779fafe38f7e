/** Names of the v1 contract shared by the schema, the config and the backends. */
export const SPEC_VERSION = 'training-job-v1';
export const DEFAULT_TRAINER_IMAGE = 'chrysalis/trainer:latest';
export const DEFAULT_MAX_RETRIES = 3;
