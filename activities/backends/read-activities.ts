/**
 * The read entity's activity (workflows/backend-read.ts): one read — a deployment's log page or the backend's health —
 * on this worker's backend, which holds the credentials the HTTP API does not (docs/architecture.md §10).
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { BackendReadActivities, BackendReadRequest, BackendReadResult } from '../../workflows/read/messages';
import { asFailure } from '../control/failures';
import type { BackendReader, DeploymentRef, LogChunk } from './types';

/**
 * A log page travels in the entity's history (the activity's result and the Update's): lines are cut here so that a
 * full page (MAX_LOG_LINES) stays well under Temporal's 2 MiB payload limit.
 */
export const MAX_READ_LINE_CHARS = 1024;

function cutLines(chunk: LogChunk): LogChunk {
  const lines = chunk.lines.map((l) =>
    l.line.length <= MAX_READ_LINE_CHARS ? l : { ...l, line: `${l.line.slice(0, MAX_READ_LINE_CHARS)}… (${l.line.length - MAX_READ_LINE_CHARS} more characters)` },
  );
  return { ...chunk, lines };
}

/** An `events` read stops after this many pages, or once its lines hold this many characters (one page at most over). */
export const MAX_EVENT_PAGES = 50;
export const MAX_EVENT_CHARS = 512 * 1024;

/** stdout's JSON event lines from `cursor` on, page after page: the cursor returned is a page boundary, never a cut. */
async function eventLines(backend: BackendReader, deployment: DeploymentRef, cursor: string | undefined): Promise<LogChunk> {
  const lines: LogChunk['lines'] = [];
  let at = cursor;
  let chars = 0;
  for (let page = 0; page < MAX_EVENT_PAGES && chars < MAX_EVENT_CHARS; page++) {
    const chunk = await backend.logs(deployment, at);
    if (chunk.lines.length === 0 || chunk.cursor === at) {
      at = chunk.cursor;
      break;
    }
    for (const l of cutLines(chunk).lines) {
      if (l.stream !== 'stdout' || !l.line.startsWith('{')) continue;
      lines.push(l);
      chars += l.line.length;
    }
    at = chunk.cursor;
  }
  return { lines, cursor: at ?? '' };
}

/**
 * `cancelled`: rejects when the activity is cancelled (default: its Temporal context). A backend call that may hang (a
 * provider that never answers) must not hold the worker's shutdown: the activity ends then, leaving the call to its
 * own timeout.
 */
export function createBackendReadActivities(
  backends: ReadonlyMap<string, BackendReader>,
  cancelled: () => Promise<never> = () => Context.current().cancelled,
): BackendReadActivities {
  const untilCancelled = <T>(work: Promise<T>): Promise<T> => Promise.race([work, cancelled()]);
  return {
    async readBackend(name: string, request: BackendReadRequest): Promise<BackendReadResult> {
      const backend = backends.get(name);
      if (!backend) {
        throw ApplicationFailure.create({
          type: 'REJECTED',
          message: `backend "${name}" is not configured on this orchestrator worker; configured: ${[...backends.keys()].join(', ')} (the API's and the workers' FORGE_CONFIG differ)`,
          nonRetryable: true,
        });
      }
      if (request.op === 'health') return { op: 'health', report: await untilCancelled(backend.health()) };
      try {
        const { deployment, cursor } = request;
        const read = request.events ? eventLines(backend, deployment, cursor) : backend.logs(deployment, cursor).then(cutLines);
        return { op: 'logs', chunk: await untilCancelled(read) };
      } catch (err) {
        throw asFailure(err); // a refusal (a damaged ref) is typed and not retried; an outage is retried once
      }
    },
  };
}
