/**
 * What the Temporal Web UI shows of a job (user metadata): a one-line summary (type, base model, the owner's short
 * did) and the current details in Markdown (state, attempt and backend, progress, cost against the budget, evals and
 * promotion, the last error, the API's paths for status, logs, artifacts and curves). Pure: used by the workflow
 * (setCurrentDetails) and by the API (staticSummary/staticDetails at start).
 */
import type { TrainingJobSpec } from '../../jobspec/schema';
import type { EvalRecord, JobStatus } from '../messages';
import type { RlProgress } from '../grpo-run';

/** did:key:z6MkhaXg…Q2doK — enough to tell owners apart at a glance. */
export function shortDid(did: string | null | undefined): string {
  if (!did) return 'unknown owner';
  const m = /^(did:[a-z0-9]+:)(.+)$/.exec(did);
  if (!m || m[2]!.length <= 14) return did;
  return `${m[1]}${m[2]!.slice(0, 8)}…${m[2]!.slice(-5)}`;
}

export interface SummaryInput {
  job_type?: string | null;
  base_model?: string | null;
  owner_did?: string | null;
}

/** One line: `finetune · sshleifer/tiny-gpt2 · did:key:z6MkhaXg…Q2doK`. */
export function jobSummary(s: SummaryInput): string {
  return [s.job_type ?? 'job', s.base_model ?? 'unknown model', shortDid(s.owner_did)].map(oneLine).join(' · ');
}

/** The API's paths for a job (relative to wherever the API is served). */
export function jobLinks(jobId: string): { label: string; path: string }[] {
  const base = `/jobs/${encodeURIComponent(jobId)}`;
  return [
    { label: 'status', path: base },
    { label: 'logs', path: `${base}/logs` },
    { label: 'artifacts', path: `${base}/artifacts` },
    { label: 'curves', path: `${base}/curves.svg` },
  ];
}

function linksLine(jobId: string): string {
  return jobLinks(jobId)
    .map((l) => `${l.label} \`GET ${l.path}\``)
    .join(' · ');
}

