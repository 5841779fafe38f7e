/** The grpo worker's RL metrics: each step's trainer idle share lands in a histogram (the dashboard's idle share). */
import { recordRlStep, rlRegistry } from '../../activities/rl/metrics';

const value = (text: string, name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);

test('recordRlStep: steps counted, idle share observed (clamped to [0, 1]); the mean is sum over count', async () => {
  const before = await rlRegistry.metrics();
  const steps0 = value(before, 'forge_rl_steps_total');
  const sum0 = value(before, 'forge_rl_trainer_idle_fraction_sum');
  const count0 = value(before, 'forge_rl_trainer_idle_fraction_count');
  for (const f of [0.25, 0.75, 1.5]) recordRlStep({ trainer_idle_fraction: f });
  const after = await rlRegistry.metrics();
  expect(value(after, 'forge_rl_steps_total') - steps0).toBe(3);
  expect(value(after, 'forge_rl_trainer_idle_fraction_count') - count0).toBe(3);
  expect(value(after, 'forge_rl_trainer_idle_fraction_sum') - sum0).toBeCloseTo(2);
  expect(after).toMatch(/^forge_rl_trainer_idle_fraction_bucket\{le="0\.3"\} [1-9]/m);
});
