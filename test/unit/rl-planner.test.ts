/** grpoRun's step planner (workflows/rl/planner.ts): what it does next on one trainer host. */
import { planHostTick, type HostTickState } from '../../workflows/rl/planner';

const base: HostTickState = {
  version: 0,
  maxSteps: 5,
  maxOffPolicySteps: 1,
  nextStep: 1,
  sent: 0,
  updating: 0,
  depth: 2,
  inFlight: 0,
  complete: new Set(),
  draining: false,
  continueAsNewSuggested: false,
  lost: null,
  alive: true,
};

describe('planHostTick', () => {
  it('dispatches the steps the staleness bound allows at the start', () => {
    expect(planHostTick(base)).toEqual({ kind: 'act', startDraining: false, dispatch: [1, 2], update: [] });
  });

  it('synchronous RL (k = 0) dispatches one step at a time', () => {
    expect(planHostTick({ ...base, maxOffPolicySteps: 0 })).toMatchObject({ dispatch: [1] });
    expect(planHostTick({ ...base, maxOffPolicySteps: 0, nextStep: 2, inFlight: 3 })).toMatchObject({ dispatch: [] });
  });

  it('a lost host wins over everything else, and says whether it still answered', () => {
    expect(planHostTick({ ...base, lost: 'gone', alive: false, version: 5 })).toEqual({ kind: 'lost', reason: 'gone', alive: false });
  });

  it('is done at max_steps only once no update is in flight', () => {
    expect(planHostTick({ ...base, version: 5, sent: 5, nextStep: 6 })).toEqual({ kind: 'done' });
    expect(planHostTick({ ...base, version: 5, sent: 5, nextStep: 6, updating: 1 })).toMatchObject({ kind: 'act', dispatch: [], update: [] });
  });

  it('sends complete batches in step order, at most `depth` in flight', () => {
    const complete = new Set([1, 2, 3]);
    expect(planHostTick({ ...base, nextStep: 4, complete, maxOffPolicySteps: 3 })).toMatchObject({ update: [1, 2] });
    expect(planHostTick({ ...base, nextStep: 4, complete, maxOffPolicySteps: 3, updating: 1, sent: 1 })).toMatchObject({ update: [2] });
    expect(planHostTick({ ...base, nextStep: 4, complete, maxOffPolicySteps: 3, depth: 1 })).toMatchObject({ update: [1] });
  });

  it('never skips an incomplete batch', () => {
    expect(planHostTick({ ...base, nextStep: 3, complete: new Set([2]), inFlight: 1 })).toMatchObject({ update: [] });
  });

  it('drains when continue-as-new is suggested: no new dispatch, but complete batches still update', () => {
    const tick = planHostTick({ ...base, nextStep: 2, inFlight: 2, complete: new Set([1]), continueAsNewSuggested: true });
    expect(tick).toEqual({ kind: 'act', startDraining: true, dispatch: [], update: [1] });
  });

  it('continues as new once drained', () => {
    expect(planHostTick({ ...base, draining: true, version: 2, sent: 2, nextStep: 3, continueAsNewSuggested: true })).toEqual({
      kind: 'continue-as-new',
      startDraining: false,
    });
    expect(planHostTick({ ...base, version: 2, sent: 2, nextStep: 3, continueAsNewSuggested: true })).toEqual({
      kind: 'continue-as-new',
      startDraining: true,
    });
    expect(planHostTick({ ...base, draining: true, version: 2, sent: 2, nextStep: 4, complete: new Set([3]) })).toMatchObject({
      kind: 'act',
      update: [3],
    });
  });
});
