/** typedFailure (jobspec/failure.ts): the one place that reads a failure class out of an ApplicationFailure. */
import { ApplicationFailure } from '@temporalio/common';
import { isFailureClass, typedFailure } from '../../jobspec/failure';
import { HttpStatusError, isTransientError, NetworkError } from '../../activities/backends/remote/remote-http';

test('an ApplicationFailure typed with one of our classes is that failure', () => {
  const err = ApplicationFailure.create({ message: 'no GPU left', type: 'NO_CAPACITY', nonRetryable: true });
  expect(typedFailure(err)).toEqual({ class: 'NO_CAPACITY', detail: 'no GPU left' });
});

test('anything else is not: another type, no type, a plain error, a non-error', () => {
  expect(typedFailure(ApplicationFailure.create({ message: 'x', type: 'RL_SESSION_LOST' }))).toBeUndefined();
  expect(typedFailure(ApplicationFailure.create({ message: 'x' }))).toBeUndefined();
  expect(typedFailure(Object.assign(new Error('x'), { type: 'LOST' }))).toBeUndefined();
  expect(typedFailure('LOST')).toBeUndefined();
  expect(isFailureClass('toString')).toBe(false);
  expect(isFailureClass(undefined)).toBe(false);
});

test('transient backend errors (network, 429, 5xx, a struggling disk) are told apart from refusals', () => {
  const fsError = (code: string) => Object.assign(new Error(code), { code });
  for (const err of [new NetworkError('ECONNREFUSED', 'x'), new NetworkError('TIMEOUT', 'x'), new HttpStatusError(503, 'x'), new HttpStatusError(429, 'x'), new HttpStatusError(500, 'x'), fsError('EIO'), fsError('ENOSPC')]) {
    expect(isTransientError(err)).toBe(true);
  }
  for (const err of [new NetworkError('ECERTPIN', 'x'), new HttpStatusError(404, 'x'), new HttpStatusError(401, 'x'), fsError('ENOENT'), new Error('bug'), 'ECONNREFUSED']) {
    expect(isTransientError(err)).toBe(false);
  }
});
