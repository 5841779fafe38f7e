/**
 * The elite registry (docs/architecture.md §8): the best model per task type, in a git repository
 * (`results.registry.repo`, default a bare repository at FORGE_HOME/registry made on first use). It holds `elites.json`
 * (canonical JSON) and `elites.sig` (the orchestrator's Ed25519 signature over its bytes); every entry is signed on
 * its own as well, and carries its provenance: job, base agent, `derivative: "finetuned"`, the artifact commit and
 * manifest hash, the spec hash, the eval summary and when it was promoted. The git history is the promotion log.
 *
 * A model is promoted for a task type only when its success rate beats the current elite's (strictly), is above
 * zero and meets `objective.target_metric`. Updates are compare-and-swap: each promotion reads the branch tip,
 * decides, commits on top of it and pushes with `--force-with-lease=<branch>:<that tip>`; when another promotion
 * got there first the push is refused and the whole read-decide-commit runs again on the new tip. So two jobs
 * promoting at once for the same task type are both compared, the better one ends up elite, and no update is lost,
 * whichever process or host they run in.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { SimpleGit } from 'simple-git';
import { z } from 'zod';
import { checkRegistryUrl, checkRepoUrl, fileUrlPath, gitIn } from '../common/git';
import type { GitSettings, RegistrySettings } from '../common/results-config';
import { signEvaluation } from '../common/eval-provenance';
import { signCanonicalJson, verifySignedJson } from '../common/signed-json';
import { isEd25519DidKey, publicKeyFromDidKey } from '../jobspec/did-key';
import { signSpec, specSigningPayload, verifyBytes, type KeyPair } from '../jobspec/signing';
import type { EvalSummary } from './evals';

export const ELITES_VERSION = 'forge-elites-v1';
export const ELITES_EXPORT_VERSION = 'forge-elites-export-v1';
export const ELITES_FILE = 'elites.json';
export const ELITES_SIG_FILE = 'elites.sig';
const MAX_RACES = 20;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

export const evalSummarySchema = z.strictObject({
  task_type: z.string().min(1),
  tasks: z.int().min(0),
  successes: z.int().min(0),
  success_rate: z.number().min(0).max(1),
  suite_sha256: sha256Hex.nullable(),
  mean_latency_ms: z.number().min(0),
});

export const eliteEntrySchema = z.strictObject({
  task_type: z.string().min(1),
  /** This model as an agent: `forge:job-<job_id>`. */
  agent_id: z.string().min(1),
  job_id: z.string().min(1),
  /** What it derives from: the base model as `<source>:<name>@<revision>`. */
  base_agent_id: z.string().min(1),
  derivative: z.literal('finetuned'),
  owner_did: z.string().min(1),
  base_model: z.strictObject({ name: z.string(), source: z.string(), revision: z.string() }),
  spec_sha256: sha256Hex,
  artifacts: z.strictObject({
    repo: z.string(),
    branch: z.string(),
    commit: z.string().regex(/^[0-9a-f]{40,64}$/),
    path: z.string(),
    manifest_sha256: sha256Hex,
    /** The signed provenance statement (provenance.intoto.json, DSSE) in that commit: its path and sha256. */
    provenance: z.strictObject({ path: z.string(), sha256: sha256Hex }).optional(),
  }),
  /** The signed evaluation statement (common/eval-provenance.ts: eval suite hashes and results, DSSE) committed in this
   *  registry with the promotion: its path and sha256 (absent in entries from before it). */
  evaluation: z.strictObject({ path: z.string(), sha256: sha256Hex }).optional(),
  metrics: z.strictObject({
    success_rate: z.number().min(0).max(1),
    tasks: z.int().min(1),
    successes: z.int().min(0),
    suite_sha256: sha256Hex.nullable(),
  }),
  /** Every task type the job was evaluated on. */
  eval_summary: z.array(evalSummarySchema),
  promoted_at: z.iso.datetime({ offset: true }),
  previous: z.strictObject({ agent_id: z.string(), job_id: z.string(), success_rate: z.number() }).nullable(),
  signer_did: z.string().refine(isEd25519DidKey, 'must be an Ed25519 did:key'),
  signature_ed25519: z.string().regex(/^[A-Za-z0-9_-]+$/),
});
export type EliteEntry = z.infer<typeof eliteEntrySchema>;

