import { backoffMs, planAfterFailure, type RetryInput } from '../../workflows/lifecycle/retry-plan';

const base: RetryInput = {
  failure: 'TRANSIENT',
  retriesUsed: 0,
  maxRetries: 3,
  backendIndex: 0,
  backendCount: 2,
  costUsd: 0,
  maxCostUsd: 10,
  backoff: { initialSeconds: 10, maxSeconds: 600 },
};

test('exponential backoff, capped', () => {
  expect([0, 1, 2, 3, 10].map((n) => backoffMs(n, base.backoff))).toEqual([10_000, 20_000, 40_000, 80_000, 600_000]);
});

test('trainer-side failures retry on the same backend', () => {
  for (const failure of ['TRANSIENT', 'TIMEOUT'] as const) {
    expect(planAfterFailure({ ...base, failure })).toMatchObject({ action: 'retry', backendIndex: 0, delayMs: 10_000 });
  }
});

test('capacity failures fail over to the next backend, wrapping around', () => {
  for (const failure of ['NO_CAPACITY', 'PREEMPTED', 'LOST'] as const) {
    expect(planAfterFailure({ ...base, failure })).toMatchObject({ action: 'retry', backendIndex: 1 });
    expect(planAfterFailure({ ...base, failure, backendIndex: 1 })).toMatchObject({ action: 'retry', backendIndex: 0 });
  }
  expect(planAfterFailure({ ...base, failure: 'LOST', backendCount: 1 })).toMatchObject({ action: 'retry', backendIndex: 0 });
});

test('non-retryable failures abandon at once', () => {
  for (const failure of ['EXIT_CODE', 'REJECTED', 'BUDGET', 'INVALID_SPEC', 'INTERNAL', 'EVAL_ROWS_REFUSED'] as const) {
    expect(planAfterFailure({ ...base, failure })).toMatchObject({ action: 'abandon', failure });
  }
});

test('max_retries and the budget bound the retries', () => {
  expect(planAfterFailure({ ...base, retriesUsed: 3 })).toMatchObject({ action: 'abandon', failure: 'TRANSIENT', reason: 'max_retries (3) used up' });
  expect(planAfterFailure({ ...base, maxRetries: 0 })).toMatchObject({ action: 'abandon' });
  expect(planAfterFailure({ ...base, costUsd: 10 })).toMatchObject({ action: 'abandon', failure: 'BUDGET' });
});
