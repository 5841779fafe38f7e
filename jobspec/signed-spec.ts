/**
 * A spec that passed acceptSpec (common/accept-spec.ts): the typed spec, the signed JSON exactly as submitted (what a
 * backend ships to the trainer, whose signature the trainer checks again) and its sha256 (the job's identity). One
 * value, so the three never travel apart. Workflow code imports its types only (docs/architecture.md).
 */
import type { TrainingJobSpec } from './schema';

export interface SignedSpec {
  spec: TrainingJobSpec;
  raw: Record<string, unknown>;
  /** specHash(raw): sha256 of the canonical JSON, signature included. */
  sha256: string;
}

/**
 * The spec as a backend ships it to the trainer: a SignedSpec — or, rebuilding the manifest of an Akash deployment
 * whose spec was recorded as text (activities/backends/akash/akash-manifest-source.ts), that text byte for byte.
 */
export interface ShippedSpec {
  spec: TrainingJobSpec;
  raw: SignedSpec['raw'] | string;
}

/** The file the trainer reads (FORGE_SPEC): the signed JSON, or a recorded text byte for byte. */
export function shippedSpecText(shipped: ShippedSpec): string {
  if (typeof shipped.raw === 'string') return shipped.raw;
  return `${JSON.stringify(shipped.raw, null, 2)}\n`;
}
