/** The pure ranking of cost-aware admission (activities/control/admission.ts). */
import { fitsBudget, hourlyBudget, priceOrderAllowed, rankCandidates, type CandidateLook, type Look, type RankInput } from '../../activities/control/admission';

const room = (hourlyUsd: number): Look => ({ kind: 'room', hourlyUsd });
const busy: Look = { kind: 'busy', detail: 'full' };
const refused: Look = { kind: 'refused', detail: 'cannot run it' };

/** Candidates a, b, c, … (index = position), rotated so that `preferred` comes first, as admitAndSubmit passes them. */
function looks(list: Look[], preferred = 0): CandidateLook[] {
  const all = list.map((look, index) => ({ index, name: String.fromCharCode(97 + index), look }));
  return [...all.slice(preferred), ...all.slice(0, preferred)];
}

function rank(list: Look[], o: Partial<RankInput> & { preferred?: number } = {}): string[] {
  const { preferred = 0, ...rest } = o;
  return rankCandidates({ looks: looks(list, preferred), order: 'price', budget: 'fit', region: 'any', budgetUsd: Infinity, maxHours: 1, pinPreferred: false, ...rest }).order.map((c) => c.name);
}

test('cheapest first; equal prices keep provider-then-fallbacks order', () => {
  expect(rank([room(3), room(1), room(2)])).toEqual(['b', 'c', 'a']);
  expect(rank([room(1), room(1), room(0.5), room(1)])).toEqual(['c', 'a', 'b', 'd']);
});

test('list order when the operator says so, or when the spec names a region', () => {
  expect(rank([room(3), room(1), room(2)], { order: 'list' })).toEqual(['a', 'b', 'c']);
  expect(rank([room(3), room(1), room(2)], { region: 'us-west' })).toEqual(['a', 'b', 'c']);
  expect(priceOrderAllowed('price', 'any')).toBe(true);
  expect(priceOrderAllowed('price', 'eu')).toBe(false);
  expect(priceOrderAllowed('list', 'any')).toBe(false);
});

test('the busy and the refusing are skipped, with their reasons', () => {
  const r = rankCandidates({ looks: looks([busy, room(2), refused, room(1)]), order: 'price', budget: 'fit', region: 'any', budgetUsd: 10, maxHours: 1, pinPreferred: false });
  expect(r.order.map((c) => c.name)).toEqual(['d', 'b']);
  expect(r.waits).toEqual(['a: full']);
  expect(r.refusals).toEqual(['c: cannot run it']);
});

test('from attempt 2 the retry plan’s pick stays first (a failover is not undone by price); the rest by price', () => {
  // b failed over to c (preferred = 2); a is the cheapest but comes after c.
  expect(rank([room(0.1), room(0.2), room(5), room(1)], { preferred: 2, pinPreferred: true })).toEqual(['c', 'a', 'b', 'd']);
  // Without pinning (attempt 1) price decides.
  expect(rank([room(0.1), room(0.2), room(5), room(1)], { preferred: 2 })).toEqual(['a', 'b', 'd', 'c']);
  // A pinned pick that is busy does not block the others.
  expect(rank([room(1), busy, room(3)], { preferred: 1, pinPreferred: true })).toEqual(['a', 'c']);
});

test('budget "fit": never a backend whose hourly price × max_hours exceeds what is left; each gets the remaining budget as its hourly cap', () => {
  const r = rankCandidates({ looks: looks([room(2), room(0.5), room(1)]), order: 'price', budget: 'fit', region: 'any', budgetUsd: 4, maxHours: 3, pinPreferred: false });
  expect(r.order).toEqual([
    { index: 1, name: 'b', hourlyUsd: 0.5, maxHourlyUsd: 4 / 3 },
    { index: 2, name: 'c', hourlyUsd: 1, maxHourlyUsd: 4 / 3 },
  ]);
  expect(r.overBudget).toEqual([{ index: 0, name: 'a', detail: 'a at $2.0000/h × max_hours 3 = $6.0000 exceeds the $4.0000 left of max_cost_usd' }]);
  expect(fitsBudget(1, 3, 3)).toBe(true);
  expect(fitsBudget(1.01, 3, 3)).toBe(false);
  expect(hourlyBudget(10, 4)).toBe(2.5);
});

test('budget "stop": any price is admitted, without a cap', () => {
  const r = rankCandidates({ looks: looks([room(36_000), room(0)]), order: 'list', budget: 'stop', region: 'any', budgetUsd: 2, maxHours: 1, pinPreferred: false });
  expect(r.order).toEqual([
    { index: 0, name: 'a', hourlyUsd: 36_000 },
    { index: 1, name: 'b', hourlyUsd: 0 },
  ]);
  expect(r.overBudget).toEqual([]);
});

test('no budget known (histories from before cost-aware admission): nothing is over budget, no cap', () => {
  const r = rankCandidates({ looks: looks([room(99)]), order: 'price', budget: 'fit', region: 'any', budgetUsd: Infinity, maxHours: 8, pinPreferred: false });
  expect(r.order).toEqual([{ index: 0, name: 'a', hourlyUsd: 99 }]);
});
