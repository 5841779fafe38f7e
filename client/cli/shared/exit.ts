/** Exit codes of the cf-* commands, and the error that carries one. */

export const EXIT = {
  OK: 0,
  /** --watch: the job ended, but not COMPLETED. */
  JOB_NOT_COMPLETED: 1,
  USAGE: 2,
  /** The API could not be reached, or failed (5xx). */
  UNAVAILABLE: 3,
  NOT_FOUND: 4,
  /** The API refused the request: invalid spec, bad signature, owner not allowed, missing token. */
  REFUSED: 5,
  /** job_id used by a different spec; job already finished. */
  CONFLICT: 6,
  /** cf-fetch-artifacts: a hash, a size or the manifest's signature does not verify. */
  VERIFY_FAILED: 7,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_HELP: Record<ExitCode, string> = {
  0: 'success',
  1: 'the watched job ended other than COMPLETED',
  2: 'usage error (arguments, unreadable or invalid input files)',
  3: 'the API is unreachable or failed',
  4: 'not found',
  5: 'refused by the API (invalid spec, signature, owner, token)',
  6: 'conflict (job id taken by another spec, job already finished)',
  7: 'verification failed (hash, size or manifest signature)',
};

export class CliError extends Error {
  override name = 'CliError';
  constructor(
    readonly code: ExitCode,
    message: string,
  ) {
    super(message);
  }
}
