/**
 * The two kinds of `notifications.on_complete` / `on_failure` target: `nostr:npub1…` and `https://…`.
 * Pure: the workflow shows targets in the status with it, the notify activity parses them fully (npub decoding).
 */
export type NotificationTargetKind = 'nostr' | 'webhook';

export function notificationTargetKind(target: string): NotificationTargetKind | undefined {
  if (/^nostr:npub1[02-9ac-hj-np-z]+$/.test(target)) return 'nostr';
  if (/^https:\/\/[^/?#@\s]+([/?#]\S*)?$/.test(target)) return 'webhook';
  return undefined;
}

/** How a target shows in a job's status: an npub as is, a webhook by its origin only (paths often hold tokens). */
export function describeNotificationTarget(target: string): string {
  if (notificationTargetKind(target) === 'nostr') return target;
  const origin = /^(https:\/\/[^/?#@\s]+)/.exec(target)?.[1];
  return origin ? `${origin}/…` : `(invalid target ${JSON.stringify(target.slice(0, 24))})`;
}
