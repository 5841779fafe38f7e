/**
 * A spec that passed acceptSpec (common/accept-spec.ts): the typed spec, the signed JSON exactly as submitted (what a
 * backend ships to the trainer, whose signature the trainer checks again) and its sha256 (the job's identity). One
 * value, so the three never travel apart. Types only: workflow code imports it (docs/architecture.md).
 */
import type { TrainingJobSpec } from './schema';

export interface SignedSpec {
  spec: TrainingJobSpec;
  raw: Record<string, unknown>;
  /** specHash(raw): sha256 of the canonical JSON, signature included. */
  sha256: string;
}