export const elitesSchema = z.strictObject({
  version: z.literal(ELITES_VERSION),
  updated_at: z.iso.datetime({ offset: true }),
  signer_did: z.string().refine(isEd25519DidKey, 'must be an Ed25519 did:key'),
  elites: z.record(z.string(), eliteEntrySchema),
});
export type Elites = z.infer<typeof elitesSchema>;

export interface PromotionCandidate {
  job_id: string;
  owner_did: string;
  base_model: { name: string; source: string; revision: string };
  spec_sha256: string;
  target_metric: number;
  artifacts: { repo: string; branch: string; commit: string; path: string; manifest_sha256: string; provenance?: { path: string; sha256: string } };
  evals: EvalSummary[];
}

export interface PromotionDecision {
  task_type: string;
  promoted: boolean;
  reason: string;
  success_rate: number;
  /** The elite's success rate it was compared with (null: there was none). */
  elite_success_rate: number | null;
  /** The registry commit that made it elite. */
  registry_commit: string | null;
}

export class RegistryError extends Error {
  override name = 'RegistryError';
}

const pct = (r: number): string => `${(r * 100).toFixed(1)}%`;

/** Pure: which of a candidate's task types it would take over, against the registry as it is. */
export function decidePromotions(current: Elites | null, c: PromotionCandidate): Omit<PromotionDecision, 'registry_commit'>[] {
  return c.evals.map((e) => {
    const elite = current?.elites[e.task_type];
    const base = { task_type: e.task_type, success_rate: e.success_rate, elite_success_rate: elite?.metrics.success_rate ?? null };
    if (e.tasks === 0) return { ...base, promoted: false, reason: `the eval suite has no tasks for task type ${e.task_type}` };
    if (e.successes === 0) return { ...base, promoted: false, reason: 'solved no eval task' };
    if (e.success_rate < c.target_metric) return { ...base, promoted: false, reason: `success rate ${pct(e.success_rate)} is below target_metric ${pct(c.target_metric)}` };
    if (elite && elite.job_id === c.job_id) return { ...base, promoted: true, reason: 'already the elite' };
    if (elite && e.success_rate <= elite.metrics.success_rate) {
      return { ...base, promoted: false, reason: `${pct(e.success_rate)} does not beat the elite ${elite.agent_id} (${pct(elite.metrics.success_rate)})` };
    }
    return { ...base, promoted: true, reason: elite ? `beats the elite ${elite.agent_id} (${pct(elite.metrics.success_rate)})` : 'first elite for this task type' };
  });
}

function entryFor(
  c: PromotionCandidate,
  e: EvalSummary,
  previous: EliteEntry | undefined,
  now: string,
  key: KeyPair,
  evaluation: { path: string; sha256: string },
): EliteEntry {
  const unsigned = {
    task_type: e.task_type,
    agent_id: `forge:job-${c.job_id}`,
    job_id: c.job_id,
    base_agent_id: `${c.base_model.source}:${c.base_model.name}@${c.base_model.revision}`,
    derivative: 'finetuned' as const,
    owner_did: c.owner_did,
    base_model: c.base_model,
    spec_sha256: c.spec_sha256,
    artifacts: c.artifacts,
    evaluation,
    metrics: { success_rate: e.success_rate, tasks: e.tasks, successes: e.successes, suite_sha256: e.suite_sha256 },
    eval_summary: c.evals,
    promoted_at: now,
    previous: previous ? { agent_id: previous.agent_id, job_id: previous.job_id, success_rate: previous.metrics.success_rate } : null,
    signer_did: key.did,
  };
  return signSpec(unsigned, key.secretKey);
}

/** An entry's own signature (an entry quoted alone stays verifiable). */
export function verifyEliteEntry(entry: EliteEntry, did: string): boolean {
  return entry.signer_did === did && verifyBytes(entry.signature_ed25519, specSigningPayload(entry), publicKeyFromDidKey(did));
}

export interface RegistryState {
  commit: string | null;
  elites: Elites | null;
}

export interface RegistryDeps {
  home: string;
  git: GitSettings;
  registry: RegistrySettings;
  key: () => KeyPair;
}

