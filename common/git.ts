/**
 * git for the orchestrator's results (artifacts, the elite registry, the API's artifact reads), through simple-git.
 * Credentials come from the operator config only and reach git through the environment (GIT_CONFIG_* and
 * GIT_SSH_COMMAND), never through argv or a URL, so they show neither in `ps` nor in any message; every error
 * message is scrubbed of them anyway.
 */
import { readFileSync } from 'node:fs';
import { simpleGit, type SimpleGit } from 'simple-git';
import { gitUrlProblem } from '../jobspec/git-names';
import { isUnder } from '../jobspec/policy';
import { fileRoots, resolveExisting } from './paths';
import type { GitCredential, GitSettings } from './results-config';

export class GitAccessError extends Error {
  override name = 'GitAccessError';
  constructor(
    message: string,
    /** Whether trying again can help (a network error) or not (a refused URL, a missing credential file). */
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

const shellQuote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

function readSecret(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new GitAccessError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, true);
  }
}

/** The credential entry for a URL: the longest `match` prefix. */
export function credentialFor(url: string, settings: GitSettings): GitCredential | undefined {
  return settings.credentials.filter((c) => url.startsWith(c.match)).sort((a, b) => b.match.length - a.match.length)[0];
}

/** A local path of a file:// URL, or undefined for remote URLs. */
export function fileUrlPath(url: string): string | undefined {
  return url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : undefined;
}

/**
 * Refuses URLs git could misuse (the spec schema's rules) and file:// repositories outside the operator's
 * file_roots (default: FORGE_HOME), so a signed spec cannot make the orchestrator push into any repository of its host.
 */
export function checkRepoUrl(url: string, settings: GitSettings, home: string): void {
  const problem = gitUrlProblem(url);
  if (problem) throw new GitAccessError(`repository URL ${url}: ${problem}`, true);
  const local = fileUrlPath(url);
  if (local === undefined) return;
  // Symlinks resolved, as the spec policy does (common/spec-policy.ts): a link under a root cannot lead out of it.
  const resolved = resolveExisting(local);
  const roots = fileRoots(settings, home);
  if (!roots.some((root) => isUnder(resolved, root))) {
    throw new GitAccessError(`file:// repository ${resolved} is outside the operator's results.git.file_roots (${roots.join(', ')})`, true);
  }
}

/** git://host[:port]/path: the git daemon protocol, unauthenticated. */
const GIT_DAEMON_URL = /^git:\/\/[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]{1,5})?\/[A-Za-z0-9._~/-]+$/;

/**
 * The elite registry's URL (operator config, results.registry.repo): what checkRepoUrl accepts, or a git:// remote —
 * a git daemon on the operator's private network, as docker-compose's `registry` service (docs/operations.md §4).
 * Only here: a spec can never name a git:// repository (jobspec/git-names.ts), so no job pushes where the registry is.
 */
export function checkRegistryUrl(url: string, settings: GitSettings, home: string): void {
  if (GIT_DAEMON_URL.test(url) && !url.split('/').includes('..')) return;
  checkRepoUrl(url, settings, home);
}

export interface GitEnv {
  env: Record<string, string>;
  /** Strings that must never appear in a message (tokens). */
  secrets: string[];
}

/** The environment of every git command against `url`: no prompts, and the operator's credential for it. */
export function gitEnvFor(url: string | undefined, settings: GitSettings): GitEnv {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    LANG: 'C',
    LC_ALL: 'C',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: settings.author.name,
    GIT_AUTHOR_EMAIL: settings.author.email,
    GIT_COMMITTER_NAME: settings.author.name,
    GIT_COMMITTER_EMAIL: settings.author.email,
  };
  const secrets: string[] = [];
  // URLs are checked before use (checkRepoUrl: no ext:: or other helpers), and git refuses ext:: by default anyway.
  const config: [string, string][] = [];
  const cred = url ? credentialFor(url, settings) : undefined;
  const ssh = ['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=30'];
  if (cred?.ssh_key_file) {
    ssh.push('-i', cred.ssh_key_file, '-o', 'IdentitiesOnly=yes');
    if (cred.known_hosts_file) ssh.push('-o', `UserKnownHostsFile=${cred.known_hosts_file}`, '-o', 'StrictHostKeyChecking=yes');
    else ssh.push('-o', 'StrictHostKeyChecking=accept-new');
  }
  env.GIT_SSH_COMMAND = ssh.map(shellQuote).join(' ');
  if (cred && (cred.token !== undefined || cred.token_file !== undefined)) {
    const token = cred.token ?? readSecret(cred.token_file!, 'token file');
    const basic = Buffer.from(`${cred.username}:${token}`).toString('base64');
    secrets.push(token, basic);
    config.push([`http.${cred.match}.extraHeader`, `Authorization: Basic ${basic}`]);
  }
  env.GIT_CONFIG_COUNT = String(config.length);
  config.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  return { env, secrets };
}

/**
 * Git failures that no retry can fix: no or wrong credentials, no such repository, an unknown host key. Anything
 * else (a network error, a server hiccup) may pass and is retried.
 */
const PERMANENT_GIT_FAILURE =
  /Authentication failed|could not read Username|could not read Password|Permission denied \(publickey|Host key verification failed|Repository not found|does not appear to be a git repository|not found: did you run git update-server-info|HTTP 40[134]|returned error: 40[134]/i;

export function isPermanentGitFailure(err: unknown): boolean {
  return PERMANENT_GIT_FAILURE.test(err instanceof Error ? err.message : String(err));
}

export function redact(message: string, secrets: readonly string[]): string {
  return secrets.reduce((m, s) => (s ? m.split(s).join('[redacted]') : m), message);
}

/** simple-git in `dir` with the environment for `url`; errors come back with secrets removed. */
export function gitIn(dir: string, url: string | undefined, settings: GitSettings): { git: SimpleGit; secrets: string[] } {
  const { env, secrets } = gitEnvFor(url, settings);
  const git = simpleGit({
    baseDir: dir,
    timeout: { block: settings.timeout_seconds * 1000 },
    // simple-git strips or refuses GIT_* variables it is not told about: these are ours, set above.
    allowEnvironment: Object.keys(env).filter((k) => k.startsWith('GIT_')),
    // Both come from the operator config, never from a spec: ssh key options and credential headers.
    unsafe: { allowUnsafeSshCommand: true, allowUnsafeConfigEnvCount: true },
    errors: (error, result) => {
      if (!error) return undefined;
      const text = Buffer.isBuffer(error) ? error.toString('utf8') : error.message;
      const stderr = Buffer.concat(result.stdErr).toString('utf8');
      return new Error(redact(`${text}${stderr && !text.includes(stderr.trim()) ? `\n${stderr}` : ''}`.trim(), secrets));
    },
  }).env(env);
  return { git, secrets };
}

/** Whether `git lfs` works on this host. */
export async function gitLfsAvailable(dir: string, settings: GitSettings): Promise<boolean> {
  try {
    await gitIn(dir, undefined, settings).git.raw(['lfs', 'version']);
    return true;
  } catch {
    return false;
  }
}
