/**
 * One identity, provisioned: outside the embedded stack an orchestrator replica never makes its own key, and needs a
 * shared registry; it refuses to start without them, saying what to provision. `cf-keygen --orchestrator` provisions
 * the key (idempotently); the embedded stack (FORGE_EMBEDDED=1: npm start, the test harnesses) still makes it itself.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { installationTag, isEmbedded, orchestratorKey, orchestratorKeyFile, OrchestratorKeyMissingError } from '../../common/orchestrator-key';
import { replicaProvisioningProblems } from '../../common/provisioning';
import { forgeConfigSchema } from '../../common/config';
import { createOrchestratorKeyStep } from '../../infra/setup';
import { temporalAddress } from '../helpers/forge';
import { MAIN } from '../helpers/processes';

const CF_KEYGEN = path.resolve(__dirname, '..', '..', 'dist', 'client', 'cli', 'cf-keygen.js');
const dirs: string[] = [];

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempHome(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'forge-provision-'));
  dirs.push(d);
  return d;
}

/** The process env of a replica outside the embedded stack. */
function replicaEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FORGE_HOME: home, ...extra };
  delete env.FORGE_EMBEDDED;
  return env;
}

interface Run {
  code: number | null;
  output: string;
}

/** Runs `args` under node until it exits, or until `until` shows in its output (then SIGTERM, and wait). */
function run(args: string[], env: NodeJS.ProcessEnv, until?: string, timeoutMs = 60_000): Promise<Run & { matched: boolean }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let matched = false;
    const onData = (d: Buffer): void => {
      output += d.toString();
      if (until && !matched && output.includes(until)) {
        matched = true;
        p.kill('SIGTERM');
      }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} still running after ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output, matched });
    });
  });
}

function workerEnv(home: string, config: object): NodeJS.ProcessEnv {
  const configFile = path.join(home, 'config.json');
  writeFileSync(configFile, JSON.stringify(config));
  return replicaEnv(home, {
    TEMPORAL_ADDRESS: temporalAddress(),
    FORGE_CONFIG: configFile,
    FORGE_ORCHESTRATOR_TASK_QUEUE: `provisioning-${path.basename(home)}`,
    FORGE_WORKFLOW_BUNDLE: process.env.FORGE_TEST_WORKFLOW_BUNDLE!,
    FORGE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS: '1',
    FORGE_WORKER_LOG_LEVEL: 'ERROR',
  });
}

const BACKENDS = { backends: { local: { kind: 'local' } } };

test('a replica without the key and a shared registry exits non-zero, naming the key file, the command and results.registry.repo; it mints nothing', async () => {
  const home = tempHome();
  const r = await run([MAIN, 'orchestrator'], workerEnv(home, BACKENDS));
  expect(r.code).not.toBe(0);
  const file = path.join(home, 'keys', 'orchestrator.json');
  expect(r.output).toContain(`no orchestrator key at ${file} (FORGE_ORCHESTRATOR_KEY_FILE`);
  expect(r.output).toContain('`cf-keygen --orchestrator`');
  expect(r.output).toContain('results.registry.repo is not set in FORGE_CONFIG');
  expect(r.output).not.toContain('[orchestrator] polling');
  expect(existsSync(file)).toBe(false);
}, 90_000);

test('provisioned with `cf-keygen --orchestrator` (idempotent) and given a registry, the replica starts', async () => {
  const home = tempHome();
  const made = await run([CF_KEYGEN, '--orchestrator', '--json'], replicaEnv(home));
  expect(made.code).toBe(0);
  const { did, key_file: file, created } = JSON.parse(made.output) as { did: string; key_file: string; created: boolean };
  expect([file, created]).toEqual([path.join(home, 'keys', 'orchestrator.json'), true]);
  expect(statSync(file).mode & 0o777).toBe(0o600);
  const again = await run([CF_KEYGEN, '--orchestrator', '--json'], replicaEnv(home));
  expect(JSON.parse(again.output)).toEqual({ did, key_file: file, created: false, installation_tag: installationTag(did) });

  const r = await run([MAIN, 'orchestrator'], workerEnv(home, { ...BACKENDS, results: { registry: { repo: `file://${path.join(home, 'registry')}` } } }), '[orchestrator] polling');
  expect(r.matched ? 'started' : r.output).toBe('started');
  expect(orchestratorKey(home, {}).did).toBe(did);
}, 120_000);

