/**
 * The elite registry on a real git repository: the promotion rule, concurrent promotions from separate registry
 * clients (as from separate workers) that race on the same task type — the better one wins, the other one's other
 * task types are kept, nothing is lost — and a tampered registry that is refused.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { decidePromotions, EliteRegistry, RegistryError, type EliteEntry, type Elites, type PromotionCandidate } from '../../activities/registry';
import type { EvalSummary } from '../../activities/evals';
import { parseConfig } from '../../common/config';
import { orchestratorKey } from '../../common/orchestrator-key';
import { tempDir } from '../helpers/forge';
import { git } from '../helpers/results';

const home = tempDir('forge-registry-');
const settings = parseConfig({ backends: { local: { kind: 'local' } } }).results;

afterAll(async () => {
  await fs.rm(home, { recursive: true, force: true });
});

function summary(task_type: string, successes: number, tasks = 20): EvalSummary {
  return { task_type, tasks, successes, success_rate: successes / tasks, suite_sha256: 'e'.repeat(64), mean_latency_ms: 12 };
}

function candidate(evals: EvalSummary[], target = 0): PromotionCandidate {
  const job_id = randomUUID();
  return {
    job_id,
    owner_did: orchestratorKey(home).did,
    base_model: { name: 'tiny', source: 'local', revision: 'main' },
    spec_sha256: 'a'.repeat(64),
    target_metric: target,
    artifacts: { repo: 'file:///models.git', branch: `jobs/${job_id}`, commit: 'c'.repeat(40), path: `models/job-${job_id}`, manifest_sha256: 'd'.repeat(64) },
    evals,
  };
}

/** A registry client of its own (its own in-process queue): as another worker process would be. */
const client = (repo?: string) =>
  new EliteRegistry({ home, git: settings.git, registry: { ...settings.registry, ...(repo ? { repo } : {}) }, key: () => orchestratorKey(home) });

test('the rule: strictly better than the elite, above zero, meeting target_metric', () => {
  const elite = candidate([summary('toy', 8)]);
  expect(decidePromotions(null, elite)[0]).toMatchObject({ promoted: true, reason: 'first elite for this task type' });
  expect(decidePromotions(null, candidate([summary('toy', 0)]))[0]).toMatchObject({ promoted: false, reason: 'solved no eval task' });
  expect(decidePromotions(null, candidate([summary('toy', 0, 0)]))[0]).toMatchObject({ promoted: false, reason: expect.stringMatching(/no tasks/) });
  expect(decidePromotions(null, candidate([summary('toy', 10)], 0.9))[0]).toMatchObject({ promoted: false, reason: 'success rate 50.0% is below target_metric 90.0%' });
  const c = candidate([summary('toy', 8)]);
  const entry: EliteEntry = {
    task_type: 'toy',
    agent_id: 'forge:job-x',
    job_id: 'x',
    base_agent_id: 'local:tiny@main',
    derivative: 'finetuned',
    owner_did: c.owner_did,
    base_model: c.base_model,
    spec_sha256: c.spec_sha256,
    artifacts: c.artifacts,
    metrics: { success_rate: 0.4, tasks: 20, successes: 8, suite_sha256: null },
    eval_summary: c.evals,
    promoted_at: new Date().toISOString(),
    previous: null,
    signer_did: c.owner_did,
    signature_ed25519: 'unchecked-here',
  };
  const withElite: Elites = { version: 'forge-elites-v1', updated_at: entry.promoted_at, signer_did: c.owner_did, elites: { toy: entry } };
  expect(decidePromotions(withElite, candidate([summary('toy', 8)]))[0]).toMatchObject({ promoted: false, elite_success_rate: 0.4 });
  expect(decidePromotions(withElite, candidate([summary('toy', 9)]))[0]).toMatchObject({ promoted: true, reason: 'beats the elite forge:job-x (40.0%)' });
});

test('concurrent promotions for the same task type: both considered, the better wins, nothing lost', async () => {
  let races = 0;
  for (let round = 0; round < 3; round++) {
    const repo = `file://${path.join(home, `registry-${round}`)}`;
    const x = candidate([summary('toy', 8), summary('vcs', 5)]); // 40% toy, 25% vcs
    const y = candidate([summary('toy', 12)]); // 60% toy
    const z = candidate([summary('file-edit', 10)]);
    const clients = [client(repo), client(repo), client(repo)];
    const [dx, dy, dz] = await Promise.all([clients[0]!.promote(x), clients[1]!.promote(y), clients[2]!.promote(z)]);
    races += clients.reduce((n, c) => n + c.casRetries, 0);
    expect(dy).toEqual([expect.objectContaining({ task_type: 'toy', promoted: true })]);
    expect(dz).toEqual([expect.objectContaining({ task_type: 'file-edit', promoted: true })]);
    expect(dx.find((d) => d.task_type === 'vcs')).toMatchObject({ promoted: true });

    const { elites } = await client(repo).read();
    expect(Object.fromEntries(Object.entries(elites!.elites).map(([t, e]) => [t, e.job_id]))).toEqual({ toy: y.job_id, vcs: x.job_id, 'file-edit': z.job_id });
    const xToy = dx.find((d) => d.task_type === 'toy')!;
    // Either x came first (promoted, then beaten by y: y's entry names it as previous) or y did (x was compared with y).
    if (xToy.promoted) expect(elites!.elites.toy!.previous).toMatchObject({ job_id: x.job_id, success_rate: 0.4 });
    else expect(xToy).toMatchObject({ elite_success_rate: 0.6, reason: `40.0% does not beat the elite forge:job-${y.job_id} (60.0%)` });
    // One commit per client that promoted something: three.
    expect(git(repo.slice('file://'.length), 'rev-list', '--count', 'main').trim()).toBe('3');
  }
  // The three raced for real: pushes were refused by the compare-and-swap and decided again.
  expect(races).toBeGreaterThan(0);
  // Scratch clones are cleaned up.
  expect(readdirSync(path.join(home, 'tmp'))).toEqual([]);
}, 120_000);

test('a registry whose elites.json was changed without the orchestrator key is refused', async () => {
  const repo = path.join(home, 'registry-tampered');
  await client(`file://${repo}`).promote(candidate([summary('toy', 4)]));
  const work = path.join(home, 'tamper');
  git(home, 'clone', '--quiet', repo, work);
  const text = (await fs.readFile(path.join(work, 'elites.json'), 'utf8')).replace('"success_rate":0.2', '"success_rate":0.9');
  writeFileSync(path.join(work, 'elites.json'), text);
  git(work, 'commit', '--quiet', '-am', 'better numbers');
  git(work, 'push', '--quiet', 'origin', 'main');
  await expect(client(`file://${repo}`).promote(candidate([summary('toy', 10)]))).rejects.toThrow(RegistryError);
  await expect(client(`file://${repo}`).read()).rejects.toThrow(/elites\.sig does not verify/);
});
