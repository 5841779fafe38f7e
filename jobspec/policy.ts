/**
 * The operator's policy for a valid, signed spec: what it may make the orchestrator do with the operator's
 * credentials, files and time. One pure function, used by the API's POST /jobs (403 naming the field) and by the
 * workflow's own validation (activities/control/activities.ts validateSpec), so a bare Temporal client is refused the same way.
 * No I/O here: resolving symlinks is the caller's `resolvePath` (common/spec-policy.ts builds a policy from the
 * operator config).
 */
import type { SpecIssue } from './issues';
import type { TrainingJobSpec } from './schema';

/** An output repository the operator allows: a URL prefix or glob, for every owner or only the listed ones. */
export interface OutputRepoRule {
  /**
   * A glob when it holds `*` (`*` matches within one path segment, `**` across segments; the whole URL must match),
   * else a URL prefix: the URL equals it, or continues it after a "/" (a prefix ending in "/" or ":" matches
   * everything under it).
   */
  match: string;
  /** did:key owners this rule is for; absent: every owner. */
  owners?: readonly string[];
}

export type CredentialKind = 'ssh' | 'token';

export interface SpecPolicy {
  /** `resources.max_hours` at most. */
  maxJobHours: number;
  /** Absolute directories under which file:// repositories and local model directories may lie (already resolved). */
  fileRoots: readonly string[];
  /** Remote output repositories allowed (file:// ones under fileRoots are always allowed). */
  outputRepos: readonly OutputRepoRule[];
  /** Every output branch starts with it ("" for none). */
  branchPrefix: string;
  /**
   * Whether the orchestrator pushes artifacts (results.enabled). When it does not (and for eval jobs, which commit
   * nothing), artifacts.output_repo and output_branch are never used, and not checked.
   */
  pushesArtifacts: boolean;
  /** The kind of credential the operator configured for a git URL, or undefined when none. */
  credentialFor(url: string): CredentialKind | undefined;
  /** An absolute, normalized path with symlinks resolved where it exists; default: the path itself. */
  resolvePath?(absolutePath: string): string;
}

/** Branch names that are some remote's default: never an output branch, whatever the prefix. */
const DEFAULT_BRANCH_NAMES = new Set(['main', 'master', 'head']);