export function registryRepoUrl(deps: Pick<RegistryDeps, 'home' | 'registry'>): string {
  return deps.registry.repo ?? `file://${path.join(deps.home, 'registry')}`;
}

export class EliteRegistry {
  /** In-process queue: promotions of one process take turns (the compare-and-swap still guards against others). */
  private queue: Promise<unknown> = Promise.resolve();
  /** How many pushes lost a compare-and-swap race and were decided again (observability, tests). */
  casRetries = 0;

  constructor(private readonly deps: RegistryDeps) {}

  get url(): string {
    return registryRepoUrl(this.deps);
  }

  private get branch(): string {
    return this.deps.registry.branch;
  }

  /** A local registry that does not exist yet is made: a bare repository. */
  private async ensureRepo(): Promise<void> {
    checkRegistryUrl(this.url, this.deps.git, this.deps.home);
    const local = fileUrlPath(this.url);
    if (local === undefined || existsSync(local)) return;
    // Made aside and renamed into place: two first promotions at once must not both `git init` the same folder.
    await fs.mkdir(path.dirname(local), { recursive: true });
    const aside = await fs.mkdtemp(`${local}.init-`);
    try {
      await gitIn(aside, undefined, this.deps.git).git.raw(['init', '--quiet', '--bare', `--initial-branch=${this.branch}`]);
      await fs.rename(aside, local);
    } catch (err) {
      if (!existsSync(local)) throw err; // anything but "someone else made it first"
    } finally {
      await fs.rm(aside, { recursive: true, force: true });
    }
  }

