/**
 * The operator's spec policy (jobspec/policy.ts) as a pure function, and its form from the operator config with paths
 * resolved on this host (common/spec-policy.ts): each refusal names its field.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../common/config';
import { specPolicyIssues } from '../../common/spec-policy';
import { checkSpecPolicy, normalizeAbsolutePath, ruleMatches, type SpecPolicy } from '../../jobspec/policy';
import { trainingJobSpecSchema, type TrainingJobSpec } from '../../jobspec/schema';
import { generateKeyPair } from '../../jobspec/signing';
import { deepMerge, makeSignedSpec } from '../jobspec/fixtures';
import { tempDir } from '../helpers/forge';

const owner = generateKeyPair();
const other = generateKeyPair();

const POLICY: SpecPolicy = {
  maxJobHours: 720,
  fileRoots: ['/srv/forge'],
  outputRepos: [
    { match: 'https://git.example.com/models/' },
    { match: 'git@github.com:acme/' },
    { match: 'https://github.com/acme/*-models.git', owners: [owner.did] },
  ],
  branchPrefix: 'jobs/',
  pushesArtifacts: true,
  credentialFor: (url) => (url.startsWith('https://git.example.com/') || url.startsWith('https://github.com/acme/') ? 'token' : url.startsWith('git@github.com:acme/secure/') ? 'ssh' : undefined),
};

const spec = (overrides: object, keys = owner): TrainingJobSpec =>
  trainingJobSpecSchema.parse(
    makeSignedSpec(
      deepMerge(
        {
          base_model: { name: '/srv/forge/models/tiny', source: 'local' },
          data: { repo: 'file:///srv/forge/data/reverse' },
          artifacts: { output_repo: 'file:///srv/forge/models.git', output_branch: 'jobs/${job_id}' },
        },
        overrides,
      ),
      keys,
    ),
  );
const fields = (s: TrainingJobSpec, policy: SpecPolicy = POLICY): string[] => checkSpecPolicy(s, policy).map((i) => i.path);

test('a spec within the policy passes', () => {
  expect(checkSpecPolicy(spec({}), POLICY)).toEqual([]);
  expect(fields(spec({ artifacts: { output_repo: 'https://git.example.com/models/tiny.git' } }))).toEqual([]);
  expect(fields(spec({ artifacts: { output_repo: 'git@github.com:acme/secure/models.git' } }))).toEqual([]);
  expect(fields(spec({ artifacts: { output_repo: 'https://github.com/acme/team-models.git' } }))).toEqual([]);
  expect(fields(spec({ resources: { max_hours: 720 } }))).toEqual([]);
});

const refused: [string, object, string][] = [
  ['max_hours over max_job_hours', { resources: { max_hours: 721 } }, 'resources.max_hours'],
  ['a file:// data repo outside the roots', { data: { repo: 'file:///etc' } }, 'data.repo'],
  ['a file:// data repo that climbs out with ..', { data: { repo: 'file:///srv/forge/../../etc' } }, 'data.repo'],
  ['a %-encoded climb in a file:// data repo', { data: { repo: 'file:///srv/forge/%2e%2e/etc' } }, 'data.repo'],
  ['a root-prefix look-alike', { data: { repo: 'file:///srv/forge-evil/data' } }, 'data.repo'],
  ['a local base model in /etc', { base_model: { name: '/etc', source: 'local' } }, 'base_model.name'],
  ['a relative local base model', { base_model: { name: '../../etc', source: 'local' } }, 'base_model.name'],
  ['an eval job of a local model outside the roots', { job_type: 'eval', base_model: { name: '/home/operator/private-model', source: 'local' } }, 'base_model.name'],
  ['a file:// output repo outside the roots', { artifacts: { output_repo: 'file:///home/operator/code.git' } }, 'artifacts.output_repo'],
  ['a remote output repo no rule allows', { artifacts: { output_repo: 'https://github.com/victim/app.git' } }, 'artifacts.output_repo'],
  ['a prefix look-alike', { artifacts: { output_repo: 'https://git.example.com/models-evil/x.git' } }, 'artifacts.output_repo'],
  ['a URL that climbs out of its prefix', { artifacts: { output_repo: 'https://git.example.com/models/../victim/x.git' } }, 'artifacts.output_repo'],
  ['an ssh repo with no credential', { artifacts: { output_repo: 'git@github.com:acme/other.git' } }, 'artifacts.output_repo'],
  ['an ssh:// repo with no credential', { artifacts: { output_repo: 'ssh://git@github.com/acme/other.git' } }, 'artifacts.output_repo'],
  ['an output branch outside the prefix', { artifacts: { output_branch: 'release/${job_id}' } }, 'artifacts.output_branch'],
  ['output branch main', { artifacts: { output_branch: 'main' } }, 'artifacts.output_branch'],
];

test.each(refused)('%s is refused, naming the field', (_name, overrides, field) => {
  const issues = checkSpecPolicy(spec(overrides), POLICY);
  expect(issues.map((i) => i.path)).toEqual([field]);
  // Every message says what to do about it, naming the operator setting where one decides.
  expect(issues[0]!.message).toMatch(/max_job_hours|file_roots|output_repos|credential|branch_prefix|segments|branch of its own/);
});

test('a per-owner rule allows its owners only', () => {
  const repo = { artifacts: { output_repo: 'https://github.com/acme/team-models.git' } };
  expect(fields(spec(repo, owner))).toEqual([]);
  expect(fields(spec(repo, other))).toEqual(['artifacts.output_repo']);
});

test('main and master are refused even with no branch prefix', () => {
  const open = { ...POLICY, branchPrefix: '' };
  expect(fields(spec({ artifacts: { output_branch: 'master' } }), open)).toEqual(['artifacts.output_branch']);
  expect(fields(spec({ artifacts: { output_branch: 'Main' } }), open)).toEqual(['artifacts.output_branch']);
  expect(fields(spec({ artifacts: { output_branch: 'results/${job_id}' } }), open)).toEqual([]);
});

test('without result integration, or for an eval job, the output repo and branch are never used, and not checked', () => {
  const off = { ...POLICY, pushesArtifacts: false };
  expect(fields(spec({ artifacts: { output_repo: 'https://github.com/victim/app.git', output_branch: 'main' } }), off)).toEqual([]);
  // Paths the trainer reads are checked all the same.
  expect(fields(spec({ data: { repo: 'file:///etc' } }), off)).toEqual(['data.repo']);
  // Eval jobs commit nothing either; the model they read is checked.
  expect(fields(spec({ job_type: 'eval', artifacts: { output_repo: 'https://github.com/victim/app.git', output_branch: 'main' } }))).toEqual([]);
  expect(fields(spec({ job_type: 'eval', base_model: { name: '/etc', source: 'local' } }))).toEqual(['base_model.name']);
});

test('globs: * within a segment, ** across segments', () => {
  const any = (match: string, url: string): boolean => ruleMatches({ match }, url, owner.did);
  expect(any('https://h.example/*/models.git', 'https://h.example/team/models.git')).toBe(true);
  expect(any('https://h.example/*/models.git', 'https://h.example/a/b/models.git')).toBe(false);
  expect(any('https://h.example/**/models.git', 'https://h.example/a/b/models.git')).toBe(true);
  expect(any('https://h.example/team', 'https://h.example/team/x.git')).toBe(true);
  expect(any('https://h.example/team', 'https://h.example/team2/x.git')).toBe(false);
});

