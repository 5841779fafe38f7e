/**
 * Training curves as one self-contained SVG (no script, no external reference): a panel per y axis (loss; or
 * reward, KL and staleness), stacked on a shared x axis, with ticks, grid, a legend and one polyline per series.
 * Every polyline carries its raw points as `data-points="step,value step,value …"` (values as JavaScript prints
 * them, so parsing them back gives the very numbers of the log) and `data-series="<name>"`.
 */
import type { CurvePoint, Series } from './series';

export interface SvgOptions {
  title: string;
  /** Total width in px (default 760). */
  width?: number;
}

const PANEL_HEIGHT = 200;
const TOP = 44;
const BOTTOM = 44;
const GAP = 28;
const LEFT = 70;
const RIGHT = 170;
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];
const LABELS: Record<string, string> = {
  train_loss: 'train loss',
  val_loss: 'validation loss',
  reward_mean: 'mean reward',
  kl: 'KL',
  staleness_mean: 'mean staleness',
  round_loss: 'loss (mean over nodes)',
};

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** Round, readable tick values (1, 2 or 5 times a power of ten; whole numbers only when `integer`) covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5, integer = false): number[] {
  if (!(max > min)) return [min];
  const raw = Math.max(integer ? 1 : 0, (max - min) / Math.max(1, count));
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmt(v: number): string {
  return String(Number(v.toPrecision(6)));
}

/** [lo, hi] with room (`margin` of the span on each side): a flat series gets a band around its value. */
function range(values: number[], margin = 0): [number, number] {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (hi > lo) return [lo - (hi - lo) * margin, hi + (hi - lo) * margin];
  const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
  return [lo - pad, hi + pad];
}

const coord = (v: number): string => String(Math.round(v * 100) / 100);

export function renderSvg(series: readonly Series[], o: SvgOptions): string {
  const width = o.width ?? 760;
  const plotW = width - LEFT - RIGHT;
  const panels = [...new Set(series.map((s) => s.panel))];
  const height = TOP + BOTTOM + Math.max(1, panels.length) * PANEL_HEIGHT + Math.max(0, panels.length - 1) * GAP;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(o.title)}</title>`,
    `<desc>${escapeXml(describe(series))}</desc>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="24" font-size="14" font-weight="bold">${escapeXml(o.title)}</text>`,
  ];
  if (series.length === 0) {
    out.push(`<text x="${width / 2}" y="${TOP + PANEL_HEIGHT / 2}" text-anchor="middle" fill="#666">no training points yet</text>`, '</svg>');
    return out.join('\n') + '\n';
  }
  const xs = series.flatMap((s) => s.points.map((p) => p.step));
  const [x0, x1] = range(xs);
  const xOf = (x: number): number => LEFT + ((x - x0) / (x1 - x0)) * plotW;
  const xLabel = series[0]!.x;
  panels.forEach((panel, pi) => {
    const top = TOP + pi * (PANEL_HEIGHT + GAP);
    const inPanel = series.filter((s) => s.panel === panel);
    const [y0, y1] = range(inPanel.flatMap((s) => s.points.map((p) => p.value)), 0.05);
    const yOf = (y: number): number => top + PANEL_HEIGHT - ((y - y0) / (y1 - y0)) * PANEL_HEIGHT;
    out.push(`<g class="panel" data-panel="${escapeXml(panel)}">`);
    out.push(`<rect x="${LEFT}" y="${top}" width="${plotW}" height="${PANEL_HEIGHT}" fill="none" stroke="#999"/>`);
    for (const t of niceTicks(y0, y1)) {
      const y = coord(yOf(t));
      out.push(`<line x1="${LEFT}" x2="${LEFT + plotW}" y1="${y}" y2="${y}" stroke="#eee"/>`);
      out.push(`<text x="${LEFT - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
    }
    out.push(`<text transform="translate(16 ${top + PANEL_HEIGHT / 2}) rotate(-90)" text-anchor="middle">${escapeXml(panel)}</text>`);
    // x ticks under every panel (panels may be far apart), the axis name under the last.
    for (const t of niceTicks(x0, x1, 8, xs.every(Number.isInteger))) {
      const x = coord(xOf(t));
      out.push(`<line x1="${x}" x2="${x}" y1="${top + PANEL_HEIGHT}" y2="${top + PANEL_HEIGHT + 4}" stroke="#999"/>`);
      out.push(`<text x="${x}" y="${top + PANEL_HEIGHT + 16}" text-anchor="middle">${fmt(t)}</text>`);
    }
    inPanel.forEach((s, si) => {
      const color = COLORS[series.indexOf(s) % COLORS.length]!;
      const pts = s.points.map((p) => `${coord(xOf(p.step))},${coord(yOf(p.value))}`).join(' ');
      out.push(
        `<polyline data-series="${escapeXml(s.name)}" data-points="${rawPoints(s.points)}" points="${pts}" fill="none" stroke="${color}" stroke-width="1.5"/>`,
      );
      if (s.points.length <= 60) {
        for (const p of s.points) out.push(`<circle cx="${coord(xOf(p.step))}" cy="${coord(yOf(p.value))}" r="2" fill="${color}"/>`);
      }
      const ly = top + 14 + si * 18;
      const last = s.points.at(-1)!;
      out.push(`<line x1="${LEFT + plotW + 12}" x2="${LEFT + plotW + 32}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`);
      out.push(`<text x="${LEFT + plotW + 38}" y="${ly}" dominant-baseline="middle">${escapeXml(LABELS[s.name] ?? s.name)} ${fmt(last.value)}</text>`);
    });
    out.push('</g>');
  });
  out.push(`<text x="${LEFT + plotW / 2}" y="${height - 10}" text-anchor="middle">${xLabel}</text>`, '</svg>');
  return out.join('\n') + '\n';
}

/** `step,value step,value …`: the raw points, exactly. */
export function rawPoints(points: readonly CurvePoint[]): string {
  return points.map((p) => `${p.step},${p.value}`).join(' ');
}

function describe(series: readonly Series[]): string {
  if (series.length === 0) return 'no training points yet';
  return series
    .map((s) => `${s.name}: ${s.points.length} points, ${s.x} ${s.points[0]!.step} to ${s.points.at(-1)!.step}, last ${s.points.at(-1)!.value}`)
    .join('; ');
}
