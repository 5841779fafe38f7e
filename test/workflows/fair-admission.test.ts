/**
 * Per-owner fairness of admission through the real workflow (issue 8): a backend that runs one attempt at a time,
 * owner A queues six jobs, then owner B queues two. B's jobs are not served after all of A's: free slots alternate
 * between the waiting owners.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPair } from '../../jobspec/signing';
import type { JobStatus } from '../../workflows/messages';
import { makeSignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, startJob, tempDir, testConfig, useForge, waitForStatus } from '../helpers/forge';

const TQ = 'test-fair-admission';
const home = tempDir('forge-fair-');
const release = path.join(home, 'release');
const config = testConfig({ local: { max_concurrent: 1, trainers: { hold: fakeTrainer('wait-file', 0, release), ok: fakeTrainer('ok', 0.6) } } }, path.join(home, 'starts.log'));
const forge = useForge(config, home, TQ);

test('one slot, owner A queues 6 jobs before owner B queues 2: B is served second and fourth, not after A', async () => {
  const [a, b] = [generateKeyPair(), generateKeyPair()];
  // A's first job holds the only slot until everything else queues behind it (the test releases it, whatever the load).
  const aSpecs = Array.from({ length: 6 }, (_, i) => makeSignedSpec({ trainer: { image: i === 0 ? 'hold' : 'ok' } }, a));
  const bSpecs = Array.from({ length: 2 }, () => makeSignedSpec({ trainer: { image: 'ok' } }, b));
  // A's first job takes the slot before the others start (else one of them may be admitted first), then the rest of
  // A's queue up before B arrives.
  const handles = [await startJob(forge.client, TQ, aSpecs[0]!)];
  await waitForStatus(handles[0]!, (s) => s.state === 'RUNNING');
  for (const s of aSpecs.slice(1)) handles.push(await startJob(forge.client, TQ, s));
  await Promise.all(handles.slice(1).map((h) => waitForStatus(h, (s) => s.state !== 'CREATED')));
  await Promise.all(handles.slice(1).map((h) => waitForStatus(h, (s) => s.state === 'QUEUED')));
  for (const s of bSpecs) handles.push(await startJob(forge.client, TQ, s));
  await Promise.all(handles.slice(6).map((h) => waitForStatus(h, (s) => s.state === 'QUEUED')));
  writeFileSync(release, '');
  const results = (await Promise.all(handles.map((h) => h.result()))) as JobStatus[];
  expect(results.every((r) => r.state === 'COMPLETED')).toBe(true);
  const submittedAt = (r: JobStatus): number => Date.parse(r.transitions.find((t) => t.state === 'SUBMITTED')!.at);
  const order = results
    .map((r, i) => ({ owner: i < 6 ? 'A' : 'B', at: submittedAt(r) }))
    .sort((x, y) => x.at - y.at)
    .map((x) => x.owner)
    .join('');
  // Round robin from the moment B waits: A (running), then B, A, B, then the rest of A.
  expect(order).toBe('ABABAAAA');
}, 120_000);
