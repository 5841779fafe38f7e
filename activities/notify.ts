/**
 * Notifications of a job's end (`notifications.on_complete` / `on_failure` / `on_cancel` of the spec, chosen in
 * workflows/lifecycle/notify-end.ts):
 *
 * - `nostr:npub1…`: a Nostr text note (kind 1) signed by the orchestrator's Nostr key (`nostr-tools`), tagging that
 *   key (`p`), published to the operator's relays. Delivered when at least one relay accepts it. Its `created_at` is
 *   the time of the job's final transition, so a retried delivery publishes the very same event (same id), which
 *   relays store once.
 * - `https://…`: a JSON POST with `X-Forge-Signature-256: sha256=<hex HMAC-SHA256 of the body>` (the operator's
 *   webhook secret of the job's owner or of that target, activities/webhook-secret.ts), `X-Forge-Event` and
 *   `X-Forge-Delivery` (stable across retries, for de-duplication).
 *
 * A failed delivery throws; Temporal retries it (results.notifications.retry) and the workflow records the outcome.
 * It never changes the job's state.
 */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { finalizeEvent, getPublicKey, generateSecretKey, nip19, type VerifiedEvent } from 'nostr-tools';
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay';
import WebSocket from 'ws';
import { z } from 'zod';
import { loadOrCreateJsonSecret } from '../common/secret-file';
import type { NotificationSettings } from '../common/results-config';
import { OperationError } from '../common/errors';
import { webhookSecret } from './webhook-secret';

useWebSocketImplementation(WebSocket);

export type NotificationEvent = 'job.completed' | 'job.failed' | 'job.cancelled';

export interface NotificationPayload {
  event: NotificationEvent;
  job_id: string;
  job_type: string | null;
  owner_did: string | null;
  state: string;
  reason: string;
  /** Time of the final transition. */
  at: string;
  artifacts: { repo: string; branch: string; commit: string } | null;
  evals: { task_type: string; success_rate: number; promoted: boolean | null }[];
  last_error: { class: string; detail: string } | null;
}

export interface NotifyInput {
  target: string;
  payload: NotificationPayload;
}

export interface NotifyResult {
  /** Relays that accepted the event, or the webhook's host and HTTP status. */
  delivered_to: string[];
}

/** A target the orchestrator can never deliver to: not retried. */
export class NotifyTargetError extends Error {
  override name = 'NotifyTargetError';
}

export class DeliveryError extends OperationError {
  override name = 'DeliveryError';
}

export type NotifyTarget = { kind: 'nostr'; pubkey: string; npub: string } | { kind: 'webhook'; url: URL };

export function parseNotifyTarget(target: string): NotifyTarget {
  if (target.startsWith('nostr:')) {
    const npub = target.slice('nostr:'.length);
    let decoded: ReturnType<typeof nip19.decode>;
    try {
      decoded = nip19.decode(npub);
    } catch {
      throw new NotifyTargetError(`${target}: not a valid npub`);
    }
    if (decoded.type !== 'npub') throw new NotifyTargetError(`${target}: a ${decoded.type}, not an npub`);
    return { kind: 'nostr', pubkey: decoded.data, npub };
  }
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new NotifyTargetError(`${target}: neither nostr:npub1… nor an https:// URL`);
  }
  if (url.protocol !== 'https:') throw new NotifyTargetError(`${url.protocol}// notifications are not sent: use https:// or nostr:npub1…`);
  if (url.username || url.password) throw new NotifyTargetError('webhook URLs must not carry credentials');
  return { kind: 'webhook', url };
}

export function notificationText(p: NotificationPayload): string {
  const head = `Chrysalis Forge: ${p.job_type ?? 'job'} job ${p.job_id} ${p.state}`;
  const art = p.artifacts ? `\nartifacts: ${p.artifacts.repo} ${p.artifacts.branch} @ ${p.artifacts.commit.slice(0, 12)}` : '';
  const evals = p.evals.map((e) => `\n${e.task_type}: ${(e.success_rate * 100).toFixed(1)}%${e.promoted ? ' (new elite)' : ''}`).join('');
  const err = p.last_error && p.state !== 'COMPLETED' ? `\n${p.last_error.class}: ${p.last_error.detail}` : '';
  return `${head}\n${p.reason}${art}${evals}${err}`;
}

// ---- nostr ---------------------------------------------------------------------------------------------------------

const nostrKeySchema = z.strictObject({ secret_key_hex: z.string().regex(/^[0-9a-f]{64}$/) });

