/**
 * training_curves.svg, committed with the model: rendered from the training_log.jsonl the trainer left in the
 * collected outputs (common/curves), deterministically (the manifest signs its bytes; a retried commit renders the
 * same ones). Written over any file of that name the trainer left: the committed curve is always the log's.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CURVES_FILE, renderSvg, seriesFromLog, TRAINING_LOG_FILE } from '../common/curves';
import type { TrainingJobSpec } from '../jobspec/schema';

/** Adds training_curves.svg to `staging` when it holds a training log; returns the kept paths, sorted. */
export async function addCurvesFile(staging: string, kept: readonly string[], spec: Pick<TrainingJobSpec, 'job_id' | 'job_type' | 'base_model'>): Promise<string[]> {
  if (!kept.includes(TRAINING_LOG_FILE)) return [...kept];
  const log = await fs.readFile(path.join(staging, TRAINING_LOG_FILE), 'utf8');
  const series = seriesFromLog(log.split('\n'), spec.job_type);
  const svg = renderSvg(series, { title: `job ${spec.job_id} (${spec.job_type} of ${spec.base_model.name})` });
  await fs.rm(path.join(staging, CURVES_FILE), { force: true });
  await fs.writeFile(path.join(staging, CURVES_FILE), svg, { mode: 0o600 });
  return [...new Set([...kept, CURVES_FILE])].sort();
}
