/** cf-check-training --watch: the job's main training curve (loss, or mean reward for rl) as a terminal sparkline. */
import { sparkline } from '../../common/curves';
import { curvesResponseSchema } from '../api/curves';
import type { Output } from './shared/output';
import { parseAnswer, type ApiClient } from './shared/api-client';

export const SPARKLINE_WIDTH = 40;

/** `curve  train_loss ▇▅▃▂▁ last 0.41 at step 37`, or null while the job has no point (or the API has no curves). */
export async function curveLine(api: ApiClient, jobId: string, width = SPARKLINE_WIDTH): Promise<string | null> {
  const res = await api.request('GET', `/jobs/${jobId}/curves`);
  if (res.status !== 200) return null;
  const main = parseAnswer(curvesResponseSchema, res.body, 'job curves').series[0];
  const last = main?.points.at(-1);
  if (!main || !last) return null;
  return `curve     ${main.name} ${sparkline(main.points.map((p) => p.value), width)} last ${Number(last.value.toPrecision(6))} at ${main.x} ${last.step}`;
}

/** A watch's refresh: prints the curve when it changed since the last one printed. */
export function curveWatcher(api: ApiClient, jobId: string, out: Output): () => Promise<void> {
  let printed = '';
  return async () => {
    let line: string | null;
    try {
      line = await curveLine(api, jobId);
    } catch {
      return; // advisory: an API that cannot answer now is reported by the status reads
    }
    if (line === null || line === printed) return;
    printed = line;
    if (out.json) out.data({ event: 'curve', job_id: jobId, line });
    else out.line(line);
  };
}
