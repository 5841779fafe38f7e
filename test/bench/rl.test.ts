/**
 * bench/rl at smoke size (docs/architecture.md §12): `npm run bench:rl` still runs, through the real pieces (grpoRun,
 * a rollout worker, a trainer host running the tiny model), in its simulated mode with few, short steps.
 */
import { runBench } from './run-bench';

test('bench:rl runs end to end and prints its table', async () => {
  const env = {
    BENCH_RL_MODES: 'simulated',
    BENCH_RL_STEPS: '3',
    BENCH_RL_WARMUP: '1',
    BENCH_RL_SECONDS: '0.2',
    BENCH_RL_PROMPTS: '1',
    BENCH_RL_GROUP: '2',
    BENCH_RL_PIN: '0',
    BENCH_RL_PIN_ORCHESTRATOR: '0',
  };
  const run = await runBench('rl', env);
  if (run.code !== 0) throw new Error(`bench exited ${run.code}:\n${run.stderr.slice(-4000)}`);
  expect(run.stdout).toContain('| mode | max_off_policy_steps |');
  for (const k of [0, 1, 2]) expect(run.stdout).toMatch(new RegExp(`^\\| simulated \\| ${k} \\|`, 'm'));
}, 420_000);
