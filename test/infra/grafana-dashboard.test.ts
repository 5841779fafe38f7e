/**
 * infra/grafana/forge-dashboard.json, validated offline: a Grafana dashboard (schemaVersion, uid, a Prometheus
 * datasource variable, panels on the 24-column grid, targets with PromQL), with the panels the operators asked for,
 * and every metric it queries one that is served: forge_* names from the very registries the API and workers
 * serve (and a worker health server's /metrics), temporal_* names present in the Temporal Core library the
 * workers load (FORGE_METRICS_ADDRESS).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { Registry } from 'prom-client';
import { z } from 'zod';
import { reaperRegistry } from '../../activities/reaper-metrics';
import { rlRegistry } from '../../activities/rl/metrics';
import { JobMetrics } from '../../client/api/job-metrics';
import { createMetrics } from '../../client/api/metrics';
import { startHealthServer } from '../../workers/runtime';

const root = path.resolve(__dirname, '..', '..');
const file = path.join(root, 'infra', 'grafana', 'forge-dashboard.json');

const datasource = z.object({ type: z.literal('prometheus'), uid: z.literal('${datasource}') });
const target = z.object({ refId: z.string().regex(/^[A-Z]$/), expr: z.string().min(1), legendFormat: z.string(), datasource });
const gridPos = z.object({
  h: z.number().int().positive(),
  w: z.number().int().min(1).max(24),
  x: z.number().int().min(0).max(23),
  y: z.number().int().min(0),
});
const panel = z.discriminatedUnion('type', [
  z.object({ id: z.number().int(), type: z.literal('row'), title: z.string(), gridPos, collapsed: z.boolean(), panels: z.array(z.unknown()) }),
  z.object({
    id: z.number().int(),
    type: z.enum(['timeseries', 'stat', 'bargauge', 'gauge', 'table']),
    title: z.string().min(1),
    description: z.string().min(1),
    datasource,
    gridPos,
    targets: z.array(target).min(1),
    fieldConfig: z.object({ defaults: z.record(z.string(), z.unknown()), overrides: z.array(z.unknown()) }),
    options: z.record(z.string(), z.unknown()),
  }),
]);
const dashboard = z.object({
  uid: z.string().regex(/^[a-z0-9-]{1,40}$/),
  title: z.string().min(1),
  schemaVersion: z.number().int().min(36),
  version: z.number().int(),
  time: z.object({ from: z.string(), to: z.string() }),
  templating: z.object({ list: z.array(z.object({ name: z.string(), type: z.string(), query: z.string() }).loose()) }),
  panels: z.array(panel).min(1),
});

/** Metric names in a PromQL expression: identifiers not inside {…} or [...], minus functions, keywords and labels after by/without. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without)\s*\([^)]*\)/g, ' ')
    .replace(/"[^"]*"/g, ' ');
  const words = bare.match(/[A-Za-z_:][A-Za-z0-9_:]*/g) ?? [];
  const functions = new Set(['sum', 'max', 'min', 'avg', 'count', 'rate', 'increase', 'irate', 'histogram_quantile', 'topk', 'bottomk', 'abs', 'clamp_min', 'clamp_max', 'sort', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool']);
  return words.filter((w) => !functions.has(w) && !/^\d/.test(w));
}

/** A histogram's series name → the metric it belongs to. */
const base = (name: string, histograms: Set<string>): string => {
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  return m && histograms.has(m[1]!) ? m[1]! : name;
};

async function servedForgeMetrics(): Promise<{ names: Set<string>; histograms: Set<string> }> {
  const registries: Registry[] = [createMetrics().registry, reaperRegistry, rlRegistry];
  const jobs = new Registry();
  // A lazy connection is never dialled: the metrics are only registered, not collected.
  new JobMetrics({ client: new Client({ connection: Connection.lazy({ address: '127.0.0.1:1' }) }), registry: jobs });
  registries.push(jobs);
  const names = new Set<string>();
  const histograms = new Set<string>();
  for (const r of registries) {
    for (const m of r.getMetricsAsArray()) {
      names.add(m.name);
      if (String(m.type) === 'histogram') histograms.add(m.name);
    }
  }
  // A worker's health server: the process metrics and forge_worker_running, as scraped.
  const health = await startHealthServer('test', '127.0.0.1:0', { getState: () => 'RUNNING' });
  try {
    const text = await (await fetch(`${health.url}/metrics`)).text();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      names.add(m[1]!);
      if (m[2] === 'histogram') histograms.add(m[1]!);
    }
  } finally {
    await health.close();
  }
  return { names, histograms };
}

/** Temporal Core's metric names are compiled into its native library: `temporal_<name>` must appear there. */
function coreLibraryText(): string {
  const lib = require.resolve('@temporalio/core-bridge/package.json');
  const arch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
  const osPart = process.platform === 'darwin' ? 'apple-darwin' : 'unknown-linux-gnu';
  return readFileSync(path.join(path.dirname(lib), 'releases', `${arch}-${osPart}`, 'index.node')).toString('latin1');
}

test('the dashboard is a well-formed Grafana dashboard on a Prometheus datasource variable', () => {
  const d = dashboard.parse(JSON.parse(readFileSync(file, 'utf8')));
  expect(d.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
  const ids = d.panels.map((p) => p.id);
  expect(new Set(ids).size).toBe(ids.length);
  for (const p of d.panels) {
    expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
    if (p.type !== 'row') expect(new Set(p.targets.map((t) => t.refId)).size).toBe(p.targets.length);
  }
  // No two panels overlap on the grid.
  const cells = new Set<string>();
  for (const p of d.panels) {
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
        const cell = `${x},${y}`;
        expect([p.title, cells.has(cell)]).toEqual([p.title, false]);
        cells.add(cell);
      }
    }
  }
  const titles = d.panels.map((p) => p.title.toLowerCase());
  for (const wanted of ['jobs by state', 'admissions', 'queue backlog', 'attempt outcomes by failure class', 'cost', 'rl trainer idle share']) {
    expect([wanted, titles.some((t) => t.includes(wanted))]).toEqual([wanted, true]);
  }
});

test('every metric the dashboard queries is one the API or a worker serves', async () => {
  const d = dashboard.parse(JSON.parse(readFileSync(file, 'utf8')));
  const { names, histograms } = await servedForgeMetrics();
  const core = coreLibraryText();
  const used = new Set<string>();
  for (const p of d.panels) {
    if (p.type === 'row') continue;
    for (const t of p.targets) {
      const found = metricNames(t.expr);
      expect([t.expr, found.length > 0]).toEqual([t.expr, true]);
      for (const n of found) used.add(n);
    }
  }
  const unknown: string[] = [];
  for (const n of used) {
    if (n.startsWith('forge_')) {
      if (!names.has(base(n, histograms))) unknown.push(n);
    } else if (n.startsWith('temporal_')) {
      const coreName = n.slice('temporal_'.length).replace(/_(bucket|sum|count)$/, '');
      if (!core.includes(coreName)) unknown.push(n);
    } else unknown.push(n);
  }
  expect(unknown).toEqual([]);
  // The helper itself: it finds names and skips labels, functions and ranges.
  expect(metricNames('histogram_quantile(0.95, sum by (le, task_queue) (rate(x_bucket{a="b"}[5m]))) / max(y)')).toEqual(['x_bucket', 'y']);
  for (const wanted of ['forge_jobs', 'forge_api_job_submissions_total', 'forge_job_attempt_failures_total', 'forge_job_cost_usd_total', 'forge_rl_trainer_idle_fraction_sum']) {
    expect(used.has(wanted)).toBe(true);
  }
});