test('normalizeAbsolutePath drops . and .. segments and never climbs above /', () => {
  expect(normalizeAbsolutePath('/a/./b/../../../etc//passwd')).toBe('/etc/passwd');
});

describe('from the operator config, on this host', () => {
  const home = tempDir('forge-policy-');
  mkdirSync(path.join(home, 'models', 'tiny'), { recursive: true });
  // A link inside FORGE_HOME that leads out of it.
  symlinkSync('/etc', path.join(home, 'escape'));
  const config = (extra: object = {}) => parseConfig({ backends: { local: { kind: 'local' } }, ...extra });

  test('defaults: max_job_hours 720, paths under FORGE_HOME, only file:// output repos there, branches under jobs/', () => {
    const c = config();
    expect(c.max_job_hours).toBe(720);
    expect(c.results.git.branch_prefix).toBe('jobs/');
    expect(c.results.git.output_repos).toEqual([]);
    const ok = spec({ base_model: { name: path.join(home, 'models', 'tiny'), source: 'local' }, data: { repo: `file://${home}/data` }, artifacts: { output_repo: `file://${home}/models.git` } });
    expect(specPolicyIssues(ok, c, home)).toEqual([]);
    expect(specPolicyIssues(spec({ data: { repo: `file://${home}/data` }, base_model: { name: path.join(home, 'models') }, artifacts: { output_repo: 'https://git.example.com/models/x.git' } }), c, home).map((i) => i.path)).toEqual(['artifacts.output_repo']);
  });

  test('symlinks are resolved: a link under the root that leads out of it is refused', () => {
    const s = spec({ base_model: { name: path.join(home, 'escape', 'ssh'), source: 'local' }, data: { repo: `file://${home}/escape` }, artifacts: { output_repo: `file://${home}/models.git` } });
    const issues = specPolicyIssues(s, config(), home);
    expect(issues.map((i) => i.path)).toEqual(['data.repo', 'base_model.name']);
    expect(issues[0]!.message).toMatch(/\/etc is outside/);
  });

  test('output_repos rules (strings or per-owner objects) and credentials by URL prefix', () => {
    const c = config({
      max_job_hours: 2,
      results: {
        git: {
          file_roots: [home],
          output_repos: ['git@github.com:acme/', { match: 'https://git.example.com/models/', owners: [owner.did] }],
          credentials: [{ match: 'https://git.example.com/', token: 't' }],
          branch_prefix: 'forge/',
        },
      },
    });
    const base = { data: { repo: `file://${home}/data` }, base_model: { name: path.join(home, 'models', 'tiny') } };
    expect(specPolicyIssues(spec({ ...base, artifacts: { output_repo: 'https://git.example.com/models/x.git', output_branch: 'forge/${job_id}' } }), c, home)).toEqual([]);
    const issues = specPolicyIssues(spec({ ...base, resources: { max_hours: 3 }, artifacts: { output_repo: 'git@github.com:acme/x.git', output_branch: 'jobs/${job_id}' } }), c, home);
    expect(issues.map((i) => i.path)).toEqual(['resources.max_hours', 'artifacts.output_repo', 'artifacts.output_branch']);
    expect(issues[1]!.message).toMatch(/no ssh_key_file credential/);
  });

  test('a branch prefix that is no ref prefix is a config error', () => {
    expect(() => config({ results: { git: { branch_prefix: 'jobs' } } })).toThrow(/branch_prefix/);
    expect(() => config({ results: { git: { branch_prefix: '-x/' } } })).toThrow(/branch_prefix/);
    expect(() => config({ max_job_hours: 1e10 })).toThrow(/max_job_hours/);
  });
});
