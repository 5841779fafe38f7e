import { generateKeyPair } from '../../jobspec/signing';
import { jobPriority } from '../../common/job-priority';

test("an owner's did:key is its fairness key; a key over Temporal's 64 bytes is left out", () => {
  const { did } = generateKeyPair();
  expect(jobPriority(did)).toEqual({ fairnessKey: did });
  expect(jobPriority(`did:key:${'z'.repeat(60)}`)).toEqual({});
});
