/** A terminal sparkline: one block character per value (the mean of a bucket when there are more values than width). */
const BLOCKS = '▁▂▃▄▅▆▇█';

export function sparkline(values: readonly number[], width = 40): string {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0 || width < 1) return '';
  const buckets: number[] = [];
  const n = Math.min(width, finite.length);
  for (let i = 0; i < n; i++) {
    const part = finite.slice(Math.floor((i * finite.length) / n), Math.floor(((i + 1) * finite.length) / n));
    buckets.push(part.reduce((a, b) => a + b, 0) / part.length);
  }
  const lo = Math.min(...buckets);
  const hi = Math.max(...buckets);
  return buckets.map((v) => BLOCKS[hi > lo ? Math.round(((v - lo) / (hi - lo)) * (BLOCKS.length - 1)) : 0]).join('');
}
