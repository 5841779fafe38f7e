/** Trainer progress (docs/architecture.md §6 `{"event":"progress",...}` lines), as both the workflow and the activities see it. */
export interface ProgressLike {
  step: number;
  maxSteps?: number;
}

/**
 * Tenths of max_steps reached: 0..10, or -1 when the trainer has not said. The follow activity reports progress
 * only when this grows, so a job's history gains at most ten events of progress however long it trains.
 */
export function progressDecile(p: ProgressLike | null | undefined): number {
  if (!p || !p.maxSteps || p.maxSteps <= 0) return -1;
  return Math.min(10, Math.max(0, Math.floor((p.step * 10) / p.maxSteps)));
}
