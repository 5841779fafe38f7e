/** The Web UI's summary line and Markdown details of a job (workflows/lifecycle/details.ts): pure. */
import type { JobStatus } from '../../workflows/messages';
import { displayRepo, grpoDetails, integrateDetails, jobDetails, jobSummary, shortDid } from '../../workflows/lifecycle/details';

const did = 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK';

const rlProgress: NonNullable<JobStatus['rl']> = {
  ...{ run_id: 'r', phase: 'training', host: 'h1', session: null, policy_version: 7, policy_sha256: null, max_steps: 50 },
  ...{ host_losses: 1, steps_redone: 2, runs: 0, cost_usd: 0.5, rejected_rollouts: [] },
  latest: {
    ...{ step: 12, policy_version: 7, reward_mean: 0.61234, reward_std: 0.1, loss: 0.2, kl: 0, staleness_mean: 0.5, staleness_max: 1 },
    ...{ trainer_idle_fraction: 0.25, rollout_tokens_per_s: null, step_seconds: 1 },
  },
};

function status(over: Partial<JobStatus> = {}): JobStatus {
  return {
    ...{ job_id: 'j1', job_type: 'finetune', owner_did: did, state: 'RUNNING', attempt: 2, backend: 'akash' },
    transitions: [{ state: 'RUNNING', at: '2026-12-04T18:00:00.000Z', reason: 'akash reports d-7 running', attempt: 2, backend: 'akash' }],
    ...{ cost_usd: 0.25, deployments: [], last_error: null, errors: [], artifacts: null, evals: [], notifications: [] },
    ...over,
  };
}

test("the summary is one line: type, base model, the owner's short did", () => {
  expect(shortDid(did)).toBe('did:key:z6MkhaXg…a2doK');
  expect(shortDid('did:web:a.b')).toBe('did:web:a.b');
  expect(shortDid(null)).toBe('unknown owner');
  expect(jobSummary({ job_type: 'finetune', base_model: 'sshleifer/tiny-gpt2', owner_did: did })).toBe(
    'finetune · sshleifer/tiny-gpt2 · did:key:z6MkhaXg…a2doK',
  );
  expect(jobSummary({ job_type: 'rl', base_model: 'a\nb', owner_did: undefined })).toBe('rl · a b · unknown owner');
});

test('details: state, attempt and backend, step / max_steps with loss, cost against the budget, the API paths', () => {
  const d = jobDetails(
    status({
      deployments: [
        {
          attempt: 2, backend: 'akash', id: 'd-7', state: 'RUNNING', cost_usd: 0.25, exit_code: null, submitted_at: '', closed: false,
          progress: { step: 40, maxSteps: 100, loss: 0.41234 },
          ref: { backend: 'akash', kind: 'akash', id: 'd-7', jobId: 'j1', attempt: 2, submittedAt: '', data: {} },
        },
      ],
    }),
    { summary: 'finetune · m · did:key:z6Mk…', maxCostUsd: 5 },
  );
  const lines = d.split('\n');
  expect(lines[0]).toBe('**finetune · m · did:key:z6Mk…**');
  expect(d).toContain('| state | RUNNING |');
  expect(d).toContain('| attempt | 2 on akash |');
  expect(d).toContain('| progress | step 40 / 100, loss 0.4123 |');
  expect(d).toContain('| cost | 0.2500 USD of 5.00 USD budget |');
  expect(d).toContain('status `GET /jobs/j1` · logs `GET /jobs/j1/logs` · artifacts `GET /jobs/j1/artifacts` · curves `GET /jobs/j1/curves.svg`');
  expect(d).not.toContain('last error');
});

test('details: eval results with promotion, the last error in one cell (pipes escaped), rl progress', () => {
  const d = jobDetails(
    status({
      state: 'COMPLETED',
      evals: [
        { task_type: 'toy', tasks: 20, successes: 17, success_rate: 0.85, suite_sha256: null, mean_latency_ms: 1, promoted: true, promotion: 'beats', elite_success_rate: 0.5, registry_commit: null },
      ],
      last_error: { class: 'LOST', detail: 'a | b\nc', attempt: 1, backend: 'local', at: '' },
    }),
  );
  expect(d).toContain('| evals | toy 85.0% of 20, promoted |');
  expect(d).toContain('| last error | LOST (attempt 1 on local): a \\| b c |');
  const rl = jobDetails(status({ job_type: 'rl', rl: rlProgress }));
  expect(rl).toContain('| progress | step 12 / 50, policy v7, reward 0.612, staleness 0.50, trainer idle 25% |');
});

test('a git URL shown in a summary loses its credentials', () => {
  expect(displayRepo('https://user:tok@example.com/a/b.git?x=1')).toBe('https://example.com/a/b.git');
  expect(displayRepo('file:///tmp/models.git')).toBe('file:///tmp/models.git');
});

test('grpoRun details: phase, host, step / max_steps with policy version, reward, staleness, idle share, host losses', () => {
  const d = grpoDetails(rlProgress, 'j9', 2);
  expect(d.split('\n')[0]).toBe('**GRPO run of job j9, attempt 2**');
  for (const row of [
    '| phase | training |',
    '| trainer host | h1 |',
    '| step | 12 / 50, policy v7 |',
    '| reward | 0.612 ± 0.100, loss 0.2000 |',
    '| staleness | mean 0.50, max 1 |',
    '| trainer idle | 25% |',
    '| host losses | 1 (2 steps redone) |',
    '| cost | 0.5000 USD |',
  ]) {
    expect(d).toContain(row);
  }
  expect(grpoDetails({ ...rlProgress, phase: 'acquiring', host: null, latest: null, host_losses: 0, steps_redone: 0 }, 'j9', 1)).toContain('| step | 0 / 50, policy v7 |');
});

test('integrateResults details: stage, model, task types, then the results or the failure', () => {
  const d = integrateDetails({ jobId: 'j2', model: 'tiny', taskTypes: ['toy', 'file-edit'], stage: 'failed', failure: 'LOST: no answer' });
  expect(d.split('\n')[0]).toBe('**Results of job j2**');
  expect(d).toContain('| stage | failed |');
  expect(d).toContain('| task types | toy, file-edit |');
  expect(d).toContain('| error | LOST: no answer |');
  expect(d).not.toContain('| evals |');
});
