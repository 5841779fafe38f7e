/**
 * A job's training curves from its log lines: the trainer's JSON event lines on stdout (what a backend's logs()
 * returns) or its training_log.jsonl (the same records with a time). Other lines are skipped.
 *
 * finetune: train_loss from `progress` events, val_loss from `eval` events; rl: reward_mean, kl and
 * staleness_mean from `step` lines; p2pfl (any job type): the mean loss of each round over the nodes from the
 * experiment's `{node, round, loss}` lines, else the `round` of its `progress` events. A step seen twice (an attempt
 * that resumed from a checkpoint trains it again) keeps its last value.
 */
import { z } from 'zod';

export interface CurvePoint {
  step: number;
  value: number;
}

export interface Series {
  /** A stable id (also the SVG's data-series). */
  name: string;
  /** Series in the same panel share a y axis. */
  panel: string;
  /** What x counts: trainer steps, or federated rounds. */
  x: 'step' | 'round';
  points: CurvePoint[];
}

const num = z.number().finite();
const record = z.looseObject({ event: z.string().optional() });

interface Spec {
  name: string;
  panel: string;
  x: 'step' | 'round';
  /** The value of a parsed line for this series, or undefined when the line is not one of its points. */
  pick(r: Record<string, unknown>): CurvePoint | undefined;
}

const at = (r: Record<string, unknown>, xKey: string, yKey: string): CurvePoint | undefined => {
  const x = num.safeParse(r[xKey]);
  const y = num.safeParse(r[yKey]);
  return x.success && y.success ? { step: x.data, value: y.data } : undefined;
};
const when = (event: string | undefined, xKey: string, yKey: string) => (r: Record<string, unknown>) =>
  r.event === event ? at(r, xKey, yKey) : undefined;

const FINETUNE: Spec[] = [
  { name: 'train_loss', panel: 'loss', x: 'step', pick: when('progress', 'step', 'loss') },
  { name: 'val_loss', panel: 'loss', x: 'step', pick: when('eval', 'step', 'val_loss') },
];
const RL: Spec[] = [
  { name: 'reward_mean', panel: 'reward', x: 'step', pick: when('step', 'step', 'reward_mean') },
  { name: 'kl', panel: 'kl', x: 'step', pick: when('step', 'step', 'kl') },
  { name: 'staleness_mean', panel: 'staleness', x: 'step', pick: when('step', 'step', 'staleness_mean') },
];
/** The experiment's per-node lines (no event key): averaged per round below. */
const NODE_ROUND: Spec = { name: 'round_loss', panel: 'loss', x: 'round', pick: (r) => (r.event === undefined && typeof r.node === 'string' ? at(r, 'round', 'loss') : undefined) };
const PROGRESS_ROUND: Spec = { name: 'round_loss', panel: 'loss', x: 'round', pick: when('progress', 'round', 'loss') };

function parseLine(line: string): Record<string, unknown> | undefined {
  const t = line.trim();
  if (!t.startsWith('{')) return undefined;
  try {
    const r = record.safeParse(JSON.parse(t));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** Points by x, the last value of an x winning, sorted by x. */
function lastWins(points: CurvePoint[]): CurvePoint[] {
  const byStep = new Map<number, number>();
  for (const p of points) byStep.set(p.step, p.value);
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([step, value]) => ({ step, value }));
}

/** Per round, the mean of its values (the nodes of a federated round), sorted by round. */
function meanPerRound(points: CurvePoint[]): CurvePoint[] {
  const sums = new Map<number, { sum: number; n: number }>();
  for (const p of points) {
    const s = sums.get(p.step) ?? { sum: 0, n: 0 };
    sums.set(p.step, { sum: s.sum + p.value, n: s.n + 1 });
  }
  return [...sums.entries()].sort((a, b) => a[0] - b[0]).map(([step, s]) => ({ step, value: s.sum / s.n }));
}

/** The named series of a job's log lines (only those with points; an empty list when the log has none yet). */
export function seriesFromLog(lines: Iterable<string>, jobType: string | null): Series[] {
  const records: Record<string, unknown>[] = [];
  for (const line of lines) {
    const r = parseLine(line);
    if (r) records.push(r);
  }
  const collect = (s: Spec): CurvePoint[] => records.flatMap((r) => s.pick(r) ?? []);
  const out: Series[] = [];
  const add = (s: Spec, points: CurvePoint[]): void => {
    if (points.length) out.push({ name: s.name, panel: s.panel, x: s.x, points });
  };
  if (jobType === 'rl') {
    for (const s of RL) add(s, lastWins(collect(s)));
    return out;
  }
  const nodeRounds = collect(NODE_ROUND);
  if (nodeRounds.length) add(NODE_ROUND, meanPerRound(nodeRounds));
  else {
    const rounds = collect(PROGRESS_ROUND);
    if (rounds.length) add(PROGRESS_ROUND, lastWins(rounds));
  }
  if (out.length) return out;
  for (const s of FINETUNE) add(s, lastWins(collect(s)));
  return out;
}

/** The series a one-line summary shows: the first of the job's kind (train loss, mean reward, round loss). */
export function mainSeries(series: readonly Series[]): Series | undefined {
  return series[0];
}