test("rotating the key (--orchestrator --force) names the replaced key's installation tag for reaper.earlier_tags", async () => {
  const home = tempHome();
  const first = await run([CF_KEYGEN, '--orchestrator'], replicaEnv(home));
  const didOf = (output: string): string => /did:key:\S+/.exec(output)![0];
  const oldDid = didOf(first.output);
  expect(first.output).toContain(`installation tag ${installationTag(oldDid)}: in the provider-visible name`);
  const rotated = await run([CF_KEYGEN, '--orchestrator', '--force'], replicaEnv(home));
  expect(rotated.code).toBe(0);
  const newDid = didOf(rotated.output);
  expect(newDid).not.toBe(oldDid);
  expect(rotated.output).toContain(`installation tag ${installationTag(newDid)}`);
  expect(rotated.output).toContain(`the replaced key's installation tag was ${installationTag(oldDid)}: add it to reaper.earlier_tags`);
  const json = JSON.parse((await run([CF_KEYGEN, '--orchestrator', '--force', '--json'], replicaEnv(home))).output) as Record<string, string>;
  expect(json.replaced_installation_tag).toBe(installationTag(newDid));
  expect(json.installation_tag).toBe(installationTag(json.did!));
});

test('replicas with their own FORGE_HOME share one identity through FORGE_ORCHESTRATOR_KEY_FILE', async () => {
  const shared = path.join(tempHome(), 'orchestrator.json');
  expect((await run([CF_KEYGEN, '--orchestrator', '--out', shared], replicaEnv(tempHome()))).code).toBe(0);
  const env = { FORGE_ORCHESTRATOR_KEY_FILE: shared };
  expect(orchestratorKey(tempHome(), env).did).toBe(orchestratorKey(tempHome(), env).did);
});

test('in process: the embedded stack makes the key on first use; a replica gets OrchestratorKeyMissingError', () => {
  const embedded = tempHome();
  expect(isEmbedded({ FORGE_EMBEDDED: '1' })).toBe(true);
  expect(orchestratorKey(embedded, { FORGE_EMBEDDED: '1' }).did).toMatch(/^did:key:/);
  expect(statSync(orchestratorKeyFile(embedded, {})).mode & 0o777).toBe(0o600);

  const replica = tempHome();
  expect(() => orchestratorKey(replica, {})).toThrow(OrchestratorKeyMissingError);
  const config = forgeConfigSchema.parse(BACKENDS);
  expect(replicaProvisioningProblems(config, replica, {})).toHaveLength(2);
  expect(replicaProvisioningProblems(config, replica, { FORGE_EMBEDDED: '1' })).toEqual([]);
  expect(existsSync(orchestratorKeyFile(replica, {}))).toBe(true);
});

test('the setup role\'s --create-orchestrator-key step makes the key once and keeps it after', () => {
  const file = path.join(tempHome(), 'keys', 'orchestrator.json');
  const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
  try {
    createOrchestratorKeyStep(file);
    const did = orchestratorKey('/nonexistent', { FORGE_ORCHESTRATOR_KEY_FILE: file }).did;
    createOrchestratorKeyStep(file);
    expect(log.mock.calls.map((c) => String(c[0]))).toEqual([
      `[setup] orchestrator key ${file} created: ${did}`,
      `[setup] orchestrator key ${file} already provisioned, kept: ${did}`,
    ]);
  } finally {
    log.mockRestore();
  }
});
