import { canTransition, isTerminal, JOB_STATES, type JobState } from '../../workflows/lifecycle/states';

test('the edges of docs/architecture.md §4', () => {
  const allowed = JOB_STATES.flatMap((from) => JOB_STATES.filter((to) => canTransition(from, to)).map((to) => `${from}→${to}`));
  expect(allowed.sort()).toEqual(
    [
      'CREATED→QUEUED', 'CREATED→EVALUATING', 'CREATED→ABANDONED', 'CREATED→CANCELLED',
      'QUEUED→SUBMITTED', 'QUEUED→FAILED', 'QUEUED→ABANDONED', 'QUEUED→CANCELLED',
      'SUBMITTED→RUNNING', 'SUBMITTED→FAILED', 'SUBMITTED→CANCELLED',
      'RUNNING→EVALUATING', 'RUNNING→COMPLETED', 'RUNNING→FAILED', 'RUNNING→CANCELLED',
      'EVALUATING→COMPLETED', 'EVALUATING→FAILED', 'EVALUATING→CANCELLED',
      'FAILED→RETRY', 'FAILED→ABANDONED', 'FAILED→CANCELLED',
      'RETRY→SUBMITTED', 'RETRY→FAILED', 'RETRY→ABANDONED', 'RETRY→CANCELLED',
    ].sort(),
  );
});

test('terminal states have no way out, not even to CANCELLED', () => {
  const terminal: JobState[] = ['COMPLETED', 'ABANDONED', 'CANCELLED'];
  for (const s of JOB_STATES) expect(isTerminal(s)).toBe(terminal.includes(s));
  for (const from of terminal) for (const to of JOB_STATES) expect(canTransition(from, to)).toBe(false);
});
