/**
 * Cost-aware admission: which candidate backend (provider, then fallbacks) an attempt goes to. Pure; the control
 * activity (admitAndSubmit) quotes every candidate, ranks them here, then submits under each one's lock in order.
 *
 * The rule:
 *   1. Every candidate is quoted. Those that refuse the job (REJECTED) or have no room now (unavailable, busy,
 *      or their quote failed or timed out) are skipped for this round.
 *   2. Budget (operator `admission.budget`, default "fit"): a candidate is admissible only when its quoted hourly
 *      price × the spec's resources.max_hours fits the job's remaining max_cost_usd — an attempt can never be
 *      started that could overspend. Each submit also gets that remaining budget ÷ max_hours as its hourly cap
 *      (backends that bid or rent at a price stay under it and under their own configured cap). With "stop", a
 *      candidate is admitted whatever its price and the follower stops the attempt when the budget is spent.
 *   3. Order: from attempt 2 on, the retry plan's pick (`preferred`: the same backend after a trainer-side failure,
 *      the next one after NO_CAPACITY/PREEMPTED/LOST) comes first, so failover is never undone by price. The rest —
 *      everything on attempt 1 — go cheapest first when price ordering is allowed (operator `admission.order`
 *      "price", the default, and the spec's backend.region "any": a spec that names a region keeps its own order),
 *      else in list order. Ties, and list order, are provider then fallbacks, counted from `preferred`.
 *   4. Nothing admissible but something busy: wait (QUEUED) and look again. Nothing admissible, nothing busy, but
 *      something over budget: the attempt fails BUDGET (the job is ABANDONED). Everything refused: REJECTED.
 */

export type Look =
  | { kind: 'room'; hourlyUsd: number; detail?: string }
  | { kind: 'busy'; detail: string }
  | { kind: 'refused'; detail: string };

export interface CandidateLook {
  /** Index into the candidates (0 = provider). */
  index: number;
  name: string;
  look: Look;
}

export interface RankInput {
  /** The candidates, in rotation order from `preferred` (so looks[0] is the preferred one). */
  looks: readonly CandidateLook[];
  order: 'price' | 'list';
  budget: 'fit' | 'stop';
  /** The spec's backend.region. */
  region: string;
  /** What is left of max_cost_usd. */
  budgetUsd: number;
  maxHours: number;
  /** The retry plan's pick goes first (attempt > 1). */
  pinPreferred: boolean;
}

export interface Ranked {
  index: number;
  name: string;
  hourlyUsd: number;
  /** Passed to submit as its hourly cap; undefined when the budget does not bound it. */
  maxHourlyUsd?: number;
}

export interface Ranking {
  /** Admissible candidates, in the order to try them. */
  order: Ranked[];
  waits: string[];
  refusals: string[];
  overBudget: { index: number; name: string; detail: string }[];
}

export function priceOrderAllowed(order: RankInput['order'], region: string): boolean {
  return order === 'price' && region === 'any';
}

/** The most an hour may cost so that max_hours of it fits the remaining budget. */
export function hourlyBudget(budgetUsd: number, maxHours: number): number {
  return maxHours > 0 ? budgetUsd / maxHours : budgetUsd;
}

/** Whether `hourlyUsd` for max_hours fits the remaining budget (a tiny tolerance for float sums). */
export function fitsBudget(hourlyUsd: number, budgetUsd: number, maxHours: number): boolean {
  return hourlyUsd * maxHours <= budgetUsd + 1e-9;
}

export function rankCandidates(i: RankInput): Ranking {
  const waits: string[] = [];
  const refusals: string[] = [];
  const overBudget: Ranking['overBudget'] = [];
  const admissible: (Ranked & { rotation: number })[] = [];
  const cap = i.budget === 'fit' && Number.isFinite(i.budgetUsd) ? hourlyBudget(i.budgetUsd, i.maxHours) : undefined;
  i.looks.forEach((c, rotation) => {
    const l = c.look;
    if (l.kind === 'refused') refusals.push(`${c.name}: ${l.detail}`);
    else if (l.kind === 'busy') waits.push(`${c.name}: ${l.detail}`);
    else if (i.budget === 'fit' && !fitsBudget(l.hourlyUsd, i.budgetUsd, i.maxHours)) {
      overBudget.push({
        index: c.index,
        name: c.name,
        detail: `${c.name} at $${l.hourlyUsd.toFixed(4)}/h × max_hours ${i.maxHours} = $${(l.hourlyUsd * i.maxHours).toFixed(4)} exceeds the $${Math.max(0, i.budgetUsd).toFixed(4)} left of max_cost_usd`,
      });
    } else {
      admissible.push({ index: c.index, name: c.name, hourlyUsd: l.hourlyUsd, rotation, ...(cap !== undefined && { maxHourlyUsd: cap }) });
    }
  });
  const byPrice = priceOrderAllowed(i.order, i.region);
  admissible.sort((a, b) => {
    if (i.pinPreferred && (a.rotation === 0) !== (b.rotation === 0)) return a.rotation === 0 ? -1 : 1;
    if (byPrice && a.hourlyUsd !== b.hourlyUsd) return a.hourlyUsd - b.hourlyUsd;
    return a.rotation - b.rotation;
  });
  return { order: admissible.map(({ rotation: _rotation, ...r }) => r), waits, refusals, overBudget };
}
