/**
 * Tells the spec's notification target how the job ended (README "Results", docs/results.md): COMPLETED →
 * `on_complete` (job.completed), ABANDONED → `on_failure` (job.failed), CANCELLED → `on_cancel`, else `on_failure`
 * (job.cancelled). A failed delivery is recorded in the status; the job stays as it ended.
 */
import { patched, proxyActivities } from '@temporalio/workflow';
import type { JobSettings } from '../../activities/control/activities';
import type { NotificationEvent } from '../../activities/notify';
import type { ResultActivities } from '../../activities/results';
import { describeNotificationTarget } from '../../jobspec/notification-target';
import type { TrainingJobSpec } from '../../jobspec/schema';
import { innermostCause } from '../job/cleanup';
import type { JobRecord } from './job-record';

const PATCH_NOTIFY = 'forge-notifications';

/** The event and target of a job that ended in `state` (none for a state nobody is told of, or no target). */
export function notificationFor(state: string, n: TrainingJobSpec['notifications']): [NotificationEvent, string] | undefined {
  const ending: Partial<Record<string, [NotificationEvent, string | undefined]>> = {
    COMPLETED: ['job.completed', n?.on_complete],
    ABANDONED: ['job.failed', n?.on_failure],
    CANCELLED: ['job.cancelled', n?.on_cancel ?? n?.on_failure],
  };
  const [event, target] = ending[state] ?? [];
  return event && target ? [event, target] : undefined;
}

export async function notifyEnd(job: JobRecord, spec: TrainingJobSpec, settings: JobSettings): Promise<void> {
  const found = notificationFor(job.state, spec.notifications);
  const retry = settings.results?.notify;
  if (!found || !retry || !patched(PATCH_NOTIFY)) return;
  const [event, target] = found;
  const s = job.status;
  const last = s.transitions.at(-1)!;
  const send = proxyActivities<ResultActivities>({
    startToCloseTimeout: '2 minutes',
    retry: {
      initialInterval: `${retry.initialIntervalSeconds} seconds`,
      maximumInterval: `${retry.maximumIntervalSeconds} seconds`,
      maximumAttempts: retry.maximumAttempts,
    },
  }).notify;
  const record = { event, target: describeNotificationTarget(target), at: new Date().toISOString() };
  try {
    const r = await send.executeWithOptions({ summary: `notify ${record.target} of ${event}` }, [{
      target,
      payload: {
        event,
        job_id: s.job_id,
        job_type: s.job_type,
        owner_did: s.owner_did,
        state: s.state,
        reason: last.reason,
        at: last.at,
        artifacts: s.artifacts ? { repo: s.artifacts.repo, branch: s.artifacts.branch, commit: s.artifacts.commit } : null,
        evals: s.evals.map((e) => ({ task_type: e.task_type, success_rate: e.success_rate, promoted: e.promoted })),
        last_error: s.last_error ? { class: s.last_error.class, detail: s.last_error.detail } : null,
      },
    }]);
    job.addNotification({ ...record, delivered: true, detail: `delivered to ${r.delivered_to.join(', ')}` });
  } catch (err) {
    const cause = innermostCause(err);
    job.addNotification({ ...record, delivered: false, detail: `not delivered: ${cause instanceof Error ? cause.message : String(cause)}` });
  }
}
