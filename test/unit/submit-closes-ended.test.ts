/**
 * admitAndSubmit (activities/control/activities.ts) releases a deployment whose trainer had already ended when the submit looked,
 * as its follower would have, and says so (Submission.closed): the workflow then needs no close step — unless its
 * outputs are still on it (a remote success), which stays open for the commit.
 */
import { parseConfig } from '../../common/config';
import { createControlActivities } from '../../activities/control/activities';
import type { Backend, DeploymentRef, DeploymentState } from '../../activities/backends/types';
import { makeSignedSpec, signedOf } from '../jobspec/fixtures';

function fakeBackend(state: DeploymentState, outputsOnDeployment = false): Backend & { closed: string[] } {
  const closed: string[] = [];
  return {
    name: 'fake',
    kind: 'fake',
    closed,
    health: async () => ({ ok: true, detail: 'fake' }),
    quote: async () => ({ available: true, hourlyUsd: 0 }),
    submit: async ({ spec }, attempt): Promise<DeploymentRef> => ({
      backend: 'fake',
      kind: 'fake',
      id: `${spec.job_id}/${attempt}`,
      jobId: spec.job_id,
      attempt,
      submittedAt: new Date().toISOString(),
      data: {},
    }),
    status: async () => (state === 'FAILED' ? { state, costUsd: 0, failure: { class: 'EXIT_CODE', detail: 'exit 3' } } : { state, costUsd: 0, ...(outputsOnDeployment && { outputsOnDeployment }) }),
    logs: async () => ({ lines: [], cursor: '' }),
    collectArtifacts: async () => [],
    close: async (d) => void closed.push(d.id),
  };
}

async function submitOn(state: DeploymentState, outputsOnDeployment = false) {
  const b = fakeBackend(state, outputsOnDeployment);
  const config = parseConfig({ backends: { fake: { kind: 'local', trainers: { x: { command: ['/bin/true'] } } } } });
  const acts = createControlActivities({ config, backends: new Map([['fake', b]]), pollIntervalMs: () => 1000, fairness: 'off' });
  const raw = makeSignedSpec({ backend: { provider: 'fake' } });
  const outcome = await acts.admitAndSubmit({ candidates: ['fake'], preferred: 0, signed: signedOf(raw), attempt: 1, budgetUsd: 1 });
  return { outcome, closed: b.closed };
}

test.each(['SUCCEEDED', 'FAILED'] as const)('a trainer already %s at submit is closed there', async (state) => {
  const { outcome, closed } = await submitOn(state);
  expect(outcome && 'submission' in outcome && outcome.submission).toMatchObject({ status: { state }, closed: true });
  expect(closed).toHaveLength(1);
});

test('a running one is left to its follower', async () => {
  const { outcome, closed } = await submitOn('RUNNING');
  expect(outcome && 'submission' in outcome && outcome.submission.closed).toBeUndefined();
  expect(closed).toEqual([]);
});

test('a remote success whose outputs are still on its deployment is left open (the workflow closes it after the commit)', async () => {
  const { outcome, closed } = await submitOn('SUCCEEDED', true);
  expect(outcome && 'submission' in outcome && outcome.submission).toMatchObject({ status: { state: 'SUCCEEDED', outputsOnDeployment: true } });
  expect(outcome && 'submission' in outcome && outcome.submission.closed).toBeUndefined();
  expect(closed).toEqual([]);
});
