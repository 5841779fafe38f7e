/** Messages of a backend's read entity (workflows/backend-read.ts), shared with the API that asks and the activity that reads. */
import { defineUpdate } from '@temporalio/workflow';
import type { DeploymentRef, HealthReport, LogChunk } from '../../activities/backends/types';

export interface BackendReadInput {
  backend: string;
  /** Accepted Updates per run before continuing as new (default CONTINUE_AFTER_READS; tests use fewer). */
  continueAfterReads?: number;
  /** Minutes without a read after which the entity ends (default IDLE_MINUTES; the next read starts it again). */
  idleMinutes?: number;
}

/**
 * One read: a page of a deployment's log lines after `cursor` — or, with `events`, only stdout's JSON event lines of as
 * many pages as fit one answer (curves read whole logs) — or the backend's health.
 */
export type BackendReadRequest = { op: 'logs'; deployment: DeploymentRef; cursor?: string; events?: boolean } | { op: 'health' };

export type BackendReadResult = { op: 'logs'; chunk: LogChunk } | { op: 'health'; report: HealthReport };

/**
 * Failure type of an Update refused because the entity is about to continue as new or end: ask again (the next
 * Update-with-start reaches the next run).
 */
export const BACKEND_READ_CLOSING = 'BACKEND_READ_CLOSING';

export const backendReadUpdate = defineUpdate<BackendReadResult, [BackendReadRequest]>('read');

export interface BackendReadActivities {
  /** Runs one read on this worker's backend of that name; log lines are cut to MAX_READ_LINE_CHARS. */
  readBackend(backend: string, request: BackendReadRequest): Promise<BackendReadResult>;
}
