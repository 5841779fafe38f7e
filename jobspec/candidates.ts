/** Zod-free (workflow code imports it, see test/unit/workflow-imports.test.ts). */
import type { TrainingJobSpec } from './schema';

/** The backends a job may run on, in the order its attempts try them: its provider, then its fallbacks. */
export function backendCandidates(spec: Pick<TrainingJobSpec, 'backend'>): string[] {
  return [spec.backend.provider, ...(spec.backend.fallbacks ?? [])];
}
