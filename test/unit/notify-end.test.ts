/** Which end tells which target (workflows/lifecycle/notify-end.ts): every terminal state, CANCELLED included. */
import { notificationFor } from '../../workflows/lifecycle/notify-end';

const all = { on_complete: 'nostr:c', on_failure: 'nostr:f', on_cancel: 'nostr:x' };

test('COMPLETED → on_complete, ABANDONED → on_failure, CANCELLED → on_cancel, else on_failure', () => {
  expect(notificationFor('COMPLETED', all)).toEqual(['job.completed', 'nostr:c']);
  expect(notificationFor('ABANDONED', all)).toEqual(['job.failed', 'nostr:f']);
  expect(notificationFor('CANCELLED', all)).toEqual(['job.cancelled', 'nostr:x']);
  expect(notificationFor('CANCELLED', { on_failure: 'nostr:f' })).toEqual(['job.cancelled', 'nostr:f']);
});

test('no target, or a state that is no end: nobody is told', () => {
  expect(notificationFor('CANCELLED', { on_complete: 'nostr:c' })).toBeUndefined();
  expect(notificationFor('COMPLETED', undefined)).toBeUndefined();
  expect(notificationFor('RUNNING', all)).toBeUndefined();
});
