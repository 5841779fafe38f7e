/**
 * Checks on the git names a spec carries. They end up as arguments of git commands run by the orchestrator, so
 * anything git could read as an option (leading "-") or as a remote helper (`ext::`) is refused up front.
 * Each returns undefined when the value is fine, else a message saying what is wrong.
 */

/** Control characters and whitespace: never valid in a ref, a URL or a path we pass to git. */
const CONTROL_OR_SPACE = /[\u0000-\u0020\u007f]/;

/** git check-ref-format rules, plus `git check-ref-format --branch`'s ban on a leading "-". */
export function gitRefProblem(ref: string): string | undefined {
  if (ref === '') return 'must not be empty';
  if (ref.startsWith('-')) return 'must not start with "-"';
  if (ref.startsWith('/') || ref.endsWith('/')) return 'must not start or end with "/"';
  if (ref.endsWith('.')) return 'must not end with "."';
  if (ref === '@') return 'must not be "@"';
  if (CONTROL_OR_SPACE.test(ref)) return 'must not contain spaces or control characters';
  const bad = /[~^:?*[\\]/.exec(ref);
  if (bad) return `must not contain "${bad[0]}"`;
  if (ref.includes('..')) return 'must not contain ".."';
  if (ref.includes('@{')) return 'must not contain "@{"';
  if (ref.includes('//')) return 'must not contain "//"';
  for (const component of ref.split('/')) {
    if (component.startsWith('.')) return 'no path component may start with "."';
    if (component.endsWith('.lock')) return 'no path component may end with ".lock"';
  }
  return undefined;
}

const HOST = '[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?';
const USER = '[A-Za-z0-9_][A-Za-z0-9._-]*';
const REMOTE_PATH = '[^\\s]+';
const GIT_URL_FORMS: readonly RegExp[] = [
  new RegExp(`^https://${HOST}(?::[0-9]{1,5})?/${REMOTE_PATH}$`),
  new RegExp(`^ssh://(?:${USER}@)?${HOST}(?::[0-9]{1,5})?/${REMOTE_PATH}$`),
  // scp-like: git only reads it so when no "/" precedes the first ":".
  new RegExp(`^${USER}@${HOST}:(?!-)${REMOTE_PATH}$`),
  /^file:\/\/\/[^\s]*$/,
];

/** Accepts https://, ssh://, scp-like `user@host:path` and file:///; no http:// (unauthenticated), no helpers. */
export function gitUrlProblem(url: string): string | undefined {
  if (url.startsWith('-')) return 'must not start with "-"';
  if (CONTROL_OR_SPACE.test(url)) return 'must not contain spaces or control characters';
  // Credentials in a URL would end up in the signed spec, the workflow history and the Web UI.
  if (/^https:\/\/[^/]*@/.test(url)) return 'must not embed credentials (configure them on the backend)';
  if (!GIT_URL_FORMS.some((form) => form.test(url))) {
    return 'must be a git URL: https://host/path, ssh://[user@]host/path, user@host:path or file:///path';
  }
  return undefined;
}

/** A path inside a repository: relative and unable to climb out of it. */
export function relativePathProblem(path: string): string | undefined {
  if (path === '') return 'must not be empty';
  if (path.startsWith('/')) return 'must be relative to the repository root';
  if (path.startsWith('-')) return 'must not start with "-"';
  if (path.includes('\\')) return 'must use "/" as separator';
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'must not contain control characters';
  if (path.split('/').includes('..')) return 'must not contain a ".." segment';
  return undefined;
}
