/**
 * No secret in any workflow history: every committed replay history (test/histories) is scanned for token-shaped
 * values under secret-sounding names inside its payloads. The histories the suite records live are scanned too: by
 * the RL tests (their session key and tokens, test/rl/rl-job.test.ts) and, for every workflow of the run, by the
 * global teardown (test/setup/global-teardown.ts).
 */
import { createHash } from 'node:crypto';
import { committedHistories, scanHistory } from '../helpers/history-secrets';

function payload(value: unknown): { metadata: { encoding: string }; data: string } {
  return { metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from(JSON.stringify(value)).toString('base64') };
}

function history(...payloads: unknown[]): string {
  return JSON.stringify({
    events: payloads.map((p, i) => ({ eventId: String(i + 1), activityTaskScheduledEventAttributes: { input: { payloads: [payload(p)] } } })),
  });
}

test('a token-shaped value under a secret-sounding name inside a payload is found', () => {
  const token = 'q3v_1yq0cKq2uC7wN0H3l5VxZ2rS9dJfA8bE4mT6pGk';
  const found = scanHistory(history({ trainer: { baseUrl: 'http://h:1', token } }));
  expect(found.map((f) => f.at)).toEqual(['$.events[0].activityTaskScheduledEventAttributes.input.payloads[0].trainer.token']);
  for (const name of ['secret', 'webhookSecret', 'api_key', 'apiKey', 'privateKey', 'password', 'FORGE_AGENT_TOKEN']) {
    expect(scanHistory(history({ [name]: 'a'.repeat(40) }))).toHaveLength(1);
  }
});

test('hashes, ids, public keys and short values are not findings', () => {
  const sha = createHash('sha256').update('x').digest('hex');
  const clean = history({
    sha256: sha,
    sessionId: 'job-a-grpo-1.g1.0123abcd',
    rolloutId: 'job-a-grpo-1.s1.p0.v0.0123456789abcdef0123',
    publicKey: 'a'.repeat(44),
    token: 'short',
    owner: 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK',
  });
  expect(scanHistory(clean)).toEqual([]);
});

test('a configured secret is found anywhere, inside encoded payloads too', () => {
  const secret = 'operator-webhook-secret-0123456789';
  expect(scanHistory(history({ note: `sent with ${secret}` }), [secret])).toHaveLength(1);
  expect(scanHistory(JSON.stringify({ events: [{ identity: secret }] }), [secret])).toHaveLength(1);
  expect(scanHistory(history({ note: 'nothing here' }), [secret])).toEqual([]);
});

test('no committed history holds a secret', () => {
  const histories = committedHistories();
  expect(histories.length).toBeGreaterThanOrEqual(10);
  const found = histories.flatMap((h) => scanHistory(h.text).map((f) => `${h.file}: ${f.at}: ${f.why}`));
  expect(found).toEqual([]);
});
