import { VerificationPicker, verifyRollouts } from '../../activities/rl/verify';
import { rlConfigSchema, rlSettings } from '../../common/rl-config';
import { REJECTION } from '../../common/rl-rejections';

test('rl.verify_fraction: default 0.25, within [0, 1]; the tolerance positive; both reach the workflow settings', () => {
  const c = rlConfigSchema.parse({});
  expect([c.verify_fraction, c.verify_logprob_tolerance]).toEqual([0.25, 0.05]);
  const settings = rlSettings(rlConfigSchema.parse({ verify_fraction: 1, verify_logprob_tolerance: 0.2 }));
  expect(settings).toMatchObject({ verifyFraction: 1, verifyLogprobTolerance: 0.2 });
  for (const bad of [{ verify_fraction: 1.5 }, { verify_fraction: -0.1 }, { verify_logprob_tolerance: 0 }]) {
    const r = rlConfigSchema.safeParse(bad);
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path[0]).toBe(Object.keys(bad)[0]);
  }
});

test('the pick: all at 1, none at 0, about the fraction in between, and not the same under another secret', () => {
  const ids = Array.from({ length: 4000 }, (_, i) => `run.s${i >> 3}.p${i & 7}.v0.x`);
  const a = new VerificationPicker(Buffer.alloc(32, 1));
  const b = new VerificationPicker(Buffer.alloc(32, 2));
  expect(ids.every((id) => a.picked(id, 1))).toBe(true);
  expect(ids.some((id) => a.picked(id, 0))).toBe(false);
  const share = ids.filter((id) => a.picked(id, 0.25)).length / ids.length;
  expect(share).toBeGreaterThan(0.2);
  expect(share).toBeLessThan(0.3);
  expect(ids.filter((id) => a.picked(id, 0.25) !== b.picked(id, 0.25)).length).toBeGreaterThan(0);
});

test("the session's answer becomes rejections of the picked groups; refused workers are sent even with nothing picked", async () => {
  const groups = [{ rolloutId: 'g1', worker: 'w1' }, { rolloutId: 'g2', worker: 'w2' }, { rolloutId: 'g3' }];
  const sent: unknown[] = [];
  const out = await verifyRollouts(groups, { fraction: 1, logprobTolerance: 0.05 }, ['w9'], new VerificationPicker(), async (body) => {
    sent.push(body);
    return {
      rejected: {
        g2: { reason: REJECTION.TOPLOC_MISMATCH, detail: 'proof 0: 40 exponent mismatches', worker: 'w2' },
        g3: { reason: REJECTION.LOGPROB_MISMATCH, detail: 'token 3', worker: 'w3' },
      },
      checked: 3,
      seconds: 0.5,
    };
  });
  expect(sent).toEqual([{ rollout_ids: ['g1', 'g2', 'g3'], refused_workers: ['w9'], logprob_tolerance: 0.05 }]);
  expect(out.rejected).toEqual([
    { rolloutId: 'g2', worker: 'w2', reason: 'toploc-mismatch', detail: 'proof 0: 40 exponent mismatches' },
    { rolloutId: 'g3', worker: 'w3', reason: 'logprob-mismatch', detail: 'token 3' },
  ]);
  expect(out).toMatchObject({ checked: 3, seconds: 0.5 });
  // Nothing picked, nobody refused: no call. Only refused workers: a call with no rollout.
  const calls: unknown[] = [];
  const answer = async (b: (typeof calls)[number]) => (calls.push(b), { rejected: {}, checked: 0, seconds: 0 });
  await verifyRollouts(groups, { fraction: 0, logprobTolerance: 0.05 }, [], new VerificationPicker(), answer);
  expect(calls).toEqual([]);
  await verifyRollouts(groups, undefined, ['w1'], new VerificationPicker(), async (b) => (calls.push(b), { rejected: {}, checked: 0, seconds: 0 }));
  expect(calls).toEqual([{ rollout_ids: [], refused_workers: ['w1'] }]);
  // An answer of another shape is refused (zod at the boundary).
  await expect(verifyRollouts(groups, { fraction: 1, logprobTolerance: 0.05 }, [], new VerificationPicker(), async () => ({ rejected: { g1: { reason: 'made-up' } } }))).rejects.toThrow();
});
