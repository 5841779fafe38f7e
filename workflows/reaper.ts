/**
 * `forgeReaper`: one reaping pass, started by the Temporal Schedule `forge-reaper` every `reaper.interval_seconds`
 * (infra/reaper-schedule.ts). It lists every backend's open deployments that carry this orchestrator's mark, asks
 * Temporal about their jobs, decides (reaper-decide.ts) and closes the orphans through their backends. Short and
 * deterministic: its history is a handful of activities per run.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { ReaperActivities } from '../activities/reaper';
import { planReap, reapReport, type ReapItem, type ReapReport } from './reaper-decide';

const { reaperListOpen, reaperDescribeJobs, reaperRecord } = proxyActivities<ReaperActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 3, initialInterval: '2s' },
});

const { reaperClose } = proxyActivities<ReaperActivities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 3, initialInterval: '5s' },
});

export interface ForgeReaperInput {
  /** List and decide only: close nothing. */
  dryRun?: boolean;
}

export async function forgeReaper(input: ForgeReaperInput = {}): Promise<ReapReport> {
  const startedAt = Date.now();
  const listing = await reaperListOpen();
  const jobIds = [...new Set(listing.backends.flatMap((b) => b.open.map((o) => o.jobId)))].sort();
  const jobs = jobIds.length ? await reaperDescribeJobs(jobIds) : {};
  const planned = planReap(listing, jobs, Date.now());
  const items: ReapItem[] = await Promise.all(
    planned.map(async (item): Promise<ReapItem> => {
      if (!item.decision.reap || input.dryRun) return item;
      try {
        await reaperClose(item.open);
        return { ...item, closed: true };
      } catch (err) {
        const cause = (err as { cause?: Error }).cause;
        return { ...item, closed: false, error: (cause ?? (err as Error)).message };
      }
    }),
  );
  const report = reapReport(listing, items, startedAt, input.dryRun === true);
  await reaperRecord(report);
  return report;
}
