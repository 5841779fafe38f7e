/** common/curves: series from a trainer's log lines, the SVG (read back exactly), the terminal sparkline. */
import { niceTicks, renderSvg, seriesFromLog, sparkline, type Series } from '../../common/curves';
import { parseCurvesSvg } from '../helpers/curves-svg';

const j = (o: object): string => JSON.stringify(o);

describe('seriesFromLog', () => {
  test('finetune: train loss from progress, validation loss from eval; other lines skipped; a resumed step keeps its last value', () => {
    const lines = [
      'forge-trainer: starting',
      j({ event: 'start', pid: 1 }),
      j({ event: 'eval', step: 0, val_loss: 3.5 }),
      j({ event: 'progress', step: 1, max_steps: 4, loss: 3.25, lr: 0.001 }),
      j({ event: 'progress', step: 2, max_steps: 4, loss: 2.5 }),
      j({ event: 'eval', step: 2, val_loss: null }),
      '{not json',
      // attempt 2 resumed from step 1's checkpoint: step 2 again
      j({ event: 'progress', step: 2, max_steps: 4, loss: 2.4 }),
      j({ event: 'progress', step: 4, max_steps: 4, loss: 1.125, time: 1700000000.5 }),
      j({ event: 'eval', step: 4, val_loss: 1.5 }),
    ];
    expect(seriesFromLog(lines, 'finetune')).toEqual([
      { name: 'train_loss', panel: 'loss', x: 'step', points: [{ step: 1, value: 3.25 }, { step: 2, value: 2.4 }, { step: 4, value: 1.125 }] },
      { name: 'val_loss', panel: 'loss', x: 'step', points: [{ step: 0, value: 3.5 }, { step: 4, value: 1.5 }] },
    ]);
  });

  test('rl: mean reward, KL and mean staleness from step lines, each its own panel', () => {
    const step = (s: number, r: number) => j({ event: 'step', step: s, policy_version: s, reward_mean: r, reward_std: 0.1, loss: 0.2, kl: s / 100, staleness_mean: 0.5, staleness_max: 1 });
    const got = seriesFromLog([step(1, 0.25), step(2, 0.5), j({ event: 'progress', step: 2, loss: 9 })], 'rl');
    expect(got.map((s) => [s.name, s.panel, s.points])).toEqual([
      ['reward_mean', 'reward', [{ step: 1, value: 0.25 }, { step: 2, value: 0.5 }]],
      ['kl', 'kl', [{ step: 1, value: 0.01 }, { step: 2, value: 0.02 }]],
      ['staleness_mean', 'staleness', [{ step: 1, value: 0.5 }, { step: 2, value: 0.5 }]],
    ]);
  });

  test('p2pfl: per-round loss, the mean over nodes of the experiment log, else the rounds of the progress events', () => {
    const log = [j({ node: 'a', round: 1, steps: 5, loss: 2 }), j({ node: 'b', round: 1, steps: 5, loss: 1 }), j({ node: 'a', round: 2, steps: 5, loss: 0.5 })];
    expect(seriesFromLog(log, 'finetune')).toEqual([{ name: 'round_loss', panel: 'loss', x: 'round', points: [{ step: 1, value: 1.5 }, { step: 2, value: 0.5 }] }]);
    const stdout = [j({ event: 'progress', step: 5, max_steps: 10, loss: 2, round: 1 }), j({ event: 'progress', step: 10, max_steps: 10, loss: 1, round: 2 })];
    expect(seriesFromLog(stdout, 'finetune')).toEqual([{ name: 'round_loss', panel: 'loss', x: 'round', points: [{ step: 1, value: 2 }, { step: 2, value: 1 }] }]);
  });

  test('nothing yet: no series', () => {
    expect(seriesFromLog([], 'finetune')).toEqual([]);
    expect(seriesFromLog(['hello', j({ event: 'start' })], 'rl')).toEqual([]);
  });
});

describe('renderSvg', () => {
  const series: Series[] = [
    { name: 'train_loss', panel: 'loss', x: 'step', points: [{ step: 1, value: 3.1415926535 }, { step: 2, value: 0.1 + 0.2 }, { step: 10, value: 1e-7 }] },
    { name: 'val_loss', panel: 'loss', x: 'step', points: [{ step: 0, value: 4 }] },
    { name: 'kl', panel: 'kl', x: 'step', points: [{ step: 5, value: -0.5 }, { step: 6, value: -0.5 }] },
  ];

  test('a well-formed, self-contained SVG whose polylines carry the exact points, drawn inside the picture', () => {
    const svg = renderSvg(series, { title: 'job <1> & "friends"' });
    const parsed = parseCurvesSvg(svg);
    expect(parsed.title).toBe('job <1> & "friends"');
    expect([...parsed.series.keys()]).toEqual(['train_loss', 'val_loss', 'kl']);
    for (const s of series) expect(parsed.series.get(s.name)).toEqual(s.points);
    for (const [name, coords] of parsed.drawn) {
      expect([name, coords.length]).toEqual([name, series.find((s) => s.name === name)!.points.length]);
      for (const [x, y] of coords) {
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(parsed.width);
        expect(y).toBeGreaterThanOrEqual(0);
        expect(y).toBeLessThanOrEqual(parsed.height);
      }
    }
    // Two panels (loss, kl), a legend entry per series with its last value.
    expect(svg.match(/data-panel=/g)).toHaveLength(2);
    expect(svg).toContain('validation loss 4');
    // Deterministic: the committed file is signed in the manifest, a retry must render the same bytes.
    expect(renderSvg(series, { title: 'job <1> & "friends"' })).toBe(svg);
  });

  test('a lower value is drawn lower on the page (SVG y grows downwards)', () => {
    const parsed = parseCurvesSvg(renderSvg([series[0]!], { title: 't' }));
    const ys = parsed.drawn.get('train_loss')!.map(([, y]) => y);
    expect(ys[0]).toBeLessThan(ys[2]!); // 3.14 (first) is above 1e-7 (last)
  });

  test('no series: still a valid SVG that says there is nothing yet', () => {
    const svg = renderSvg([], { title: 'empty' });
    expect(parseCurvesSvg(svg).series.size).toBe(0);
    expect(svg).toContain('no training points yet');
  });

  test('niceTicks: round steps covering the range', () => {
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(0.13, 0.52, 4)).toEqual([0.2, 0.3, 0.4, 0.5]);
    expect(niceTicks(3, 3)).toEqual([3]);
    // Steps are whole numbers: no tick at step 1.5.
    expect(niceTicks(1, 5, 8, true)).toEqual([1, 2, 3, 4, 5]);
    expect(niceTicks(0, 300, 8, true)).toEqual([0, 50, 100, 150, 200, 250, 300]);
  });
});

describe('sparkline', () => {
  test('one block per value, lowest ▁ to highest █', () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7])).toBe('▁▂▃▄▅▆▇█');
    expect(sparkline([2, 2, 2])).toBe('▁▁▁');
    expect(sparkline([])).toBe('');
    expect(sparkline([1, Number.NaN, 0])).toBe('█▁');
  });

  test('more values than width: bucket means, exactly width characters', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    const line = sparkline(values, 10);
    expect([...line]).toHaveLength(10);
    expect(line[0]).toBe('█');
    expect(line.at(-1)).toBe('▁');
  });
});
