/**
 * Reads a training-curves SVG back (no XML library in the tree): checks it is well formed (one root <svg>, every
 * tag closed in order, no script or external reference) and returns each polyline's raw points by series name.
 */
import type { CurvePoint } from '../../common/curves';

export interface ParsedCurves {
  title: string;
  series: Map<string, CurvePoint[]>;
  /** The drawn coordinates of each series (to check they stay inside the picture). */
  drawn: Map<string, [number, number][]>;
  width: number;
  height: number;
}

const unescape = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');

export function parseCurvesSvg(svg: string): ParsedCurves {
  const stack: string[] = [];
  const tagRe = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let lastEnd = 0;
  let roots = 0;
  const attrsOf = (text: string): Record<string, string> => Object.fromEntries([...text.matchAll(/([\w:-]+)="([^"]*)"/g)].map((m) => [m[1]!, unescape(m[2]!)]));
  const series = new Map<string, CurvePoint[]>();
  const drawn = new Map<string, [number, number][]>();
  let width = NaN;
  let height = NaN;
  for (const m of svg.matchAll(tagRe)) {
    const between = svg.slice(lastEnd, m.index);
    if (between.includes('<') || between.includes('>')) throw new Error(`not well formed near offset ${lastEnd}: ${between.slice(0, 80)}`);
    lastEnd = m.index + m[0].length;
    const [, close, name, attrText, self] = m as unknown as [string, string, string, string, string];
    if (/^script$|^foreignObject$|^image$|^use$/i.test(name) || /href=/.test(attrText)) throw new Error(`not self-contained: <${name}${attrText}>`);
    if (close) {
      if (stack.pop() !== name) throw new Error(`</${name}> closes nothing open`);
      continue;
    }
    if (stack.length === 0) {
      roots++;
      if (name !== 'svg') throw new Error(`the root is <${name}>, not <svg>`);
    }
    const attrs = attrsOf(attrText);
    if (name === 'svg') {
      width = Number(attrs.width);
      height = Number(attrs.height);
    }
    if (name === 'polyline' && attrs['data-series']) {
      const points = (attrs['data-points'] ?? '').split(' ').filter(Boolean).map((pair) => {
        const [step, value] = pair.split(',').map(Number) as [number, number];
        return { step, value };
      });
      series.set(attrs['data-series'], points);
      drawn.set(attrs['data-series'], (attrs.points ?? '').split(' ').filter(Boolean).map((p) => p.split(',').map(Number) as [number, number]));
    }
    if (!self) stack.push(name);
  }
  if (svg.slice(lastEnd).trim() !== '') throw new Error('text after the root element');
  if (stack.length || roots !== 1) throw new Error(`unclosed <${stack.join('>, <')}> or ${roots} roots`);
  const title = unescape(/<title>([^<]*)<\/title>/.exec(svg)?.[1] ?? '');
  return { title, series, drawn, width, height };
}
