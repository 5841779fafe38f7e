/**
 * The operator's spec policy (jobspec/policy.ts) from the operator config, with paths resolved on this host: `..` and
 * symlinks, as far as a path exists. One place for both the API's POST /jobs and the workflow's validateSpec.
 */
import { checkSpecPolicy, type SpecPolicy } from '../jobspec/policy';
import type { SpecIssue } from '../jobspec/issues';
import type { TrainingJobSpec } from '../jobspec/schema';
import type { ForgeConfig } from './config';
import { credentialFor } from './git';
import { fileRoots, resolveExisting } from './paths';

export function specPolicyOf(config: ForgeConfig, home: string): SpecPolicy {
  const git = config.results.git;
  return {
    maxJobHours: config.max_job_hours,
    fileRoots: fileRoots(git, home),
    outputRepos: git.output_repos,
    branchPrefix: git.branch_prefix,
    pushesArtifacts: config.results.enabled,
    credentialFor: (url) => {
      const c = credentialFor(url, git);
      if (!c) return undefined;
      return c.ssh_key_file !== undefined ? 'ssh' : 'token';
    },
    resolvePath: resolveExisting,
  };
}

/** The policy's issues with a parsed spec (empty when the operator allows it). */
export function specPolicyIssues(spec: TrainingJobSpec, config: ForgeConfig, home: string): SpecIssue[] {
  return checkSpecPolicy(spec, specPolicyOf(config, home));
}
