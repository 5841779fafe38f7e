/**
 * The reaper's activities (workflows/reaper.ts) and the same steps for `cf-reap`: list every backend's open
 * deployments that carry this installation's mark (Backend.listOpen), describe their jobs through Temporal, close
 * the orphans. The decision itself is pure (workflows/reaper-decide.ts).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { ForgeConfig } from '../common/config';
import { statusQuery } from '../workflows/messages';
import { jobWorkflowId } from '../common/names';
import type { BackendListing, JobRunState, OpenListing, ReapReport } from '../workflows/reaper-decide';
export type { BackendListing, OpenListing, ReapItem, ReapReport } from '../workflows/reaper-decide';
import type { Backend, OpenDeployment } from './backends/types';
import { recordReaperRun } from './reaper-metrics';

/** How long one status query may take: a job whose worker is away must not hold the reaper up. */
const QUERY_TIMEOUT_MS = 10_000;

/** Every backend that can list its deployments (those without listOpen are skipped). */
export async function listOpenAll(backends: ReadonlyMap<string, Backend>): Promise<BackendListing[]> {
  const listings: BackendListing[] = [];
  for (const backend of backends.values()) {
    if (!backend.listOpen) continue;
    try {
      listings.push({ backend: backend.name, kind: backend.kind, open: await backend.listOpen() });
    } catch (err) {
      listings.push({ backend: backend.name, kind: backend.kind, open: [], error: (err as Error).message });
    }
  }
  return listings;
}

/** The job's workflow as Temporal sees it now, and its current attempt and deployments when it runs. */
export async function describeJob(client: Client, jobId: string): Promise<JobRunState> {
  const handle = client.workflow.getHandle(jobWorkflowId(jobId));
  let status: string;
  try {
    status = (await handle.describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { kind: 'not-found' };
    return { kind: 'unknown', detail: `describe failed: ${(err as Error).message}` };
  }
  if (status !== 'RUNNING') return { kind: 'closed', status };
  try {
    const s = await client.connection.withDeadline(Date.now() + QUERY_TIMEOUT_MS, () => handle.query(statusQuery));
    return { kind: 'running', attempt: s.attempt, deployments: s.deployments.map((d) => ({ backend: d.backend, attempt: d.attempt, id: d.id, closed: d.closed })) };
  } catch (err) {
    return { kind: 'unknown', detail: `status query failed: ${(err as Error).message}` };
  }
}

export async function describeJobs(client: Client, jobIds: readonly string[]): Promise<Record<string, JobRunState>> {
  const states: Record<string, JobRunState> = {};
  for (const id of new Set(jobIds)) states[id] = await describeJob(client, id);
  return states;
}

export interface ReaperActivityOptions {
  config: ForgeConfig;
  backends: ReadonlyMap<string, Backend>;
  /** The Temporal client to describe jobs with; default: the worker's own (Context.current().client). */
  client?: () => Client;
}

export function createReaperActivities(o: ReaperActivityOptions) {
  const client = o.client ?? (() => Context.current().client);
  return {
    async reaperListOpen(): Promise<OpenListing> {
      return { graceSeconds: o.config.reaper.grace_seconds, backends: await listOpenAll(o.backends) };
    },

    async reaperDescribeJobs(jobIds: string[]): Promise<Record<string, JobRunState>> {
      return describeJobs(client(), jobIds);
    },

    /** Closes one orphaned deployment through its backend's own (idempotent) close. */
    async reaperClose(open: OpenDeployment): Promise<void> {
      const backend = o.backends.get(open.ref.backend);
      if (!backend) {
        throw ApplicationFailure.create({
          type: 'REAPER_UNKNOWN_BACKEND',
          message: `backend "${open.ref.backend}" is no longer in FORGE_CONFIG; close deployment ${open.ref.id} by hand or configure the backend again`,
          nonRetryable: true,
        });
      }
      await backend.close(open.ref);
    },

    /** Counts the run in this worker's /metrics (FORGE_HEALTH_ADDRESS). */
    async reaperRecord(report: ReapReport): Promise<void> {
      recordReaperRun(report);
    },
  };
}

export type ReaperActivities = ReturnType<typeof createReaperActivities>;
