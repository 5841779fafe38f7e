/** A job's status: fetched, rendered as a table and a progress bar, and --watch. */
import { z } from 'zod';
import { isTerminal, type JobState } from '../../../workflows/lifecycle/states';
import { jobStatusSchema } from '../../api/schemas';
import { cliEnv, parseAnswer, type ApiClient } from './api-client';
import { CliError, EXIT } from './exit';
import type { Output } from './output';

export type ApiJobStatus = z.output<typeof jobStatusSchema>;

export async function fetchStatus(api: ApiClient, jobId: string): Promise<ApiJobStatus> {
  const res = await api.expect('GET', `/jobs/${jobId}`, [200]);
  return parseAnswer(jobStatusSchema, res.body, 'job status');
}

function time(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(11, 19);
}

export function formatTransition(t: ApiJobStatus['transitions'][number]): string {
  return `${time(t.at)}  ${t.state.padEnd(10)}  ${t.reason}`;
}

type Progress = NonNullable<ApiJobStatus['deployments'][number]['progress']>;

export function progressBar(p: Progress, width = 24): string {
  const loss = p.loss === undefined ? '' : `  loss ${p.loss.toFixed(4)}`;
  if (!p.maxSteps) return `step ${p.step}${loss}`;
  const fraction = Math.min(1, Math.max(0, p.step / p.maxSteps));
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.step}/${p.maxSteps} steps ${String(Math.round(fraction * 100)).padStart(3)}%${loss}`;
}

/** The latest attempt's training progress, if the trainer reported any. */
export function currentProgress(s: ApiJobStatus): Progress | null {
  return s.deployments.at(-1)?.progress ?? null;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => `  ${r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}`.trimEnd());
}

/** The readable form of cf-check-training. */
export function statusTable(s: ApiJobStatus): string {
  const progress = currentProgress(s);
  const head = [
    ['job', s.job_id],
    ['type', s.job_type ?? '-'],
    ['owner', s.owner_did ?? '-'],
    ['state', `${s.state}${s.attempt ? ` (attempt ${s.attempt}${s.backend ? ` on ${s.backend}` : ''})` : ''}`],
    ['cost', `$${s.cost_usd.toFixed(4)}`],
    ...(progress ? [['progress', progressBar(progress)]] : []),
    ...(s.last_error ? [['last error', `${s.last_error.class}: ${s.last_error.detail}`]] : []),
  ];
  const lines = head.map(([k, v]) => `${k!.padEnd(11)} ${v}`);
  lines.push('', 'transitions');
  lines.push(...table([['TIME', 'STATE', 'ATTEMPT', 'BACKEND', 'REASON'], ...s.transitions.map((t) => [time(t.at), t.state, String(t.attempt), t.backend ?? '-', t.reason])]));
  if (s.artifacts) {
    const a = s.artifacts;
    lines.push('', 'artifacts', `  ${a.repo} ${a.branch} @ ${a.commit}`, `  ${a.path}/: ${a.files.length} files, manifest sha256 ${a.manifest_sha256.slice(0, 16)}…, signed by ${a.signer_did}`);
  }
  if (s.evals?.length) {
    lines.push('', 'evals');
    lines.push(
      ...table([
        ['TASK TYPE', 'PASSED', 'SUCCESS', 'ELITE'],
        ...s.evals.map((e) => [e.task_type, `${e.successes}/${e.tasks}`, `${(e.success_rate * 100).toFixed(1)}%`, e.promotion ?? '-']),
      ]),
    );
  }
  if (s.deployments.length) {
    lines.push('', 'deployments');
    lines.push(
      ...table([
        ['ATTEMPT', 'BACKEND', 'ID', 'STATE', 'COST', 'EXIT', 'CLOSED'],
        ...s.deployments.map((d) => [String(d.attempt), d.backend, d.id, d.state, `$${d.cost_usd.toFixed(4)}`, d.exit_code === null ? '-' : String(d.exit_code), d.closed ? 'yes' : 'no']),
      ]),
    );
  }
  return lines.join('\n');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** While watching, the API may restart (npm start restarts it): keep trying this long before giving up. */
const WATCH_OUTAGE_MS = 60_000;

/**
 * Follows a job until it is terminal: each new transition, the progress bar of the current attempt (steps and
 * loss), then the final state. Returns the final status.
 */
/** `onRefresh` runs after each status read (cf-check-training draws the curve there), the last time at the end. */
export async function watchJob(api: ApiClient, jobId: string, out: Output, onRefresh?: (s: ApiJobStatus) => Promise<void>): Promise<ApiJobStatus> {
  const pollMs = cliEnv().FORGE_CLI_POLL_MS;
  let seen = 0;
  let lastProgress = '';
  let failingSince: number | undefined;
  for (;;) {
    let s: ApiJobStatus;
    try {
      s = await fetchStatus(api, jobId);
      failingSince = undefined;
    } catch (err) {
      if (!(err instanceof CliError) || err.code !== EXIT.UNAVAILABLE) throw err;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > WATCH_OUTAGE_MS) throw err;
      out.note(`(still trying: ${err.message.split('\n')[0]})`);
      await sleep(Math.max(pollMs, 1000));
      continue;
    }
    for (const t of s.transitions.slice(seen)) {
      if (out.json) out.data({ event: 'transition', job_id: jobId, ...t });
      else out.line(formatTransition(t));
    }
    seen = s.transitions.length;
    const p = currentProgress(s);
    const key = p ? JSON.stringify([s.attempt, p]) : '';
    if (p && key !== lastProgress && !isTerminal(s.state as JobState)) {
      if (out.json) out.data({ event: 'progress', job_id: jobId, attempt: s.attempt, step: p.step, max_steps: p.maxSteps ?? null, loss: p.loss ?? null });
      else out.transient(`          ${progressBar(p)}`);
    }
    lastProgress = key;
    await onRefresh?.(s);
    if (isTerminal(s.state as JobState)) {
      if (out.json) out.data({ event: 'final', job_id: jobId, state: s.state, status: s });
      else {
        const elapsed = s.transitions.length ? (Date.parse(s.transitions.at(-1)!.at) - Date.parse(s.transitions[0]!.at)) / 1000 : 0;
        const final = p ? `; ${progressBar(p)}` : '';
        out.line(`job ${jobId} ${s.state} after ${elapsed.toFixed(0)} s, cost $${s.cost_usd.toFixed(4)}${final}`);
        if (s.last_error && s.state !== 'COMPLETED') out.line(`last error: ${s.last_error.class}: ${s.last_error.detail}`);
      }
      return s;
    }
    await sleep(pollMs);
  }
}
