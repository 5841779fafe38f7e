#!/usr/bin/env node
/**
 * cf-reap: the reaper by hand, on the orchestrator's host (it reads FORGE_CONFIG, FORGE_HOME and the TEMPORAL_*
 * variables like the workers, and the orchestrator key). `--dry-run` lists every backend's open deployments with this
 * installation's mark,
 * asks Temporal about their jobs and prints what the reaper would close and why, closing nothing. Without it, the
 * `forge-reaper` schedule is triggered: a worker runs the reaping workflow now (closes and counts it on its /metrics).
 */
import { Client, ScheduleNotFoundError } from '@temporalio/client';
import { createBackends } from '../../activities/backends/registry';
import { ourInstallationTag } from '../../activities/backends/installation';
import { OrchestratorKeyMissingError } from '../../common/orchestrator-key';
import { describeJobs, listOpenAll } from '../../activities/reaper';
import { ConfigError, loadConfig, type ForgeConfig } from '../../common/config';
import { forgeHome } from '../../common/paths';
import { connectClient, EnvError, readTemporalEnv, temporalAddress, type TemporalEnv } from '../../common/temporal';
import { REAPER_SCHEDULE_ID } from '../../common/names';
import { planReap, reapReport, type ReapItem, type ReapReport } from '../../workflows/reaper-decide';
import { CliError, EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';
import type { Output } from './shared/output';

export const spec: CommandSpec = {
  name: 'cf-reap',
  summary: 'list the orphaned deployments the reaper would close (--dry-run), or run the reaper now',
  args: '[--dry-run] [--all] [--config FILE]',
  positionals: { min: 0, max: 0 },
  usesApi: false,
  options: {
    'dry-run': { type: 'boolean', short: 'n', description: 'list what would be closed, and why; close nothing' },
    all: { type: 'boolean', short: 'a', description: 'with --dry-run: also list the deployments that would be kept' },
    config: { type: 'string', short: 'c', value: 'FILE', description: 'operator config (default $FORGE_CONFIG)' },
  },
  details:
    'Runs where the orchestrator worker runs: the backends come from the operator config, their local records from\n' +
    'FORGE_HOME, and jobs are looked up in Temporal (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,\n' +
    'TEMPORAL_TLS_*; default the dev server of npm start). A deployment is closed when its job does not run (never\n' +
    'existed, completed, failed, terminated, cancelled, timed out) or runs on another attempt or deployment, and it is\n' +
    'older than reaper.grace_seconds. Without --dry-run the Temporal Schedule "forge-reaper" is triggered: an\n' +
    'orchestrator worker runs the reaping workflow at once (the Web UI shows its report). A dry run that could not list\n' +
    'some backend still prints the others and exits 3.',
  exitCodes: [EXIT.OK, EXIT.USAGE, EXIT.UNAVAILABLE, EXIT.NOT_FOUND],
};

function operatorConfig(file: string | undefined): ForgeConfig {
  try {
    return loadConfig(file ? { FORGE_CONFIG: file } : process.env);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(EXIT.USAGE, err.message);
    throw err;
  }
}

function temporalEnv(): TemporalEnv {
  try {
    return readTemporalEnv();
  } catch (err) {
    if (err instanceof EnvError) throw new CliError(EXIT.USAGE, err.message);
    throw err;
  }
}

async function withClient<T>(t: TemporalEnv, use: (client: Client) => Promise<T>): Promise<T> {
  let connection;
  try {
    connection = await connectClient(t);
  } catch (err) {
    throw new CliError(EXIT.UNAVAILABLE, `cannot reach Temporal at ${temporalAddress(t)} (${(err as Error).message}); start the stack (npm start) or set TEMPORAL_ADDRESS`);
  }
  try {
    return await use(new Client({ connection, namespace: t.TEMPORAL_NAMESPACE }));
  } finally {
    await connection.close();
  }
}

/** This installation's tag: without the orchestrator key, its deployments cannot be told from another's. */
function installation(home: string): string {
  try {
    return ourInstallationTag(home);
  } catch (err) {
    if (!(err instanceof OrchestratorKeyMissingError)) throw err;
    throw new CliError(EXIT.USAGE, `${err.message}. cf-reap reads it to tell this installation's deployments from those of others sharing a provider account`);
  }
}

async function dryRun(config: ForgeConfig, tag: string, client: Client): Promise<ReapReport> {
  const backends = createBackends(config, forgeHome(), { installation: tag });
  const listing = { graceSeconds: config.reaper.grace_seconds, backends: await listOpenAll(backends) };
  const jobs = await describeJobs(client, listing.backends.flatMap((b) => b.open.map((o) => o.jobId)));
  const startedAt = Date.now();
  return reapReport(listing, planReap(listing, jobs, startedAt), startedAt, true);
}

/** The table of a dry run: one row per deployment it would close (and, with --all, keep). */
export function reapTable(items: readonly ReapItem[]): string {
  const rows = items.map((i) => [i.open.ref.backend, i.open.ref.id, i.open.jobId, String(i.open.attempt), i.decision.reap ? 'close' : 'keep', `${i.decision.reason}: ${i.decision.why}`]);
  const header = ['BACKEND', 'DEPLOYMENT', 'JOB', 'ATTEMPT', 'ACTION', 'WHY'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]): string => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

/** Which marks are this installation's: its key's tag, and those of its earlier keys (reaper.earlier_tags). */
function markNote(tag: string, earlier: readonly string[]): string {
  return `installation tag ${tag}${earlier.length ? `, earlier ${earlier.join(', ')}` : ''}`;
}

function printDryRun(report: ReapReport, all: boolean, marks: string, out: Output): void {
  if (out.json) return out.data(report);
  const shown = report.items.filter((i) => all || i.decision.reap);
  if (shown.length) out.line(reapTable(shown));
  for (const b of report.backends) if (b.error !== undefined) out.note(`${b.backend}: could not list its deployments: ${b.error}`);
  const closing = report.items.filter((i) => i.decision.reap).length;
  out.note(
    `dry run: ${report.items.length} open deployment(s) with this installation's mark (${marks}); ${closing} would be closed, ` +
      `${report.kept} kept (grace ${report.graceSeconds} s); nothing was closed`,
  );
}

if (require.main === module) {
  void runCli(spec, async ({ values, out }) => {
    const config = operatorConfig(typeof values.config === 'string' ? values.config : undefined);
    const t = temporalEnv();
    if (values['dry-run'] === true) {
      const tag = installation(forgeHome()); // before connecting: a missing key is the operator's to fix first
      const report = await withClient(t, (client) => dryRun(config, tag, client));
      printDryRun(report, values.all === true, markNote(tag, config.reaper.earlier_tags), out);
      return report.backends.some((b) => b.error !== undefined) ? EXIT.UNAVAILABLE : EXIT.OK;
    }
    await withClient(t, async (client) => {
      try {
        await client.schedule.getHandle(REAPER_SCHEDULE_ID).trigger();
      } catch (err) {
        if (err instanceof ScheduleNotFoundError) {
          throw new CliError(EXIT.NOT_FOUND, `no schedule "${REAPER_SCHEDULE_ID}" in namespace ${t.TEMPORAL_NAMESPACE}: run the setup role or npm start, which create it`);
        }
        throw err;
      }
    });
    if (out.json) out.data({ triggered: REAPER_SCHEDULE_ID, namespace: t.TEMPORAL_NAMESPACE });
    else out.line(`triggered schedule ${REAPER_SCHEDULE_ID}: an orchestrator worker runs the reaper now (its report is the workflow's result in the Web UI; counts on the worker's /metrics)`);
    return EXIT.OK;
  });
}
