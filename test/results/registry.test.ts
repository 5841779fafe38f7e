/**
 * The elite registry on a real git repository: the promotion rule, concurrent promotions from separate registry
 * clients (as from separate workers) that race on the same task type — the better one wins, the other one's other
 * task types are kept, nothing is lost — a tampered registry that is refused, and a git:// registry served by a git
 * daemon (docker-compose's `registry` service) that replicas share through the network.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { promises as fs, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { decidePromotions, EliteRegistry, RegistryError, type EliteEntry, type Elites, type PromotionCandidate } from '../../activities/registry';
import type { EvalSummary } from '../../activities/evals';
import { parseConfig } from '../../common/config';
import { verifyDsse } from '../../common/dsse';
import { orchestratorKey } from '../../common/orchestrator-key';
import { gitUrlProblem } from '../../jobspec/git-names';
import { pollUntil, tempDir } from '../helpers/forge';
import { freePort } from '../helpers/ports';
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

test('a git:// registry (a git daemon, as docker-compose serves it): replicas promote and read through the network; specs cannot name git://', async () => {
  const served = path.join(home, 'daemon');
  await fs.mkdir(served, { recursive: true });
  git(served, 'init', '--quiet', '--bare', '--initial-branch=main', path.join(served, 'registry.git'));
  const port = await freePort();
  const daemon = spawn('git', ['daemon', `--base-path=${served}`, '--export-all', '--enable=receive-pack', '--reuseaddr', '--listen=127.0.0.1', `--port=${port}`, served], { stdio: 'ignore' });
  const url = `git://127.0.0.1:${port}/registry.git`;
  try {
    // Ready when it answers (the daemon binds after it starts).
    await pollUntil(async () => (spawnSync('git', ['ls-remote', url]).status === 0 ? true : undefined), 'git daemon answering');
    // Two registry clients, as two replicas with their own FORGE_HOME would be.
    const [a, b] = [client(url), client(url)];
    const toy = candidate([summary('toy', 8)]);
    expect(await a.promote(toy)).toEqual([expect.objectContaining({ task_type: 'toy', promoted: true })]);
    expect(await b.promote(candidate([summary('vcs', 5)]))).toEqual([expect.objectContaining({ task_type: 'vcs', promoted: true })]);
    const { elites } = await client(url).read();
    expect(Object.keys(elites!.elites).sort()).toEqual(['toy', 'vcs']);
    expect(elites!.elites.toy!.job_id).toBe(toy.job_id);
    expect(git(path.join(served, 'registry.git'), 'rev-list', '--count', 'main').trim()).toBe('2');
  } finally {
    daemon.kill();
  }
  expect(gitUrlProblem(url)).toMatch(/must be a git URL/);
});

test('a promotion commits the signed evaluation statement (eval suite hashes and results) the entry points at', async () => {
  const repo = path.join(home, 'registry-evaluation');
  const c = candidate([summary('toy', 8), summary('math', 3)]);
  c.artifacts.provenance = { path: `${c.artifacts.path}/provenance.intoto.json`, sha256: 'f'.repeat(64) };
  await client(`file://${repo}`).promote(c);
  const { elites } = await client(`file://${repo}`).read();
  const entry = elites!.elites.toy!;
  expect(entry.evaluation).toEqual({ path: `evaluations/job-${c.job_id}.intoto.json`, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  expect(elites!.elites.math!.evaluation).toEqual(entry.evaluation);
  const text = git(repo, 'show', `main:${entry.evaluation!.path}`);
  expect(createHash('sha256').update(text, 'utf8').digest('hex')).toBe(entry.evaluation!.sha256);
  // The DSSE envelope verifies with the orchestrator's did:key alone; the statement carries suites and results.
  const checked = verifyDsse(JSON.parse(text), orchestratorKey(home).did);
  if (!checked.ok) throw new Error(checked.reason);
  const st = checked.statement as {
    subject: unknown[];
    predicateType: string;
    predicate: { buildDefinition: { externalParameters: { eval_suites: unknown[] } }; runDetails: { byproducts: unknown[] } };
  };
  expect(st.predicateType).toBe('https://slsa.dev/provenance/v1');
  expect(st.subject).toEqual([
    { name: `${c.artifacts.path}/manifest.json`, digest: { sha256: 'd'.repeat(64) } },
    { name: c.artifacts.provenance.path, digest: { sha256: 'f'.repeat(64) } },
  ]);
  expect(st.predicate.buildDefinition.externalParameters.eval_suites).toEqual([
    { task_type: 'toy', sha256: 'e'.repeat(64) },
    { task_type: 'math', sha256: 'e'.repeat(64) },
  ]);
  expect(st.predicate.runDetails.byproducts).toContainEqual({
    name: 'eval_results:toy',
    annotations: { tasks: 20, successes: 8, success_rate: 0.4, mean_latency_ms: 12 },
  });
  // Tampered: one result changed in the payload no longer verifies.
  const env = JSON.parse(text) as { payload: string };
  const forged = Buffer.from(Buffer.from(env.payload, 'base64').toString('utf8').replace('"successes":8', '"successes":9')).toString('base64');
  expect(verifyDsse({ ...JSON.parse(text), payload: forged }, orchestratorKey(home).did).ok).toBe(false);
});
