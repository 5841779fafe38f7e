/**
 * A job's training curves as the API serves them (GET /jobs/:id/curves.svg and /curves): the series of the log
 * lines every deployment's backend returns (`logs()`, the trainer's event lines: live while the job runs); while
 * those hold no point, the committed training_log.jsonl (a remote provider's logs are gone once its lease closed),
 * and else the progress the status query carries (each attempt's last step and loss, an rl run's latest step line).
 * Limits: a remote job whose logs are gone shows only that progress until its artifacts are committed; an rl run's
 * backend returns its training log once the run has ended. The committed training_curves.svg
 * (GET /jobs/:id/artifacts/training_curves.svg) has the full curve of the attempt that succeeded.
 */
import { z } from 'zod';
import type { LogChunk } from '../../activities/backends/types';
import type { ApiBackendReader } from './backend-readers';
import { artifactManifestSchema } from '../../common/artifact-manifest';
import type { ArtifactSource } from './artifacts';
import { seriesFromLog, TRAINING_LOG_FILE, type Series } from '../../common/curves';
import type { JobStatus } from '../../workflows/messages';

const pointSchema = z.object({ step: z.number(), value: z.number() });
/** The answer of GET /jobs/:id/curves (what cf-check-training --watch draws). */
export const curvesResponseSchema = z.object({
  job_id: z.string(),
  state: z.string(),
  source: z.enum(['logs', 'artifacts', 'progress', 'none']),
  series: z.array(z.object({ name: z.string(), panel: z.string(), x: z.enum(['step', 'round']), points: z.array(pointSchema) })),
  unreadable: z.array(z.object({ attempt: z.number(), backend: z.string(), detail: z.string() })),
  svg_url: z.string(),
});

/** Bounds on one request's reading: pages per deployment and lines in all (a runaway log must not exhaust the API). */
const MAX_PAGES = 200;
const MAX_LINES = 500_000;

export interface JobCurves {
  series: Series[];
  /** Where the points came from: the backends' logs, the committed training log, the status's progress, or none. */
  source: 'logs' | 'artifacts' | 'progress' | 'none';
  /** Deployments whose logs could not be read, with why. */
  unreadable: { attempt: number; backend: string; detail: string }[];
}

async function readAllLines(backend: ApiBackendReader, d: JobStatus['deployments'][number], budget: { lines: number }): Promise<string[]> {
  const lines: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES && budget.lines > 0; page++) {
    // A reader with eventLines returns stdout's event lines of many pages at once (a page may hold none of them).
    const chunk: LogChunk = backend.eventLines ? await backend.eventLines(d.ref, cursor) : await backend.logs(d.ref, cursor);
    if ((chunk.lines.length === 0 && !backend.eventLines) || chunk.cursor === cursor) break;
    for (const l of chunk.lines) if (l.stream === 'stdout') lines.push(l.line);
    budget.lines -= chunk.lines.length;
    cursor = chunk.cursor;
  }
  return lines;
}

/** The points the status query holds: each attempt's last reported step (train loss), an rl run's latest line. */
export function progressLines(status: JobStatus): string[] {
  const lines = status.deployments.flatMap((d) =>
    d.progress && d.progress.loss !== undefined ? [JSON.stringify({ event: 'progress', step: d.progress.step, loss: d.progress.loss })] : [],
  );
  const latest = status.rl?.latest;
  if (latest) lines.push(JSON.stringify({ event: 'step', ...latest }));
  return lines;
}

/**
 * `committedLog`: the job's committed training_log.jsonl (null when it has none), read when the backends' logs hold
 * no point (a remote provider's logs are gone once its lease closed).
 */
export async function jobCurves(
  status: JobStatus,
  backends: ReadonlyMap<string, ApiBackendReader>,
  committedLog?: () => Promise<string | null>,
): Promise<JobCurves> {
  const lines: string[] = [];
  const unreadable: JobCurves['unreadable'] = [];
  const budget = { lines: MAX_LINES };
  for (const d of status.deployments) {
    const backend = backends.get(d.ref.backend);
    if (!backend) {
      unreadable.push({ attempt: d.attempt, backend: d.backend, detail: `backend "${d.backend}" is not configured on this API` });
      continue;
    }
    try {
      lines.push(...(await readAllLines(backend, d, budget)));
    } catch (err) {
      unreadable.push({ attempt: d.attempt, backend: d.backend, detail: err instanceof Error ? err.message : String(err) });
    }
  }
  const fromLogs = seriesFromLog(lines, status.job_type);
  if (fromLogs.length) return { series: fromLogs, source: 'logs', unreadable };
  if (status.artifacts && committedLog) {
    const text = await committedLog();
    const fromArtifacts = text === null ? [] : seriesFromLog(text.split('\n'), status.job_type);
    if (fromArtifacts.length) return { series: fromArtifacts, source: 'artifacts', unreadable };
  }
  const fromProgress = seriesFromLog(progressLines(status), status.job_type);
  return { series: fromProgress, source: fromProgress.length ? 'progress' : 'none', unreadable };
}

/** The most bytes of a committed training log the API reads for a curve. */
const MAX_COMMITTED_LOG_BYTES = 64 * 1024 * 1024;

/** Reads the job's committed training_log.jsonl through the API's artifact source (null: none, or too large). */
export function committedTrainingLog(artifacts: ArtifactSource, status: JobStatus): () => Promise<string | null> {
  return async () => {
    const manifest = artifactManifestSchema.safeParse(await artifacts.manifest(status.job_id, status));
    const file = manifest.success ? manifest.data.files.find((f) => f.path === TRAINING_LOG_FILE) : undefined;
    if (!file || file.size > MAX_COMMITTED_LOG_BYTES) return null;
    const chunks: Buffer[] = [];
    for await (const chunk of await artifacts.open(status.job_id, file, status))
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
    return Buffer.concat(chunks).toString('utf8');
  };
}

export function curvesTitle(status: JobStatus): string {
  return `job ${status.job_id} (${status.job_type ?? 'job'}, ${status.state.toLowerCase()})`;
}
