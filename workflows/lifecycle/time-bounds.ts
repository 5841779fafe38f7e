/**
 * Date and duration arithmetic the workflow can never trip over. A spec's resources.max_hours is bounded by the
 * schema today, but histories and specs from before that bound (or a bug) may carry 1e10 or Infinity: a
 * `new Date(…).toISOString()` that throws inside the workflow would fail its task forever. Pure.
 */

/** The largest time a JavaScript Date can hold (ECMA-262: ±8.64e15 ms around the epoch). */
const MAX_DATE_MS = 8.64e15;

/** Longest duration handed to Temporal as a timeout: 100 years, far past any job and well inside its range. */
export const MAX_TIMEOUT_SECONDS = 100 * 365 * 24 * 3600;

/** ISO time `hours` after `nowMs`, clamped to the representable dates (NaN hours: now). Never throws. */
export function isoAfter(nowMs: number, hours: number): string {
  const ms = nowMs + hours * 3_600_000;
  const safe = Number.isNaN(ms) ? nowMs : Math.min(Math.max(ms, -MAX_DATE_MS), MAX_DATE_MS);
  return new Date(safe).toISOString();
}

/**
 * The follow activity's time limit: max_hours plus an hour (a backend that keeps failing to answer ends the attempt
 * then at the latest), a year when unknown, between an hour and MAX_TIMEOUT_SECONDS.
 */
export function followLimitSeconds(maxHours: number | undefined): number {
  const hours = maxHours === undefined || Number.isNaN(maxHours) ? 24 * 365 : Math.max(0, maxHours);
  return Math.min(Math.ceil(hours * 3600 + 3600), MAX_TIMEOUT_SECONDS);
}
