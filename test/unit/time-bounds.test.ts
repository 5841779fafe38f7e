import { followLimitSeconds, isoAfter, MAX_TIMEOUT_SECONDS } from '../../workflows/lifecycle/time-bounds';

test('isoAfter never throws, whatever max_hours a spec or an old history carries', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  expect(isoAfter(now, 2)).toBe('2026-01-01T02:00:00.000Z');
  // `new Date(now + 1e10 * 3600e3).toISOString()` throws RangeError: Invalid time value.
  expect(() => new Date(now + 1e10 * 3600e3).toISOString()).toThrow(RangeError);
  expect(isoAfter(now, 1e10)).toBe('+275760-09-13T00:00:00.000Z');
  expect(isoAfter(now, Infinity)).toBe('+275760-09-13T00:00:00.000Z');
  expect(isoAfter(now, -Infinity)).toBe('-271821-04-20T00:00:00.000Z');
  expect(isoAfter(now, Number.NaN)).toBe('2026-01-01T00:00:00.000Z');
});

test('the follow limit stays between an hour and 100 years', () => {
  expect(followLimitSeconds(2)).toBe(3 * 3600);
  expect(followLimitSeconds(undefined)).toBe(365 * 24 * 3600 + 3600);
  expect(followLimitSeconds(1e10)).toBe(MAX_TIMEOUT_SECONDS);
  expect(followLimitSeconds(Infinity)).toBe(MAX_TIMEOUT_SECONDS);
  expect(followLimitSeconds(Number.NaN)).toBe(365 * 24 * 3600 + 3600);
  expect(followLimitSeconds(-5)).toBe(3600);
});
