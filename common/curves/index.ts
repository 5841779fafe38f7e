/** Training curves (series from log lines, a self-contained SVG, a terminal sparkline): pure functions. */
export { mainSeries, seriesFromLog, type CurvePoint, type Series } from './series';
export { escapeXml, niceTicks, rawPoints, renderSvg, type SvgOptions } from './svg';
export { sparkline } from './sparkline';

/** The trainer's log of steps, committed with the model; the curves are drawn from it. */
export const TRAINING_LOG_FILE = 'training_log.jsonl';

/** The file committed next to training_log.jsonl. */
export const CURVES_FILE = 'training_curves.svg';
