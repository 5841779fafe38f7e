/**
 * The cf-* commands as a user runs them: subprocesses of the compiled dist/client/cli/*.js against a real API (in
 * this process, on a free port) with a real orchestrator worker on the dev server. Exit codes are part of the test.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DirectoryArtifactSource } from '../../client/api/artifacts';
import { generateKeyPair, signSpec, verifyBytes } from '../../jobspec/signing';
import { makeSignedSpec, makeUnsignedSpec } from '../jobspec/fixtures';
import { fakeTrainer, tempDir, testConfig } from '../helpers/forge';
import { http, startApi, waitForJob, type ApiHarness } from '../api/harness';
import { publishArtifacts } from '../helpers/results';
import { requireBuilt, runCommand, type Run } from '../helpers/cli';

const TQ = 'test-cli';
/** Three progress events (loss 0.9, 0.5, 0.25) a second apart. */
const curvyTrainer = [
  '/bin/sh',
  '-c',
  [0.9, 0.5, 0.25].map((loss, i) => `echo '{"event":"progress","step":${i + 1},"max_steps":3,"loss":${loss}}'; sleep 1`).join('; '),
];
const home = tempDir('forge-cli-');
const artifactsRoot = path.join(home, 'artifacts');
const config = testConfig({ local: { trainers: { ok: fakeTrainer('ok', 1), fail: fakeTrainer('exit', 0, 3), slow: fakeTrainer('ok', 60), curvy: curvyTrainer } } });

let api: ApiHarness;
beforeAll(async () => {
  requireBuilt(['shared/command', 'cf-keygen', 'cf-submit-training', 'cf-check-training', 'cf-cancel', 'cf-fetch-artifacts']);
  api = await startApi({ taskQueue: TQ, config, home, artifacts: new DirectoryArtifactSource(artifactsRoot) });
});
afterAll(async () => {
  await api?.stop();
});

/** Runs a command without blocking this process (the API under test lives here). */
function cf(command: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runCommand(command, args, { FORGE_HOME: home, FORGE_API_URL: api.url, FORGE_CLI_POLL_MS: '100', ...env });
}

const keyFile = path.join(home, 'keys', 'owner.json');
let ownerDid: string;

/** The example a user writes: no job_id, created_at, owner_did or signature. */
function templateFile(image: string, name = `${image}-${Math.random().toString(36).slice(2)}.json`): string {
  const { job_id: _j, created_at: _c, owner_did: _o, ...template } = makeUnsignedSpec({ trainer: { image } });
  const file = path.join(home, name);
  writeFileSync(file, JSON.stringify(template, null, 2));
  return file;
}

