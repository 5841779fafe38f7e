import { compactStatus } from '../../workflows/lifecycle/carry';
import type { DeploymentRecord, JobStatus, TransitionRecord } from '../../workflows/messages';

function status(attempts: number): JobStatus {
  const at = '2026-01-01T00:00:00.000Z';
  const t = (state: TransitionRecord['state'], attempt: number): TransitionRecord => ({ state, at, reason: `${state} ${attempt}`, attempt, backend: 'local' });
  const transitions = [t('CREATED', 0), t('QUEUED', 0)];
  const deployments: DeploymentRecord[] = [];
  for (let a = 1; a <= attempts; a++) {
    transitions.push(t('SUBMITTED', a), t('FAILED', a), t('RETRY', a));
    const ref = { backend: 'local', kind: 'local', id: `d${a}`, jobId: 'j', attempt: a, submittedAt: at, data: {} };
    deployments.push({ attempt: a, backend: 'local', id: `d${a}`, state: 'FAILED', cost_usd: 0.5, exit_code: 75, submitted_at: at, closed: a !== 3, progress: null, ref });
  }
  const errors = Array.from({ length: attempts }, (_, i) => ({ class: 'TRANSIENT' as const, detail: 'exit 75', attempt: i + 1, backend: 'local', at }));
  return {
    job_id: 'j', job_type: 'finetune', owner_did: null, state: 'RETRY', attempt: attempts, backend: 'local', transitions,
    cost_usd: attempts * 0.5, deployments, last_error: errors.at(-1) ?? null, errors, artifacts: null, evals: [], notifications: [],
  };
}

test('a status within the limits is carried as it is', () => {
  const s = status(10);
  expect(compactStatus(s)).toBe(s);
});

test('past the limits the oldest entries are left out and counted; open deployments and the cost stay', () => {
  const s = status(20);
  const c = compactStatus(s, { transitions: 10, errors: 5, deployments: 4 });
  expect(c.transitions).toHaveLength(10);
  expect(c.transitions.slice(0, 3).map((t) => t.reason)).toEqual(['CREATED 0', 'QUEUED 0', 'SUBMITTED 1']);
  expect(c.transitions.at(-1)).toEqual(s.transitions.at(-1));
  expect(c.errors.map((e) => e.attempt)).toEqual([16, 17, 18, 19, 20]);
  // d3 is not closed (close pending): never left out.
  expect(c.deployments.map((d) => d.id)).toEqual(['d3', 'd18', 'd19', 'd20']);
  expect(c.dropped).toEqual({ transitions: s.transitions.length - 10, errors: 15, deployments: 16, cost_usd: 8 });
  expect(c.cost_usd).toBe(s.cost_usd);
  // A second compaction adds to the counts.
  const again = compactStatus({ ...c, errors: [...c.errors, ...c.errors] }, { transitions: 10, errors: 5, deployments: 4 });
  expect(again.dropped?.errors).toBe(20);
});