function table(rows: [string, string][]): string[] {
  return ['| | |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${cell(v)} |`)];
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** A table cell: one line, no pipes, at most `max` characters. */
function cell(s: string, max = 240): string {
  const t = oneLine(s).replace(/\|/g, '\\|');
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** Dollars without `$`: the Web UI's Markdown renderer reads two dollar signs in a line as inline math. */
function usd(n: number): string {
  return `${n.toFixed(n < 1 ? 4 : 2)} USD`;
}

function progressRow(s: JobStatus): string | null {
  const latest = s.rl?.latest;
  if (s.rl) {
    const rl = s.rl;
    if (!latest) return `${rl.phase}, policy v${rl.policy_version}, step 0 / ${rl.max_steps}`;
    return (
      `step ${latest.step} / ${rl.max_steps}, policy v${latest.policy_version}, reward ${latest.reward_mean.toFixed(3)}, ` +
      `staleness ${latest.staleness_mean.toFixed(2)}, trainer idle ${(latest.trainer_idle_fraction * 100).toFixed(0)}%`
    );
  }
  const p = s.deployments.at(-1)?.progress;
  if (!p) return null;
  const of = p.maxSteps !== undefined ? ` / ${p.maxSteps}` : '';
  const loss = p.loss !== undefined ? `, loss ${p.loss.toFixed(4)}` : '';
  return `step ${p.step}${of}${loss}`;
}

function evalsRow(evals: EvalRecord[]): string | null {
  if (!evals.length) return null;
  return evals
    .map((e) => {
      const rate = e.tasks ? `${(e.success_rate * 100).toFixed(1)}% of ${e.tasks}` : 'no eval tasks';
      const promo = e.promoted === null ? '' : e.promoted ? ', promoted' : ', not promoted';
      return `${e.task_type} ${rate}${promo}`;
    })
    .join('; ');
}

/** The job's current details, Markdown: the summary line, then a two-column table. */
export function jobDetails(s: JobStatus, opts: { maxCostUsd?: number | null; summary?: string } = {}): string {
  const rows: [string, string][] = [['state', s.state]];
  const last = s.transitions.at(-1);
  if (last) rows.push(['since', `${last.at} (${last.reason})`]);
  if (s.attempt > 0) rows.push(['attempt', `${s.attempt} on ${s.backend ?? 'no backend yet'}`]);
  const progress = progressRow(s);
  if (progress) rows.push(['progress', progress]);
  const budget = typeof opts.maxCostUsd === 'number' ? ` of ${usd(opts.maxCostUsd)} budget` : '';
  rows.push(['cost', `${usd(s.cost_usd)}${budget}`]);
  if (s.artifacts) rows.push(['artifacts', `${displayRepo(s.artifacts.repo)} ${s.artifacts.branch} @ ${s.artifacts.commit.slice(0, 12)}`]);
  const evals = evalsRow(s.evals);
  if (evals) rows.push(['evals', evals]);
  if (s.last_error) {
    const e = s.last_error;
    rows.push(['last error', `${e.class} (attempt ${e.attempt}${e.backend ? ` on ${e.backend}` : ''}): ${e.detail}`]);
  }
  const summary = opts.summary ?? jobSummary({ job_type: s.job_type, owner_did: s.owner_did });
  return [
    `**${cell(summary)}**`,
    '',
    ...table(rows),
    '',
    `API: ${linksLine(s.job_id)}`,
  ].join('\n');
}

/** A git URL as a summary may show it: no credentials, no query. */
export function displayRepo(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//').replace(/[?#].*$/, '');
}

/** The summary line of a validated spec (what the API sets as the execution's static summary). */
export function specSummary(spec: TrainingJobSpec): string {
  return jobSummary({ job_type: spec.job_type, base_model: spec.base_model.name, owner_did: spec.owner_did });
}

/** What does not change over the job: the spec in brief and the API's paths (the execution's static details). */
export function staticJobDetails(spec: TrainingJobSpec, backends: string[]): string {
  const b = spec.base_model;
  return [
    `**${cell(specSummary(spec))}**`,
    '',
    '| | |',
    '|---|---|',
    `| job | ${cell(spec.job_id)} |`,
    `| owner | ${cell(spec.owner_did)} |`,
    `| base model | ${cell(`${b.source}:${b.name}@${b.revision}`)} |`,
    `| task types | ${cell(spec.objective.task_types.join(', '))} |`,
    `| backends | ${cell(backends.join(' → '))} |`,
    `| budget | ${usd(spec.backend.max_cost_usd)}, ${spec.resources.max_hours} h |`,
    `| outputs | ${cell(`${displayRepo(spec.artifacts.output_repo)} ${spec.artifacts.output_branch}`)} |`,
    '',
    `API: ${linksLine(spec.job_id)}`,
  ].join('\n');
}

/** grpoRun's current details: phase and host, step / max_steps, policy version, reward, staleness, idle share. */
export function grpoDetails(p: RlProgress, jobId: string, attempt: number): string {
  const rows: [string, string][] = [
    ['phase', p.phase],
    ['trainer host', p.host ?? 'none yet'],
  ];
  const l = p.latest;
  rows.push(['step', `${l?.step ?? 0} / ${p.max_steps}, policy v${p.policy_version}`]);
  if (l) {
    rows.push(['reward', `${l.reward_mean.toFixed(3)} ± ${l.reward_std.toFixed(3)}, loss ${l.loss.toFixed(4)}`]);
    rows.push(['staleness', `mean ${l.staleness_mean.toFixed(2)}, max ${l.staleness_max}`]);
    rows.push(['trainer idle', `${(l.trainer_idle_fraction * 100).toFixed(0)}%`]);
  }
  if (p.host_losses || p.steps_redone) rows.push(['host losses', `${p.host_losses} (${p.steps_redone} steps redone)`]);
  rows.push(['cost', usd(p.cost_usd)]);
  return [
    `**GRPO run of job ${cell(jobId)}, attempt ${attempt}**`,
    '',
    ...table(rows),
    '',
    `API: ${linksLine(jobId)}`,
  ].join('\n');
}

/** integrateResults' current details: what it evaluates, where it stands, the results so far (or why it failed). */
export function integrateDetails(o: {
  jobId: string;
  model: string;
  taskTypes: string[];
  stage: 'evaluating' | 'promoting' | 'done' | 'failed';
  evals?: EvalRecord[];
  failure?: string;
}): string {
  const rows: [string, string][] = [
    ['stage', o.stage],
    ['model', o.model],
    ['task types', o.taskTypes.join(', ')],
  ];
  const evals = evalsRow(o.evals ?? []);
  if (evals) rows.push(['evals', evals]);
  if (o.failure) rows.push(['error', o.failure]);
  return [`**Results of job ${cell(o.jobId)}**`, '', ...table(rows), '', `API: ${linksLine(o.jobId)}`].join('\n');
}
