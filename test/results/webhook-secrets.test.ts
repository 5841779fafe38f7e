/**
 * Webhook secrets per owner or per target: two owners' webhooks are signed with different keys (each checked by its
 * own HTTPS receiver), an owner without a key gets no webhook unless the shared fallback is configured.
 */
import { promises as fs, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createNotifyActivities, type NotificationPayload } from '../../activities/notify';
import { matchSecretRule } from '../../activities/webhook-secret';
import { resultsConfigSchema } from '../../common/results-config';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/results';

const OWNER_A = 'did:key:z6MkownerAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const OWNER_B = 'did:key:z6MkownerBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB';
const OWNER_C = 'did:key:z6MkownerCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC';
const SECRET_A = 'secret-of-owner-a-0123456789abcdef';
const SECRET_B = 'secret-of-owner-b-0123456789abcdef';
const SHARED = 'the-shared-secret-0123456789abcdef';

let dir: string;
let a: WebhookReceiver;
let b: WebhookReceiver;
let shared: WebhookReceiver;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'forge-webhook-secrets-'));
  [a, b, shared] = await Promise.all([
    startWebhookReceiver(path.join(dir, 'a'), SECRET_A),
    startWebhookReceiver(path.join(dir, 'b'), SECRET_B),
    startWebhookReceiver(path.join(dir, 's'), SHARED),
  ]);
});

afterAll(async () => {
  await Promise.all([a, b, shared].map((r) => r?.close()));
  await fs.rm(dir, { recursive: true, force: true });
});

function payload(owner: string, jobId: string): NotificationPayload {
  return {
    event: 'job.completed',
    job_id: jobId,
    job_type: 'finetune',
    owner_did: owner,
    state: 'COMPLETED',
    reason: 'done',
    at: new Date(0).toISOString(),
    artifacts: null,
    evals: [],
    last_error: null,
  };
}

/** All three receivers use one self-signed CA each: trust them all. */
function notifier(webhook: Record<string, unknown>) {
  const ca = path.join(dir, 'ca.pem');
  writeFileSync(ca, ['a', 'b', 's'].map((d) => readFileSync(path.join(dir, d, 'cert.pem'), 'utf8')).join('\n'));
  const settings = resultsConfigSchema.parse({ notifications: { webhook: { ca_file: ca, timeout_ms: 5000, ...webhook } } }).notifications;
  return createNotifyActivities({ settings, defaultNostrKeyFile: path.join(dir, 'nostr.json') });
}

test('two owners: each webhook is signed with its owner\'s own secret (value or file); one owner\'s key does not sign the other\'s', async () => {
  const fileB = path.join(dir, 'secret-b');
  writeFileSync(fileB, `${SECRET_B}\n`, { mode: 0o600 });
  const n = notifier({ secret: SHARED, secrets: [{ owner: OWNER_A, secret: SECRET_A }, { owner: OWNER_B, secret_file: fileB }] });

  await expect(n.notify({ target: `${a.url}/hook`, payload: payload(OWNER_A, 'job-a') })).resolves.toEqual({ delivered_to: [expect.stringContaining('HTTP 204')] });
  await expect(n.notify({ target: `${b.url}/hook`, payload: payload(OWNER_B, 'job-b') })).resolves.toEqual({ delivered_to: [expect.stringContaining('HTTP 204')] });
  expect(a.deliveries.find((d) => d.body.includes('job-a'))?.signed).toBe(true);
  expect(b.deliveries.find((d) => d.body.includes('job-b'))?.signed).toBe(true);

  // Owner A's job pointed at B's receiver: signed with A's key, which B's receiver does not accept.
  await expect(n.notify({ target: `${b.url}/hook`, payload: payload(OWNER_A, 'job-a-at-b') })).rejects.toThrow(/HTTP 401/);
  expect(b.deliveries.find((d) => d.body.includes('job-a-at-b'))?.signed).toBe(false);
  const sigA = a.deliveries.find((d) => d.body.includes('job-a'))!.headers['x-forge-signature-256'];
  const sigB = b.deliveries.find((d) => d.body.includes('job-b'))!.headers['x-forge-signature-256'];
  expect(sigA).not.toEqual(sigB);
});

test('an owner with no rule: not sent (permanent, naming the setting) unless shared_fallback is set', async () => {
  const strict = notifier({ secret: SHARED, secrets: [{ owner: OWNER_A, secret: SECRET_A }] });
  const refused = await strict.notify({ target: `${shared.url}/hook`, payload: payload(OWNER_C, 'job-c') }).catch((e: unknown) => e);
  expect(refused).toMatchObject({ name: 'DeliveryError', permanent: true });
  expect(String((refused as Error).message)).toMatch(/no webhook secret for owner did:key:z6MkownerC.*results\.notifications\.webhook\.secrets.*shared_fallback/);
  expect(shared.deliveries.some((d) => d.body.includes('job-c'))).toBe(false);

  const lenient = notifier({ secret: SHARED, secrets: [{ owner: OWNER_A, secret: SECRET_A }], shared_fallback: true });
  await lenient.notify({ target: `${shared.url}/hook`, payload: payload(OWNER_C, 'job-c2') });
  expect(shared.deliveries.find((d) => d.body.includes('job-c2'))?.signed).toBe(true);
});

test('per target: a url_prefix rule signs every owner\'s webhooks to that receiver', async () => {
  const n = notifier({ secrets: [{ url_prefix: `${b.url}/`, secret: SECRET_B }] });
  await n.notify({ target: `${b.url}/x`, payload: payload(OWNER_C, 'job-c-at-b') });
  expect(b.deliveries.find((d) => d.body.includes('job-c-at-b'))?.signed).toBe(true);
});

test('the most specific rule wins: owner and prefix, then owner, then the longest prefix', () => {
  const rules = [
    { url_prefix: 'https://h/', secret: '1' },
    { url_prefix: 'https://h/deep/', secret: '2' },
    { owner: OWNER_A, secret: '3' },
    { owner: OWNER_A, url_prefix: 'https://h/', secret: '4' },
  ];
  expect(matchSecretRule(rules, OWNER_A, 'https://h/deep/x')?.rule.secret).toBe('4');
  expect(matchSecretRule(rules, OWNER_A, 'https://other/')?.rule.secret).toBe('3');
  expect(matchSecretRule(rules, OWNER_B, 'https://h/deep/x')?.rule.secret).toBe('2');
  expect(matchSecretRule(rules, OWNER_B, 'https://other/')).toBeUndefined();
});

test('the operator config refuses a rule with neither owner nor url_prefix, or with both secret and secret_file', () => {
  expect(resultsConfigSchema.safeParse({ notifications: { webhook: { secrets: [{ secret: 'x' }] } } }).success).toBe(false);
  expect(resultsConfigSchema.safeParse({ notifications: { webhook: { secrets: [{ owner: OWNER_A, secret: 'x', secret_file: '/f' }] } } }).success).toBe(false);
});
