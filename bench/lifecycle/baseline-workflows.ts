/** The baseline of bench/lifecycle: the least a Temporal workflow can do to run a process — one activity. */
import { proxyActivities } from '@temporalio/workflow';
import type { BaselineActivities } from './baseline-activities';

const { runProcess } = proxyActivities<BaselineActivities>({ startToCloseTimeout: '10 minutes' });

export async function baselineJob(argv: string[]): Promise<number> {
  return runProcess(argv);
}
