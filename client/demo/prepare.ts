/**
 * What `npm run demo` needs before it can submit a job, made under FORGE_HOME when missing: a tiny base model (the
 * reference trainer's init-tiny), a small dataset in a git repository, an owner key (FORGE_HOME/keys, mode 0600),
 * and the example spec filled in and signed with that key.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { base64urlnopad } from '@scure/base';
import { z } from 'zod';
import { repoRoot } from '../../common/paths';
import { formatSpecIssues, parseTrainingJobSpec } from '../../jobspec/parse';
import { didKeyFromPublicKey } from '../../jobspec/did-key';
import { generateKeyPair, publicKeyFromSecretKey, signSpec, type KeyPair } from '../../jobspec/signing';

export const EXAMPLE_SPEC = path.join(repoRoot(), 'examples', 'finetune-tiny.json');
export const DEFAULT_TRAINER = path.join(repoRoot(), '.tools', 'venv', 'bin', 'forge-trainer');

export interface DemoPaths {
  model: string;
  dataRepo: string;
  /** The output repo the example spec names (bare): where the finetuned model is committed. */
  modelsRepo: string;
  key: string;
}

export function demoPaths(home: string): DemoPaths {
  return {
    model: path.join(home, 'models', 'tiny-base'),
    dataRepo: path.join(home, 'demo', 'reverse-words'),
    modelsRepo: path.join(home, 'demo', 'models'),
    key: path.join(home, 'keys', 'demo-owner.json'),
  };
}

/** The tiny base model, made by the reference trainer when missing. Returns whether it was made now. */
export function ensureTinyModel(dir: string, trainer = DEFAULT_TRAINER): boolean {
  if (existsSync(path.join(dir, 'config.json'))) return false;
  if (!existsSync(trainer)) throw new Error(`${trainer} is missing: run \`npm run bootstrap\` (it installs the trainer)`);
  execFileSync(trainer, ['init-tiny', '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  return true;
}

/** A seeded list of {prompt, completion} JSONL lines: reverse a short word. A tiny model learns it in a few hundred steps. */
export function reverseWordExamples(count: number, seed = 1): string {
  let state = seed;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const length = 3 + Math.floor(next() * 6);
    const word = Array.from({ length }, () => 'abcdefgh'[Math.floor(next() * 8)]).join('');
    lines.push(JSON.stringify({ prompt: `reverse ${word}:`, completion: ` ${[...word].reverse().join('')}` }));
  }
  return `${lines.join('\n')}\n`;
}

const GIT_IDENTITY = {
  GIT_AUTHOR_NAME: 'forge-demo',
  GIT_AUTHOR_EMAIL: 'forge-demo@example.invalid',
  GIT_COMMITTER_NAME: 'forge-demo',
  GIT_COMMITTER_EMAIL: 'forge-demo@example.invalid',
};

/** A git repository at `dir` with `files` committed on main; returns its file:// URL. Kept as is when it exists. */
export function ensureGitRepo(dir: string, files: Record<string, string>): { url: string; created: boolean } {
  const url = `file://${path.resolve(dir)}`;
  if (existsSync(path.join(dir, '.git'))) return { url, created: false };
  mkdirSync(dir, { recursive: true });
  const git = (...args: string[]): void => {
    execFileSync('git', args, { cwd: dir, env: { ...process.env, ...GIT_IDENTITY }, stdio: 'pipe' });
  };
  git('init', '--quiet', '--initial-branch', 'main');
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), text);
  }
  git('add', '--all');
  git('commit', '--quiet', '--message', 'dataset');
  return { url, created: true };
}

/** A bare repository at `dir` (the demo's output repo); returns its file:// URL. Kept as is when it exists. */
export function ensureBareRepo(dir: string): { url: string; created: boolean } {
  const url = `file://${path.resolve(dir)}`;
  if (existsSync(path.join(dir, 'HEAD'))) return { url, created: false };
  mkdirSync(dir, { recursive: true });
  execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch', 'main'], { cwd: dir, stdio: 'pipe' });
  return { url, created: true };
}

const keyFileSchema = z.object({ did: z.string().startsWith('did:key:'), secret_key: z.string().min(1) });

/**
 * The demo owner's Ed25519 key: FORGE_HOME/keys/demo-owner.json ({did, secret_key} base64url), mode 0600 in a 0700
 * folder; made when missing. A key file that others can read is tightened, not used as is.
 */
export function ensureOwnerKey(file: string): { keys: KeyPair; created: boolean } {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  if (!existsSync(file)) {
    const keys = generateKeyPair();
    const body = { did: keys.did, secret_key: base64urlnopad.encode(keys.secretKey) };
    writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600); // whatever the umask
    return { keys, created: true };
  }
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  const parsed = keyFileSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new Error(`${file}: not a demo key file ({"did", "secret_key"})`);
  const secretKey = base64urlnopad.decode(parsed.data.secret_key);
  const publicKey = publicKeyFromSecretKey(secretKey);
  const did = didKeyFromPublicKey(publicKey);
  if (did !== parsed.data.did) throw new Error(`${file}: its did does not match its secret key`);
  return { keys: { secretKey, publicKey, did }, created: false };
}

/** Replaces ${FORGE_HOME} in every string of a JSON value (the spec's own ${job_id} is left for the orchestrator). */
function substituteHome(value: unknown, home: string): unknown {
  if (typeof value === 'string') return value.replaceAll('${FORGE_HOME}', home);
  if (Array.isArray(value)) return value.map((v) => substituteHome(v, home));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteHome(v, home)]));
  }
  return value;
}

export interface SpecOptions {
  home: string;
  keys: KeyPair;
  /** Another max_steps than the example's (tests use fewer). */
  maxSteps?: number;
  jobId?: string;
  now?: Date;
}

/** The example spec for this FORGE_HOME: a fresh job id, this owner, now; checked against the schema, then signed. */
export function signedExampleSpec(template: unknown, o: SpecOptions): Record<string, unknown> & { job_id: string } {
  const { signature_ed25519: _stale, ...filled } = substituteHome(template, o.home) as Record<string, unknown>;
  const objective = filled.objective as Record<string, unknown> | undefined;
  const unsigned = {
    ...filled,
    job_id: o.jobId ?? randomUUID(),
    owner_did: o.keys.did,
    created_at: Math.floor((o.now ?? new Date()).getTime() / 1000),
    ...(o.maxSteps !== undefined && objective ? { objective: { ...objective, max_steps: o.maxSteps } } : {}),
  };
  const signed = signSpec(unsigned, o.keys.secretKey);
  const check = parseTrainingJobSpec(signed);
  if (!check.ok) throw new Error(`the example spec is not valid:\n${formatSpecIssues(check.issues)}`);
  return signed;
}
