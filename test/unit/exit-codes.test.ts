/** Exit statuses → failure classes (jobspec/failure.ts): the trainer contract, and a trainer killed from outside. */
import { classifyExitCode, isRetryable } from '../../jobspec/failure';

test.each([
  [0, undefined],
  [75, 'TRANSIENT'],
  [1, 'EXIT_CODE'],
  [3, 'EXIT_CODE'],
  [134, 'EXIT_CODE'], // SIGABRT: the trainer crashed itself
  [139, 'EXIT_CODE'], // SIGSEGV
  [137, 'PREEMPTED'], // SIGKILL from outside: OOM killer, kill -9, a reclaimed host
  [143, 'PREEMPTED'], // SIGTERM not trapped
])('exit %i → %s', (code, cls) => {
  expect(classifyExitCode(code)).toBe(cls);
  if (cls === 'PREEMPTED') expect(isRetryable(cls)).toBe(true);
});
