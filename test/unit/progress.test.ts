import { progressDecile } from '../../jobspec/progress';

test('progress deciles: unknown, 0..10, clamped', () => {
  expect(progressDecile(undefined)).toBe(-1);
  expect(progressDecile({ step: 5 })).toBe(-1);
  expect(progressDecile({ step: 0, maxSteps: 100 })).toBe(0);
  expect(progressDecile({ step: 9, maxSteps: 100 })).toBe(0);
  expect(progressDecile({ step: 10, maxSteps: 100 })).toBe(1);
  expect(progressDecile({ step: 55, maxSteps: 100 })).toBe(5);
  expect(progressDecile({ step: 100, maxSteps: 100 })).toBe(10);
  expect(progressDecile({ step: 250, maxSteps: 100 })).toBe(10);
});