/** Lexical normalization of an absolute POSIX path: `.` and `..` segments and repeated slashes go. */
export function normalizeAbsolutePath(p: string): string {
  const out: string[] = [];
  for (const segment of p.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return `/${out.join('/')}`;
}

/** Whether `p` is `root` or lies below it (both absolute and normalized). */
export function isUnder(p: string, root: string): boolean {
  return p === root || root === '/' || p.startsWith(`${root}/`);
}

function fileUrlLocalPath(url: string): string | undefined {
  if (!url.startsWith('file://')) return undefined;
  try {
    return decodeURIComponent(url.slice('file://'.length));
  } catch {
    return url.slice('file://'.length); // a malformed escape: judged as written
  }
}

/** ssh:// and scp-like `user@host:path` URLs (the schema's git URL forms). */
export function isSshUrl(url: string): boolean {
  return url.startsWith('ssh://') || /^[^/:@]+@[^/:]+:/.test(url);
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .split('**')
    .map((part) => part.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

export function ruleMatches(rule: OutputRepoRule, url: string, owner: string): boolean {
  if (rule.owners && !rule.owners.includes(owner)) return false;
  if (rule.match.includes('*')) return globToRegExp(rule.match).test(url);
  if (url === rule.match) return true;
  if (!url.startsWith(rule.match)) return false;
  return rule.match.endsWith('/') || rule.match.endsWith(':') || url[rule.match.length] === '/';
}

/** Dot segments (plain or percent-encoded) would let a URL climb out of the prefix it matched. */
function hasDotSegment(url: string): boolean {
  const pathPart = url.replace(/^[a-z]+:\/\/[^/]*/i, '').replace(/^[^/:@]+@[^/:]+:/, '');
  return /%2e/i.test(url) || pathPart.split('/').some((s) => s === '.' || s === '..');
}

export function checkSpecPolicy(spec: TrainingJobSpec, policy: SpecPolicy): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const resolve = (p: string): string => policy.resolvePath?.(normalizeAbsolutePath(p)) ?? normalizeAbsolutePath(p);
  const roots = policy.fileRoots.join(', ');
  const underRoots = (field: string, what: string, local: string): SpecIssue[] => {
    if (!local.startsWith('/')) {
      return [{ path: field, message: `${what} must be an absolute path under the operator's results.git.file_roots (${roots})` }];
    }
    const resolved = resolve(local);
    if (policy.fileRoots.some((root) => isUnder(resolved, root))) return [];
    return [
      {
        path: field,
        message: `${what} ${resolved} is outside the operator's results.git.file_roots (${roots}); use a path under one of them, or ask the operator to add its directory`,
      },
    ];
  };

  if (spec.resources.max_hours > policy.maxJobHours) {
    issues.push({
      path: 'resources.max_hours',
      message: `${spec.resources.max_hours} is over this orchestrator's max_job_hours (${policy.maxJobHours}); ask for at most ${policy.maxJobHours} hours`,
    });
  }

  const dataPath = fileUrlLocalPath(spec.data.repo);
  if (dataPath !== undefined) issues.push(...underRoots('data.repo', 'the file:// data repository', dataPath));

  if (spec.base_model.source === 'local') issues.push(...underRoots('base_model.name', 'the local model directory', spec.base_model.name));

  // Eval jobs train nothing and commit nothing: their output repo and branch are never used either.
  if (policy.pushesArtifacts && spec.job_type !== 'eval') issues.push(...outputIssues(spec, policy, underRoots));
  return issues;
}

function outputIssues(
  spec: TrainingJobSpec,
  policy: SpecPolicy,
  underRoots: (field: string, what: string, local: string) => SpecIssue[],
): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const repo = spec.artifacts.output_repo;
  const outputPath = fileUrlLocalPath(repo);
  if (outputPath !== undefined) {
    issues.push(...underRoots('artifacts.output_repo', 'the file:// output repository', outputPath));
  } else if (hasDotSegment(repo)) {
    issues.push({ path: 'artifacts.output_repo', message: 'must not contain "." or ".." path segments (plain or %-encoded)' });
  } else if (!policy.outputRepos.some((rule) => ruleMatches(rule, repo, spec.owner_did))) {
    issues.push({
      path: 'artifacts.output_repo',
      message: `${repo} matches none of the operator's results.git.output_repos for this owner; use an allowed repository (or a file:// one under results.git.file_roots)`,
    });
  } else {
    const want: CredentialKind = isSshUrl(repo) ? 'ssh' : 'token';
    const have = policy.credentialFor(repo);
    if (have !== want) {
      issues.push({
        path: 'artifacts.output_repo',
        message: `the operator configured no ${want === 'ssh' ? 'ssh_key_file' : 'token'} credential for ${repo} in results.git.credentials; the orchestrator pushes only with a credential meant for it, never with its host user's own keys`,
      });
    }
  }

  const branch = spec.artifacts.output_branch;
  if (!branch.startsWith(policy.branchPrefix)) {
    issues.push({
      path: 'artifacts.output_branch',
      message: `must start with "${policy.branchPrefix}" (the operator's results.git.branch_prefix), e.g. "${policy.branchPrefix}\${job_id}"`,
    });
  } else if (DEFAULT_BRANCH_NAMES.has(branch.toLowerCase())) {
    issues.push({
      path: 'artifacts.output_branch',
      message: `"${branch}" is a default branch name; output goes to a branch of its own, e.g. "jobs/\${job_id}"`,
    });
  }
  return issues;
}
