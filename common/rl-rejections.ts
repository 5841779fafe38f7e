/**
 * Rollouts a trainer host dropped from an update (activities/rl/rescore.ts) and their count by worker and reason, the
 * run's `rl.rejected_rollouts`; pure and free of Node APIs (the grpoRun workflow counts them).
 */
/** Rejected groups from one worker after which its identity is refused for the run (operator rl.max_rejections). */
export const DEFAULT_MAX_REJECTIONS = 3;
/** Share of each step's rollout groups the trainer host checks by TOPLOC and logprobs (operator rl.verify_fraction). */
export const DEFAULT_VERIFY_FRACTION = 0.25;
/** Max absolute difference between a reported token logprob and the host's own (rl.verify_logprob_tolerance). */
export const DEFAULT_VERIFY_LOGPROB_TOLERANCE = 0.05;

export const REJECTION = {
  REWARD_MISMATCH: 'reward-mismatch',
  PROMPT_MISMATCH: 'prompt-mismatch',
  /** The stored group's completions are not the ones the worker reported (another count). */
  SAMPLE_COUNT: 'sample-count',
  /** The worker reached rl.max_rejections earlier in the run: none of its groups is used any more. */
  REFUSED_WORKER: 'refused-worker',
  /** TOPLOC (activities/rl/verify.ts): the completion's proofs do not match the claimed policy's hidden states. */
  TOPLOC_MISMATCH: 'toploc-mismatch',
  /** The reported logprobs are not the claimed policy's own within rl.verify_logprob_tolerance. */
  LOGPROB_MISMATCH: 'logprob-mismatch',
  /** A completion picked for verification carries no TOPLOC proofs. */
  PROOF_MISSING: 'proof-missing',
} as const;
export type RejectionReason = (typeof REJECTION)[keyof typeof REJECTION];

/** One rejected group, as the update reports it to the workflow. */
export interface RejectedRollout {
  rolloutId: string;
  worker: string;
  reason: RejectionReason;
  detail: string;
}

/** Rejections by worker and reason, the run's `rl.rejected_rollouts`. */
export interface RejectionCount {
  worker: string;
  reason: RejectionReason;
  count: number;
}

export function addRejections(counts: readonly RejectionCount[], rejected: readonly RejectedRollout[]): RejectionCount[] {
  const out = counts.map((c) => ({ ...c }));
  for (const r of rejected) {
    const c = out.find((x) => x.worker === r.worker && x.reason === r.reason);
    if (c) c.count++;
    else out.push({ worker: r.worker, reason: r.reason, count: 1 });
  }
  return out;
}

/** Workers with at least `max` rejections (refused-worker ones excluded: those are the consequence): refused. */
export function refusedWorkers(counts: readonly RejectionCount[], max: number): string[] {
  const by = new Map<string, number>();
  for (const c of counts) if (c.reason !== REJECTION.REFUSED_WORKER) by.set(c.worker, (by.get(c.worker) ?? 0) + c.count);
  return [...by].filter(([, n]) => n >= max).map(([w]) => w).sort();
}
