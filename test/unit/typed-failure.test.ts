/** typedFailure (spec/failure.ts): the one place that reads a failure class out of an ApplicationFailure. */
import { ApplicationFailure } from '@temporalio/common';
import { isFailureClass, typedFailure } from '../../spec/failure';

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