export function nostrEvent(p: NotificationPayload, recipientHex: string, secretKey: Uint8Array): VerifiedEvent {
  return finalizeEvent(
    {
      kind: 1,
      created_at: Math.floor(Date.parse(p.at) / 1000),
      tags: [
        ['p', recipientHex],
        ['t', 'chrysalis-forge'],
        ['forge_job', p.job_id],
        ['forge_state', p.state],
      ],
      content: notificationText(p),
    },
    secretKey,
  );
}

async function publishTo(url: string, event: VerifiedEvent, timeoutMs: number): Promise<void> {
  const relay = await Relay.connect(url, { timeout: timeoutMs });
  try {
    relay.publishTimeout = timeoutMs;
    await relay.publish(event);
  } finally {
    relay.close();
  }
}

// ---- webhooks ------------------------------------------------------------------------------------------------------

export const SIGNATURE_HEADER = 'x-forge-signature-256';

export function webhookSignature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

function post(url: URL, body: string, headers: Record<string, string>, ca: string | undefined, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: timeoutMs, ...(ca ? { ca } : {}) }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// ---- the activity ---------------------------------------------------------------------------------------------------

export interface NotifyDeps {
  settings: NotificationSettings;
  /** Where the orchestrator's Nostr key lives when the config names none. */
  defaultNostrKeyFile: string;
}

export function createNotifyActivities(deps: NotifyDeps) {
  const { settings } = deps;

  function nostrSecret(): Uint8Array {
    const file = settings.nostr.secret_key_file ?? deps.defaultNostrKeyFile;
    const stored = loadOrCreateJsonSecret(file, nostrKeySchema, () => ({ secret_key_hex: Buffer.from(generateSecretKey()).toString('hex') }));
    return Uint8Array.from(Buffer.from(stored.secret_key_hex, 'hex'));
  }

  /** The owner's or target's own key, or the shared one (activities/webhook-secret.ts); none: not retried. */
  function secretFor(owner: string | null, url: URL): string {
    try {
      return webhookSecret(settings.webhook, owner, url.href);
    } catch (err) {
      throw new DeliveryError((err as Error).message, true);
    }
  }

  return {
    /** The orchestrator's Nostr public key (npub), made on first use. */
    nostrIdentity(): string {
      return nip19.npubEncode(getPublicKey(nostrSecret()));
    },

    async notify(input: NotifyInput): Promise<NotifyResult> {
      const target = parseNotifyTarget(input.target);
      const p = input.payload;
      if (target.kind === 'nostr') {
        const relays = settings.nostr.relays;
        if (relays.length === 0) throw new DeliveryError('no results.notifications.nostr.relays in the operator config', true);
        const event = nostrEvent(p, target.pubkey, nostrSecret());
        const outcomes = await Promise.allSettled(relays.map((r) => publishTo(r, event, settings.nostr.timeout_ms)));
        const delivered = relays.filter((_, i) => outcomes[i]!.status === 'fulfilled');
        if (delivered.length === 0) {
          const why = outcomes.map((o, i) => `${relays[i]}: ${o.status === 'rejected' ? String((o.reason as Error)?.message ?? o.reason) : 'ok'}`);
          throw new DeliveryError(`no relay accepted event ${event.id}: ${why.join('; ')}`);
        }
        return { delivered_to: delivered };
      }
      const allowed = settings.webhook.allowed_hosts;
      if (allowed && !allowed.includes(target.url.hostname)) {
        throw new NotifyTargetError(`webhook host ${target.url.hostname} is not in results.notifications.webhook.allowed_hosts`);
      }
      const body = JSON.stringify(p);
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'chrysalis-forge-orchestrator',
        'x-forge-event': p.event,
        'x-forge-delivery': `${p.job_id}:${p.event}`,
        [SIGNATURE_HEADER]: webhookSignature(secretFor(p.owner_did, target.url), body),
      };
      const ca = settings.webhook.ca_file ? readFileSync(settings.webhook.ca_file, 'utf8') : undefined;
      let status: number;
      try {
        status = await post(target.url, body, headers, ca, settings.webhook.timeout_ms);
      } catch (err) {
        throw new DeliveryError(`webhook ${target.url.origin}: ${(err as Error).message}`);
      }
      if (status >= 200 && status < 300) return { delivered_to: [`${target.url.origin} (HTTP ${status})`] };
      // The receiver refuses this delivery for good (4xx), or may take it later (5xx, 408, 429).
      const permanent = status >= 400 && status < 500 && status !== 408 && status !== 429;
      throw new DeliveryError(`webhook ${target.url.origin} answered HTTP ${status}`, permanent);
    },
  };
}

export type NotifyActivities = ReturnType<typeof createNotifyActivities>;
