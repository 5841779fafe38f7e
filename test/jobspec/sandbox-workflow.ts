/**
 * A probe workflow: runs the spec module inside Temporal's workflow sandbox (no Node built-ins, no WebCrypto).
 */
import {
  canonicalize,
  formatSpecIssues,
  parseTrainingJobSpec,
  specHash,
  verifyCancelRequest,
  verifySpecSignature,
  type VerifyResult,
} from '../../jobspec';

export interface ProbeResult {
  parsed: string;
  outputBranch: string | null;
  signature: VerifyResult;
  cancel: VerifyResult;
  staleCancel: VerifyResult;
  hash: string;
  canonical: string;
}

export async function specSandboxProbe(raw: Record<string, unknown>, cancel: unknown, nowSeconds: number): Promise<ProbeResult> {
  const parsed = parseTrainingJobSpec(raw);
  const expected = { jobId: String(raw.job_id), ownerDid: String(raw.owner_did), nowSeconds };
  return {
    parsed: parsed.ok ? 'ok' : formatSpecIssues(parsed.issues),
    outputBranch: parsed.ok ? parsed.spec.artifacts.output_branch : null,
    signature: verifySpecSignature(raw),
    cancel: verifyCancelRequest(cancel, expected),
    staleCancel: verifyCancelRequest(cancel, { ...expected, nowSeconds: nowSeconds + 3600 }),
    hash: specHash(raw),
    canonical: canonicalize({ b: [1e21, -0], a: '\u20ac' }),
  };
}
