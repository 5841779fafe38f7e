/** The reaper's decision: which open deployments are orphans, and which are left alone. */
import type { OpenDeployment } from '../../activities/backends/types';
import { decideReap, planReap, reapReport, type JobRunState } from '../../workflows/reaper-decide';

const NOW = Date.parse('2026-01-01T12:00:00Z');

function open(o: { attempt?: number; backend?: string; id?: string; ageSeconds?: number } = {}): OpenDeployment {
  const attempt = o.attempt ?? 1;
  const createdAt = new Date(NOW - (o.ageSeconds ?? 600) * 1000).toISOString();
  return {
    ref: { backend: o.backend ?? 'local', kind: 'local', id: o.id ?? `job-1/attempt-${attempt}`, jobId: 'job-1', attempt, submittedAt: createdAt, data: {} },
    jobId: 'job-1',
    attempt,
    createdAt,
  };
}

function running(attempt: number, deployments: { backend?: string; attempt: number; id?: string; closed?: boolean }[] = []): JobRunState {
  return {
    kind: 'running',
    attempt,
    deployments: deployments.map((d) => ({ backend: d.backend ?? 'local', attempt: d.attempt, id: d.id ?? `job-1/attempt-${d.attempt}`, closed: d.closed ?? false })),
  };
}

const decide = (o: OpenDeployment, job: JobRunState, graceSeconds = 120) => decideReap({ open: o, job, now: NOW, graceSeconds });

describe('decideReap', () => {
  it('reaps a deployment whose job does not exist', () => {
    expect(decide(open(), { kind: 'not-found' })).toMatchObject({ reap: true, reason: 'job-not-found' });
  });

  it.each(['COMPLETED', 'FAILED', 'TERMINATED', 'CANCELLED', 'TIMED_OUT'])('reaps a deployment whose job is %s', (status) => {
    const d = decide(open(), { kind: 'closed', status });
    expect(d).toMatchObject({ reap: true, reason: 'job-closed' });
    expect(d.why).toContain(status);
  });

  it('never reaps within the grace period, whatever the job', () => {
    expect(decide(open({ ageSeconds: 30 }), { kind: 'not-found' })).toMatchObject({ reap: false, reason: 'young' });
    expect(decide(open({ ageSeconds: 30 }), { kind: 'closed', status: 'TERMINATED' })).toMatchObject({ reap: false, reason: 'young' });
    // With no grace at all, the same deployment is reaped.
    expect(decide(open({ ageSeconds: 30 }), { kind: 'not-found' }, 0)).toMatchObject({ reap: true });
  });

  it('keeps the current deployment of a running job', () => {
    expect(decide(open({ attempt: 2 }), running(2, [{ attempt: 1, closed: true }, { attempt: 2 }]))).toMatchObject({ reap: false, reason: 'current' });
  });

  it('reaps an earlier attempt of a running job', () => {
    expect(decide(open({ attempt: 1 }), running(2, [{ attempt: 1 }, { attempt: 2 }]))).toMatchObject({ reap: true, reason: 'earlier-attempt' });
  });

  it('reaps a deployment the status records as closed', () => {
    expect(decide(open({ attempt: 2 }), running(2, [{ attempt: 2, closed: true }]))).toMatchObject({ reap: true, reason: 'closed-in-status' });
  });

  it('reaps a second deployment of the current attempt (a duplicate, or another backend)', () => {
    const dup = open({ attempt: 1, backend: 'akash', id: 'dseq-7' });
    expect(decide(dup, running(1, [{ attempt: 1, backend: 'akash', id: 'dseq-5' }]))).toMatchObject({ reap: true, reason: 'not-the-current-deployment' });
  });

  it('keeps the current attempt’s deployment while its submit is not recorded yet, and a later attempt', () => {
    expect(decide(open({ attempt: 3 }), running(3, [{ attempt: 1, closed: true }]))).toMatchObject({ reap: false, reason: 'not-yet-recorded' });
    expect(decide(open({ attempt: 4 }), running(3))).toMatchObject({ reap: false, reason: 'later-attempt' });
  });

  it('keeps what it cannot judge: a job whose status cannot be read', () => {
    expect(decide(open(), { kind: 'unknown', detail: 'query timed out' })).toMatchObject({ reap: false, reason: 'status-unknown' });
  });

  it('takes a deployment with an unreadable creation time as old', () => {
    const o = { ...open(), createdAt: 'not a date' };
    expect(decide(o, { kind: 'not-found' })).toMatchObject({ reap: true });
  });
});

describe('planReap and reapReport', () => {
  it('decides each listed deployment and counts the run', () => {
    const listing = {
      graceSeconds: 0,
      backends: [
        { backend: 'local', kind: 'local', open: [open({ attempt: 1 }), open({ attempt: 2 })] },
        { backend: 'pi', kind: 'prime-intellect', open: [], error: 'Prime Intellect unreachable' },
      ],
    };
    const items = planReap(listing, { 'job-1': running(2, [{ attempt: 2 }]) }, NOW);
    expect(items.map((i) => [i.open.attempt, i.decision.reap])).toEqual([
      [1, true],
      [2, false],
    ]);
    const report = reapReport(listing, [{ ...items[0]!, closed: true }, items[1]!], NOW, false);
    expect(report).toMatchObject({ reaped: 1, kept: 1, errors: 1, dryRun: false });
    expect(report.backends).toEqual([
      { backend: 'local', kind: 'local', open: 2 },
      { backend: 'pi', kind: 'prime-intellect', open: 0, error: 'Prime Intellect unreachable' },
    ]);
  });

  it('keeps a deployment of a job that was not described', () => {
    const items = planReap({ graceSeconds: 0, backends: [{ backend: 'local', kind: 'local', open: [open()] }] }, {}, NOW);
    expect(items[0]!.decision).toMatchObject({ reap: false, reason: 'status-unknown' });
  });
});
