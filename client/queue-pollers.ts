/**
 * Who polls a task queue, as the Temporal server saw it: the way a client tells "no worker runs" apart from "a worker
 * runs but does not answer" before it tells a person what to start (the demos, the API's backend reads).
 */
import type { Connection } from '@temporalio/client';
import { optionalTsToMs } from '@temporalio/common/lib/time';

/** temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW */
const TASK_QUEUE_TYPE_WORKFLOW = 1;

/**
 * The server lists a worker for minutes after it stopped; a running worker polls again at least every ~70 s (a long
 * poll's length), so one not seen for longer than this is taken as gone.
 */
export const LIVE_POLLER_MS = 90_000;

export interface PollerSeen {
  identity: string;
  /** How long ago the server last saw its poll, in ms (undefined when the server did not say). */
  agoMs: number | undefined;
}

export interface QueuePollers {
  queue: string;
  live: PollerSeen[];
  /** Listed by the server but not seen within LIVE_POLLER_MS: stopped or cut off. */
  stale: PollerSeen[];
}

/** The workflow pollers of `queue`, split into live and stale. */
export async function queuePollers(
  connection: Pick<Connection, 'workflowService'>,
  namespace: string,
  queue: string,
  now = Date.now(),
): Promise<QueuePollers> {
  const answer = await connection.workflowService.describeTaskQueue({
    namespace,
    taskQueue: { name: queue },
    taskQueueType: TASK_QUEUE_TYPE_WORKFLOW,
  });
  const seen: PollerSeen[] = (answer.pollers ?? []).map((p) => {
    const at = optionalTsToMs(p.lastAccessTime);
    return { identity: p.identity ?? '(no identity)', agoMs: at === undefined ? undefined : Math.max(0, now - at) };
  });
  const isLive = (p: PollerSeen): boolean => p.agoMs === undefined || p.agoMs <= LIVE_POLLER_MS;
  return { queue, live: seen.filter(isLive), stale: seen.filter((p) => !isLive(p)) };
}

/**
 * Why a backend read got no answer in time, and what to do: start a worker where none polls, or look at the one
 * that does (its backend call is slow or hangs).
 */
export function silentReadReason(backend: string, pollers: QueuePollers): string {
  const start = `start one (npm start, or the orchestrator role) with backend "${backend}" in its FORGE_CONFIG`;
  if (pollers.live.length === 0) {
    const seen = pollers.stale.filter((p): p is PollerSeen & { agoMs: number } => p.agoMs !== undefined);
    const last = seen.sort((a, b) => a.agoMs - b.agoMs)[0];
    const gone = last ? ` (the last one, ${last.identity}, was seen ${Math.round(last.agoMs / 1000)} s ago)` : '';
    return `no orchestrator worker polls ${pollers.queue}${gone}: ${start}`;
  }
  const who = pollers.live.map((p) => p.identity).join(', ');
  return (
    `the orchestrator worker polling ${pollers.queue} (${who}) is up but did not answer: ` +
    `the backend's call is slow or hangs there — see that worker's log, and the backend's own status`
  );
}