const ndjson = (s: string): Record<string, unknown>[] => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('cf-keygen', () => {
  test('writes a 0600 key file and prints its did; refuses to overwrite without --force', async () => {
    const r = await cf('cf-keygen', ['--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { did: string; key_file: string };
    expect(out.key_file).toBe(keyFile);
    expect(out.did).toMatch(/^did:key:z6Mk/);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(keyFile, 'utf8'))).toMatchObject({ did: out.did });
    ownerDid = out.did;

    const again = await cf('cf-keygen', []);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/exists; pass --force/);
    const other = path.join(home, 'other-key.json');
    const human = await cf('cf-keygen', ['--out', other]);
    expect(human.code).toBe(0);
    expect(human.stdout.trim()).toMatch(/^did:key:z6Mk\S+$/);
    expect((await cf('cf-keygen', ['--out', other, '--force'])).code).toBe(0);
  });

  test('--help documents usage and exit codes; an unknown option is a usage error (2)', async () => {
    for (const command of ['cf-keygen', 'cf-submit-training', 'cf-check-training', 'cf-cancel', 'cf-fetch-artifacts']) {
      const help = await cf(command, ['--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: ${command}`);
      expect(help.stdout).toContain('Exit codes:');
      const bad = await cf(command, ['--no-such-option']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/Unknown option/);
    }
  });
});

describe('cf-submit-training', () => {
  test('fills in and signs a template, submits it and --watch follows it to COMPLETED (exit 0)', async () => {
    const r = await cf('cf-submit-training', [templateFile('ok'), '--key', keyFile, '--watch']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^submitted: job [0-9a-f-]{36}$/);
    const jobId = /job ([0-9a-f-]{36})/.exec(lines[0]!)![1]!;
    const states = lines.map((l) => /^\d\d:\d\d:\d\d {2}(\w+)/.exec(l)?.[1]).filter(Boolean);
    expect(states).toEqual(['CREATED', 'QUEUED', 'SUBMITTED', 'RUNNING', 'COMPLETED']);
    expect(r.stdout).toMatch(/\[#+-*\] 1\/2 steps +50% {2}loss 0\.9000/);
    expect(lines.filter(Boolean).at(-1)).toMatch(new RegExp(`^job ${jobId} COMPLETED after \\d+ s, cost \\$0\\.0000; \\[#+\\] 2/2 steps 100%  loss 0\\.4000$`));
    const status = (await http(api.url, 'GET', `/jobs/${jobId}`)).json as { owner_did: string };
    expect(status.owner_did).toBe(ownerDid);
  });

  test('--watch --json streams NDJSON events; a job that fails ends with exit 1', async () => {
    const r = await cf('cf-submit-training', [templateFile('fail'), '--key', keyFile, '--watch', '--json']);
    expect(r.code).toBe(1);
    const events = ndjson(r.stdout);
    expect(events[0]).toMatchObject({ event: 'submitted', created: true });
    expect(events.filter((e) => e.event === 'transition').map((e) => e.state)).toEqual(expect.arrayContaining(['CREATED', 'SUBMITTED', 'FAILED', 'ABANDONED']));
    expect(events.at(-1)).toMatchObject({ event: 'final', state: 'ABANDONED' });
  });

  test('a complete signed spec is sent as it is: again → "already submitted" (0); another spec under its id → 6', async () => {
    const keys = generateKeyPair();
    const spec = makeSignedSpec({ trainer: { image: 'ok' } }, keys);
    const file = path.join(home, 'signed.json');
    writeFileSync(file, JSON.stringify(spec));
    const first = await cf('cf-submit-training', [file]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^submitted: job /);
    const again = await cf('cf-submit-training', [file]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^already submitted: job /);
    const { signature_ed25519: _s, ...unsigned } = spec;
    writeFileSync(file, JSON.stringify(signSpec({ ...unsigned, objective: { ...unsigned.objective, max_steps: 3 } }, keys.secretKey)));
    const conflict = await cf('cf-submit-training', [file]);
    expect(conflict.code).toBe(6);
    expect(conflict.stderr).toMatch(/job_id: already used by a different spec/);
  });

  test('an invalid spec → 5 with every bad field named; bad input files → 2; no API → 3', async () => {
    const file = templateFile('ok');
    const spec = JSON.parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
    spec.data!.branch = '--upload-pack=x';
    spec.hyperparameters!.learning_rate = -1;
    writeFileSync(file, JSON.stringify(spec));
    const invalid = await cf('cf-submit-training', [file, '--key', keyFile]);
    expect(invalid.code).toBe(5);
    expect(invalid.stderr).toMatch(/Invalid training job spec/);
    expect(invalid.stderr).toMatch(/^ {2}data\.branch: must not start with "-"$/m);
    expect(invalid.stderr).toMatch(/^ {2}hyperparameters\.learning_rate: /m);

    writeFileSync(path.join(home, 'broken.json'), '{ not json');
    expect((await cf('cf-submit-training', [path.join(home, 'broken.json'), '--key', keyFile])).code).toBe(2);
    expect((await cf('cf-submit-training', [path.join(home, 'missing.json')])).code).toBe(2);
    expect((await cf('cf-submit-training', [])).code).toBe(2);
    const strangerOwner = templateFile('ok');
    writeFileSync(strangerOwner, JSON.stringify({ ...JSON.parse(readFileSync(strangerOwner, 'utf8')), owner_did: generateKeyPair().did }));
    expect((await cf('cf-submit-training', [strangerOwner, '--key', keyFile])).stderr).toMatch(/is not the key's/);

    const leaky = path.join(home, 'leaky-key.json');
    writeFileSync(leaky, readFileSync(keyFile));
    chmodSync(leaky, 0o644);
    const refused = await cf('cf-submit-training', [templateFile('ok'), '--key', leaky]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/readable by others; run: chmod 600/);

    const down = await cf('cf-submit-training', [templateFile('ok'), '--key', keyFile], { FORGE_API_URL: 'http://127.0.0.1:1' });
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(/cannot reach the orchestrator API/);
  });
});

describe('cf-check-training and cf-cancel', () => {
  test('a readable table, JSON, 4 for an unknown job, 2 for a malformed id', async () => {
    const submitted = await cf('cf-submit-training', [templateFile('slow'), '--key', keyFile, '--json']);
    const jobId = (ndjson(submitted.stdout)[0] as { job_id: string }).job_id;
    await waitForJob(api.url, jobId, (s) => s.state === 'RUNNING');
    const table = await cf('cf-check-training', [jobId]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^job +${jobId}$`, 'm'));
    expect(table.stdout).toMatch(/^state +RUNNING \(attempt 1 on local\)$/m);
    expect(table.stdout).toMatch(/^ {2}TIME +STATE +ATTEMPT +BACKEND +REASON$/m);
    expect(table.stdout).toMatch(/^ {2}ATTEMPT +BACKEND +ID +STATE +COST +EXIT +CLOSED$/m);
    const json = await cf('cf-check-training', [jobId, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ job_id: jobId, state: 'RUNNING' });
    expect((await cf('cf-check-training', ['00000000-0000-4000-8000-000000000404'])).code).toBe(4);
    expect((await cf('cf-check-training', ['not-a-job'])).code).toBe(2);

    // Cancel: a stranger's key is refused (5); the owner's works (0); watching then ends CANCELLED (1); again → 6.
    const stranger = path.join(home, 'other-key.json');
    const refused = await cf('cf-cancel', [jobId, '--key', stranger]);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/Cancel refused.*\n {2}signature_ed25519: signature does not match owner_did/);
    const cancelled = await cf('cf-cancel', [jobId, '--key', keyFile]);
    expect(cancelled.code).toBe(0);
    expect(cancelled.stdout).toMatch(/cancel accepted/);
    const watched = await cf('cf-check-training', [jobId, '--watch']);
    expect(watched.code).toBe(1);
    expect(watched.stdout).toMatch(/CANCELLED +cancelled by its owner/);
    const again = await cf('cf-cancel', [jobId, '--key', keyFile]);
    expect(again.code).toBe(6);
    expect(again.stderr).toMatch(/already CANCELLED/);
  });
});

describe('cf-check-training --watch draws the curve', () => {
  test('a sparkline of the loss at each refresh where it grew, the whole curve at the end', async () => {
    const submitted = await cf('cf-submit-training', [templateFile('curvy'), '--key', keyFile, '--json']);
    const jobId = (ndjson(submitted.stdout)[0] as { job_id: string }).job_id;
    const watched = await cf('cf-check-training', [jobId, '--watch']);
    expect(watched.code).toBe(0);
    const curves = watched.stdout.split('\n').filter((l) => l.startsWith('curve '));
    expect(curves.at(-1)).toBe('curve     train_loss █▄▁ last 0.25 at step 3');
    // Drawn while it ran too: an earlier, shorter curve (the watch started before the second point).
    expect(curves.length).toBeGreaterThan(1);
    const json = ndjson((await cf('cf-check-training', [jobId, '--watch', '--json'])).stdout);
    expect(json.filter((e) => e.event === 'curve').map((e) => e.line)).toEqual(['curve     train_loss █▄▁ last 0.25 at step 3']);
  });
});

describe('cf-fetch-artifacts', () => {
  const orchestrator = generateKeyPair();
  const files: Record<string, Buffer> = { 'model.safetensors': randomBytes(200_000), 'config.json': Buffer.from('{"tiny":true}'), 'checkpoints/step-1.bin': randomBytes(500) };
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  let jobId: string;

  /** Lays out the job's artifacts and a manifest signed by `signer`, optionally lying about one file. */
  function publish(signer = orchestrator, lie?: string): void {
    publishArtifacts(artifactsRoot, jobId, files, signer, lie);
  }

  beforeAll(async () => {
    const spec = makeSignedSpec({ trainer: { image: 'ok' } });
    jobId = spec.job_id;
    await http(api.url, 'POST', '/jobs', spec);
    await waitForJob(api.url, jobId, (s) => s.state === 'COMPLETED');
  });

  test('no artifacts yet → 4 with a clear message', async () => {
    const r = await cf('cf-fetch-artifacts', ['--job-id', jobId, '--orchestrator-did', orchestrator.did]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/has no artifacts yet/);
  });

  test('every file verified against the signed manifest lands in --dest', async () => {
    publish();
    const dest = path.join(home, 'fetched');
    const r = await cf('cf-fetch-artifacts', ['--job-id', jobId, '--dest', dest, '--orchestrator-did', orchestrator.did, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ job_id: jobId, dest, signer_did: orchestrator.did });
    for (const [name, bytes] of Object.entries(files)) expect(sha(readFileSync(path.join(dest, name)))).toBe(sha(bytes));
    // The signed manifest lands beside the files as in the output repo: its exact bytes and its signature.
    const manifestBytes = readFileSync(path.join(dest, 'manifest.json'));
    expect(JSON.parse(manifestBytes.toString('utf8'))).toMatchObject({ job_id: jobId });
    expect(verifyBytes(readFileSync(path.join(dest, 'manifest.sig'), 'utf8').trim(), manifestBytes, orchestrator.publicKey)).toBe(true);
  });

  test('a tampered file, a manifest by another key, or an unknown orchestrator identity → 7 and nothing kept', async () => {
    const cases: [string, () => void, string[]][] = [
      ['tampered', () => publish(orchestrator, 'model.safetensors'), ['--orchestrator-did', orchestrator.did]],
      ['foreign signer', () => publish(generateKeyPair()), ['--orchestrator-did', orchestrator.did]],
      ['no identity', () => publish(), []],
    ];
    for (const [name, setup, args] of cases) {
      setup();
      const dest = path.join(home, `refused-${name.replace(' ', '-')}`);
      const r = await cf('cf-fetch-artifacts', ['--job-id', jobId, '--dest', dest, ...args]);
      expect(r.code).toBe(7);
      expect(r.stderr).toMatch(/refusing/);
      expect(existsSync(dest) ? readdirSync(dest) : []).toEqual([]);
    }
  });
});

describe('against an API with FORGE_API_AUTH=owners: every command signs its requests with --key (default: the owner key)', () => {
  let owners: ApiHarness;
  beforeAll(async () => {
    owners = await startApi({ taskQueue: TQ, config, home, worker: false, auth: 'owners' });
  });
  afterAll(async () => {
    await owners?.stop();
  });
  const at = (command: string, args: string[], env: Record<string, string> = {}): Promise<Run> =>
    cf(command, args, { FORGE_API_URL: owners.url, ...env });

  test('submit and check with the owner key; another key sees no such job; no key at all is told how to sign', async () => {
    const submitted = await at('cf-submit-training', [templateFile('ok'), '--key', keyFile, '--json', '--watch']);
    expect(submitted.code).toBe(0);
    const jobId = (ndjson(submitted.stdout)[0] as { job_id: string }).job_id;
    const checked = await at('cf-check-training', [jobId, '--key', keyFile, '--json']);
    expect(checked.code).toBe(0);
    expect(JSON.parse(checked.stdout)).toMatchObject({ job_id: jobId, owner_did: ownerDid, state: 'COMPLETED' });
    // Without --key, the default owner key ($FORGE_HOME/keys/owner.json) signs.
    expect((await at('cf-check-training', [jobId])).code).toBe(0);
    const stranger = await at('cf-check-training', [jobId, '--key', path.join(home, 'other-key.json')]);
    expect(stranger.code).toBe(4);
    const unsigned = await at('cf-check-training', [jobId], { FORGE_HOME: tempDir('forge-cli-nokey-') });
    expect(unsigned.code).toBe(5);
    expect(unsigned.stderr).toMatch(/RFC 9421/);
  });
});
