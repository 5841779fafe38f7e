/**
 * Which HMAC key signs a webhook (results.notifications.webhook): a per-owner or per-target key from `secrets`, so that
 * one owner's receiver cannot forge deliveries to another's, else the shared `secret` (always when `secrets` is empty,
 * only with `shared_fallback: true` otherwise). Read when used: a rotated secret_file needs no restart.
 */
import { readFileSync } from 'node:fs';
import type { NotificationSettings, WebhookSecretRule } from '../common/results-config';
import { OperationError } from '../common/errors';

type WebhookSettings = NotificationSettings['webhook'];

/** The rule for this owner and URL: owner and prefix match, then owner only, then the longest matching prefix. */
export function matchSecretRule(
  rules: readonly WebhookSecretRule[],
  owner: string | null,
  url: string,
): { rule: WebhookSecretRule; index: number } | undefined {
  let best: { rule: WebhookSecretRule; index: number; score: number } | undefined;
  rules.forEach((rule, index) => {
    if (rule.owner !== undefined && rule.owner !== owner) return;
    if (rule.url_prefix !== undefined && !url.startsWith(rule.url_prefix)) return;
    const score = (rule.owner !== undefined ? 1_000_000 : 0) + (rule.url_prefix?.length ?? 0);
    if (!best || score > best.score) best = { rule, index, score };
  });
  return best && { rule: best.rule, index: best.index };
}

/** The key for a webhook to `url` of a job of `owner`; a permanent OperationError that says what to configure. */
export function webhookSecret(w: WebhookSettings, owner: string | null, url: string): string {
  const match = matchSecretRule(w.secrets, owner, url);
  if (match) return readSecret(match.rule, `results.notifications.webhook.secrets[${match.index}]`);
  const fallback = w.shared_fallback ?? w.secrets.length === 0;
  if (fallback && (w.secret !== undefined || w.secret_file !== undefined)) return readSecret(w, 'results.notifications.webhook');
  const who = `owner ${owner ?? '(none)'}, target ${new URL(url).origin}`;
  if (w.secrets.length && !fallback) {
    throw new OperationError(
      `no webhook secret for ${who}: add a rule for it to results.notifications.webhook.secrets, or set shared_fallback: true to sign it with the shared secret; webhooks are only sent signed`,
      true,
    );
  }
  throw new OperationError(`no results.notifications.webhook.secret (or a secrets rule for ${who}) in the operator config: webhooks are only sent signed`, true);
}

function readSecret(s: { secret?: string | undefined; secret_file?: string | undefined }, where: string): string {
  if (s.secret !== undefined) return s.secret;
  try {
    return readFileSync(s.secret_file!, 'utf8').trim();
  } catch (err) {
    throw new OperationError(`cannot read ${where}.secret_file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, true);
  }
}
