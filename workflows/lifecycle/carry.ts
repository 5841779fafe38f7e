/**
 * The status one run of trainingJob hands to the next when it continues as new, bounded: a job with very many retries
 * (specs from before max_retries was capped) must not grow the carried status past Temporal's payload limit. The
 * oldest transitions (after the first few), errors and closed deployments are left out and counted; the cost of the
 * deployments left out stays in cost_usd. Pure.
 */
import type { JobStatus } from '../messages';

export const CARRY_LIMITS = { transitions: 1000, errors: 500, deployments: 500 } as const;

/** The first transitions (CREATED, QUEUED, …) are kept: how the job began. */
const KEEP_FIRST_TRANSITIONS = 3;

export function compactStatus(s: JobStatus, limits: { transitions: number; errors: number; deployments: number } = CARRY_LIMITS): JobStatus {
  const dropped = { transitions: 0, errors: 0, deployments: 0, cost_usd: 0, ...s.dropped };
  let transitions = s.transitions;
  if (transitions.length > limits.transitions) {
    const tail = limits.transitions - KEEP_FIRST_TRANSITIONS;
    dropped.transitions += transitions.length - limits.transitions;
    transitions = [...transitions.slice(0, KEEP_FIRST_TRANSITIONS), ...transitions.slice(transitions.length - tail)];
  }
  let errors = s.errors;
  if (errors.length > limits.errors) {
    dropped.errors += errors.length - limits.errors;
    errors = errors.slice(errors.length - limits.errors);
  }
  let deployments = s.deployments;
  let excess = deployments.length - limits.deployments;
  if (excess > 0) {
    // Oldest closed ones first; an open (or close pending) deployment is never left out.
    deployments = deployments.filter((d) => {
      if (excess <= 0 || !d.closed) return true;
      excess -= 1;
      dropped.deployments += 1;
      dropped.cost_usd += d.cost_usd;
      return false;
    });
  }
  const changed = transitions !== s.transitions || errors !== s.errors || deployments !== s.deployments;
  return changed ? { ...s, transitions, errors, deployments, dropped } : s;
}
