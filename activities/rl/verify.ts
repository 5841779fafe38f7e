/**
 * TOPLOC verification of rollouts (README "Reinforcement learning"): before an update, the trainer host picks a share
 * of the step's groups (operator rl.verify_fraction) and has its trainer session check every completion of each by one
 * prefill under the policy version the rollout claims: the TOPLOC proofs the inference server made of the completion's
 * hidden states must match the prefill's, and the reported logprobs the prefill's own within rl.verify_logprob_tolerance
 * (trainer/src/forge_trainer/rollout_verify.py). A group that fails leaves the update and counts against its worker,
 * like a re-scored reward that differs (rescore.ts).
 *
 * The pick is keyed by a secret of the host (HMAC of the rollout id): a worker cannot tell which of its rollouts will
 * be checked. The same call hands the session the run's refused workers, whose uploads it refuses from then on.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { REJECTION, type RejectedRollout, type RejectionReason } from '../../common/rl-rejections';

const reasonSchema = z.enum([REJECTION.TOPLOC_MISMATCH, REJECTION.LOGPROB_MISMATCH, REJECTION.PROOF_MISSING]);

/** POST /v1/verify-rollouts's answer. */
export const verifyAnswerSchema = z.looseObject({
  rejected: z.record(z.string(), z.looseObject({ reason: reasonSchema, detail: z.string(), worker: z.string().nullable() })),
  checked: z.int().min(0),
  seconds: z.number().min(0),
});
export type VerifyAnswer = z.infer<typeof verifyAnswerSchema>;

export interface VerifySettings {
  fraction: number;
  logprobTolerance: number;
}

/** Picks a share of rollout ids, unpredictably to the workers (keyed by `secret`); all at 1, none at 0. */
export class VerificationPicker {
  constructor(private readonly secret: Buffer = randomBytes(32)) {}

  picked(rolloutId: string, fraction: number): boolean {
    if (fraction >= 1) return true;
    if (fraction <= 0) return false;
    const h = createHmac('sha256', this.secret).update(rolloutId, 'utf8').digest();
    return h.readUInt32BE(0) / 2 ** 32 < fraction;
  }
}

/**
 * The groups verification rejects. `call` posts to the session (POST /v1/verify-rollouts). Called on every update, also
 * with nothing picked: it carries the refused workers to the session.
 */
export async function verifyRollouts<G extends { rolloutId: string; worker?: string }>(
  groups: readonly G[],
  settings: VerifySettings | undefined,
  refusedWorkers: readonly string[],
  picker: VerificationPicker,
  call: (body: { rollout_ids: string[]; refused_workers: string[]; logprob_tolerance?: number }) => Promise<unknown>,
): Promise<{ rejected: RejectedRollout[]; checked: number; seconds: number }> {
  const picked = settings ? groups.filter((g) => picker.picked(g.rolloutId, settings.fraction)) : [];
  if (!picked.length && !refusedWorkers.length) return { rejected: [], checked: 0, seconds: 0 };
  const answer = verifyAnswerSchema.parse(
    await call({
      rollout_ids: picked.map((g) => g.rolloutId),
      refused_workers: [...refusedWorkers],
      ...(settings ? { logprob_tolerance: settings.logprobTolerance } : {}),
    }),
  );
  const rejected: RejectedRollout[] = [];
  for (const g of picked) {
    const r = answer.rejected[g.rolloutId];
    if (r) rejected.push({ rolloutId: g.rolloutId, worker: g.worker ?? r.worker ?? 'unknown', reason: r.reason as RejectionReason, detail: r.detail });
  }
  return { rejected, checked: answer.checked, seconds: answer.seconds };
}
