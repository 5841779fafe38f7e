/**
 * A spec's validation issues, each naming one field. Free of zod on purpose: workflow code imports this module, and
 * the workflow sandbox evaluates every module it imports again for each new workflow (zod's schemas cost ~25 ms and
 * ~1 MB each time: bench/lifecycle, bench/load).
 */
export interface SpecIssue {
  /** Dotted path such as `hyperparameters.learning_rate` or `backend.fallbacks.1`; `(root)` for the whole spec. */
  path: string;
  message: string;
}

export function formatSpecIssues(issues: readonly SpecIssue[]): string {
  return issues.map((issue) => `${issue.path}: ${issue.message}`).join('\n');
}