  /** A throw-away clone of the branch tip (the registry is small). */
  private async scratch<T>(fn: (git: SimpleGit, dir: string) => Promise<T>): Promise<T> {
    await this.ensureRepo();
    const root = path.join(this.deps.home, 'tmp');
    await fs.mkdir(root, { recursive: true });
    const dir = await fs.mkdtemp(path.join(root, 'registry-'));
    try {
      const { git } = gitIn(dir, this.url, this.deps.git);
      await git.init();
      await git.addRemote('origin', this.url);
      return await fn(git, dir);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  private async readTip(git: SimpleGit): Promise<RegistryState> {
    const heads = await git.raw(['ls-remote', '--', 'origin', `refs/heads/${this.branch}`]);
    const commit = heads.split('\t')[0]?.trim() || null;
    if (!commit) return { commit: null, elites: null };
    await git.raw(['fetch', '--quiet', '--no-tags', 'origin', `+refs/heads/${this.branch}:refs/remotes/origin/${this.branch}`]);
    const json = await git.show([`${commit}:${ELITES_FILE}`]);
    const sig = await git.show([`${commit}:${ELITES_SIG_FILE}`]);
    return { commit, elites: this.verify(json, sig, commit) };
  }

  /** elites.json + elites.sig, checked against the orchestrator's key, the schema and every entry's signature. */
  private verify(json: string, sig: string, at: string): Elites {
    const did = this.deps.key().did;
    const checked = verifySignedJson(json, sig, did, 'elites');
    if (!checked.ok) throw new RegistryError(`registry ${this.url} at ${at}: ${checked.reason}`);
    const parsed = elitesSchema.safeParse(checked.value);
    if (!parsed.success) throw new RegistryError(`registry ${this.url} at ${at}: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
    for (const entry of Object.values(parsed.data.elites)) {
      if (!verifyEliteEntry(entry, did)) throw new RegistryError(`registry ${this.url} at ${at}: the entry of ${entry.task_type} is not signed by ${did}`);
    }
    return parsed.data;
  }

  /** The registry as it is now (verified). */
  async read(): Promise<RegistryState> {
    return this.scratch((git) => this.readTip(git));
  }

  /** Considers a candidate for each of its task types; commits the promotions (compare-and-swap, see above). */
  promote(c: PromotionCandidate): Promise<PromotionDecision[]> {
    const run = this.queue.then(() => this.promoteNow(c));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async promoteNow(c: PromotionCandidate): Promise<PromotionDecision[]> {
    const key = this.deps.key();
    return this.scratch(async (git, dir) => {
      for (let race = 0; ; race++) {
        const { commit: base, elites } = await this.readTip(git);
        const decisions = decidePromotions(elites, c);
        const fresh = decisions.filter((d) => d.promoted && elites?.elites[d.task_type]?.job_id !== c.job_id);
        const already = (d: (typeof decisions)[number]): string | null => (d.promoted ? base : null);
        if (fresh.length === 0) return decisions.map((d) => ({ ...d, registry_commit: already(d) }));

        const now = new Date().toISOString();
        const next: Elites = { version: ELITES_VERSION, updated_at: now, signer_did: key.did, elites: { ...(elites?.elites ?? {}) } };
        const evaluation = signEvaluation(c, key, now);
        for (const d of fresh) {
          const summary = c.evals.find((e) => e.task_type === d.task_type)!;
          const statement = { path: evaluation.path, sha256: evaluation.sha256 };
          next.elites[d.task_type] = entryFor(c, summary, elites?.elites[d.task_type], now, key, statement);
        }
        const files = signCanonicalJson(next, key.secretKey);
        if (base) await git.raw(['checkout', '--quiet', '--force', '-B', this.branch, `refs/remotes/origin/${this.branch}`]);
        else await git.raw(['checkout', '--quiet', '--orphan', this.branch]);
        await fs.writeFile(path.join(dir, ELITES_FILE), files.json);
        await fs.writeFile(path.join(dir, ELITES_SIG_FILE), files.sig);
        await fs.mkdir(path.dirname(path.join(dir, evaluation.path)), { recursive: true });
        await fs.writeFile(path.join(dir, evaluation.path), evaluation.text);
        await git.add([ELITES_FILE, ELITES_SIG_FILE, evaluation.path]);
        const lines = fresh.map((d) => `${d.task_type}: ${pct(d.success_rate)} (${d.reason})`);
        await git.commit([`promote forge:job-${c.job_id}`, '', ...lines, '', `Forge-Job: ${c.job_id}`, `Forge-Artifacts-Commit: ${c.artifacts.commit}`].join('\n'), undefined, { '--quiet': null });
        const commit = (await git.revparse(['HEAD'])).trim();
        try {
          await git.raw(['push', '--quiet', `--force-with-lease=refs/heads/${this.branch}:${base ?? ''}`, 'origin', `HEAD:refs/heads/${this.branch}`]);
        } catch (err) {
          if (race < MAX_RACES && /stale info|\[rejected\]|non-fast-forward|fetch first|cannot lock ref|failed to update ref/i.test(String(err))) {
            // Another promotion moved the tip: decide again against what it wrote.
            this.casRetries += 1;
            await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 80)));
            continue;
          }
          throw err;
        }
        return decisions.map((d) => ({ ...d, registry_commit: fresh.includes(d) ? commit : already(d) }));
      }
    });
  }

  /** A signed export of the current registry (cf-export-elites). */
  async exportSigned(now = new Date()): Promise<Record<string, unknown>> {
    const key = this.deps.key();
    return this.scratch(async (git) => {
      const { commit, elites } = await this.readTip(git);
      if (!commit || !elites) throw new RegistryError(`registry ${this.url} has no elites yet`);
      const sig = (await git.show([`${commit}:${ELITES_SIG_FILE}`])).trim();
      return signSpec(
        {
          version: ELITES_EXPORT_VERSION,
          exported_at: now.toISOString(),
          registry: { repo: this.url, branch: this.branch, commit },
          elites,
          elites_signature_ed25519: sig,
          signer_did: key.did,
        },
        key.secretKey,
      );
    });
  }

  /** Pushes the registry's branch to `publish_remote` (cf-export-elites --auto-publish); returns the commit. */
  async publish(): Promise<{ remote: string; commit: string }> {
    const remote = this.deps.registry.publish_remote;
    if (!remote) throw new RegistryError('no results.registry.publish_remote in the operator config: nowhere to publish');
    checkRepoUrl(remote, this.deps.git, this.deps.home);
    return this.scratch(async (git, dir) => {
      const { commit } = await this.readTip(git);
      if (!commit) throw new RegistryError(`registry ${this.url} has no elites yet`);
      const pub = gitIn(dir, remote, this.deps.git).git;
      await pub.raw(['push', '--quiet', remote, `${commit}:refs/heads/${this.branch}`]);
      return { remote, commit };
    });
  }
}
