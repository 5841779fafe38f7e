/**
 * Least privilege for trainers: a trainer run by the local backend sees an allow-listed environment (never the
 * worker's credentials), and what the orchestrator and the trainer write into the job's folder is the job's only.
 */
import { promises as fs, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forgeConfigSchema, type LocalBackendConfig } from '../../common/config';
import { passthroughFromEnv, spawnTrainer, trainerEnvironment } from '../../common/trainer-env';
import { LocalBackend } from '../../activities/backends/local/local';
import { createBackends } from '../../activities/backends/registry';
import type { Backend, DeploymentRef } from '../../activities/backends/types';
import { DEFAULT_TRAINER_IMAGE } from '../../jobspec/constants';
import { makeSignedSpec, signedOf } from '../jobspec/fixtures';

const SECRETS = { FORGE_API_TOKEN: 'secret-api-token', AWS_SECRET_ACCESS_KEY: 'secret-aws-key', TEMPORAL_API_KEY: 'secret-temporal' };
const saved: Record<string, string | undefined> = {};
const homes: string[] = [];

beforeAll(() => {
  for (const [k, v] of Object.entries({ ...SECRETS, FORGE_TEST_PASSED_THROUGH: 'yes', FORGE_TEST_NOT_LISTED: 'no' })) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
});

afterAll(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await Promise.all(homes.map((h) => fs.rm(h, { recursive: true, force: true })));
});

/** The trainer prints its whole environment into its output folder, then exits 0. */
const PRINT_ENV = 'env > "$FORGE_OUTPUT_DIR/env.txt"; mkdir "$FORGE_OUTPUT_DIR/sub"';

async function runToEnd(backend: Backend): Promise<{ ref: DeploymentRef; env: Map<string, string> }> {
  const raw = makeSignedSpec();
  const ref = await backend.submit(signedOf(raw), 1);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const s = await backend.status(ref);
    if (s.state === 'SUCCEEDED') break;
    if (s.state === 'FAILED' || Date.now() > deadline) throw new Error(`trainer ended ${s.state}: ${JSON.stringify(s.failure)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const text = await fs.readFile(path.join(String(ref.data.dir), 'output', 'env.txt'), 'utf8');
  const env = new Map(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
  return { ref, env };
}

async function tempHome(): Promise<string> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'forge-trainer-env-'));
  homes.push(home);
  return home;
}

const mode = (file: string): number => statSync(file).mode & 0o777;

describe('trainer environment (local backend)', () => {
  test('the worker env holds FORGE_API_TOKEN and AWS_SECRET_ACCESS_KEY: the trainer sees neither, but the contract, the basics and what the operator named', async () => {
    const home = await tempHome();
    const config = forgeConfigSchema.parse({
      backends: { local: { kind: 'local', trainers: { [DEFAULT_TRAINER_IMAGE]: { command: ['/bin/sh', '-c', PRINT_ENV], env: { FROM_CONFIG: 'c' } } } } },
      trainer_env_passthrough: ['FORGE_TEST_PASSED_THROUGH'],
    });
    const backend = createBackends(config, home).get('local')!;
    const { ref, env } = await runToEnd(backend);
    for (const name of Object.keys(SECRETS)) expect(env.has(name)).toBe(false);
    expect([...env.values()].filter((v) => v.startsWith('secret-'))).toEqual([]);
    expect(env.has('FORGE_TEST_NOT_LISTED')).toBe(false);
    expect(env.get('FORGE_TEST_PASSED_THROUGH')).toBe('yes');
    expect(env.get('FROM_CONFIG')).toBe('c');
    expect(env.get('JOB_ID')).toBe(ref.jobId);
    expect(env.get('FORGE_ATTEMPT')).toBe('1');
    for (const name of ['JOB_TYPE', 'MODEL', 'DATA_REPO', 'DATA_BRANCH', 'DATA_PATH', 'FORGE_SPEC', 'FORGE_OUTPUT_DIR']) expect(env.has(name)).toBe(true);
    expect(env.get('PATH')).toBe(process.env.PATH);
    if (process.env.HOME) expect(env.get('HOME')).toBe(process.env.HOME);
  });

  test('job folders are 0700 and every file in them 0600: the orchestrator\'s records, the logs and what the trainer writes', async () => {
    const home = await tempHome();
    const config: LocalBackendConfig = {
      kind: 'local',
      enabled: true,
      hourly_usd: 0,
      poll_interval_ms: 1000,
      trainers: { [DEFAULT_TRAINER_IMAGE]: { command: ['/bin/sh', '-c', PRINT_ENV], env: {} } },
    };
    const { ref } = await runToEnd(new LocalBackend('local', config, home));
    const attemptDir = String(ref.data.dir);
    const jobDir = path.dirname(attemptDir);
    expect(mode(jobDir).toString(8)).toBe('700');
    expect(mode(attemptDir).toString(8)).toBe('700');
    expect(mode(path.join(attemptDir, 'output')).toString(8)).toBe('700');
    expect(mode(path.join(attemptDir, 'output', 'sub')).toString(8)).toBe('700');
    for (const file of ['launch.json', 'spec.json', 'stdout.log', 'stderr.log', 'exit.json', 'wrapper.pid', 'output/env.txt']) {
      expect([file, mode(path.join(attemptDir, file)).toString(8)]).toEqual([file, '600']);
    }
  });
});

describe('trainerEnvironment', () => {
  test('basics and named names from the worker, then the operator, then the contract (which nothing overrides)', () => {
    const env = trainerEnvironment({
      base: { PATH: '/p', HOME: '/h', LC_ALL: 'C', SECRET: 's', PASS: 'x', MODEL: 'from-worker' },
      passthrough: ['PASS'],
      operator: { OP: 'o', MODEL: 'from-operator' },
      contract: { MODEL: 'from-contract' },
    });
    expect(env).toEqual({ PATH: '/p', HOME: '/h', LC_ALL: 'C', PASS: 'x', OP: 'o', MODEL: 'from-contract' });
  });

  test('no PATH in the worker: a default one', () => {
    expect(trainerEnvironment({ base: {} }).PATH).toBe('/usr/local/bin:/usr/bin:/bin');
  });

  test('FORGE_GRPO_TRAINER_ENV_PASSTHROUGH: names by commas or spaces; a bad name is refused, naming the variable', () => {
    expect(passthroughFromEnv({ FORGE_GRPO_TRAINER_ENV_PASSTHROUGH: 'HF_HOME, CUDA_HOME  X' })).toEqual(['HF_HOME', 'CUDA_HOME', 'X']);
    expect(passthroughFromEnv({})).toEqual([]);
    expect(() => passthroughFromEnv({ FORGE_GRPO_TRAINER_ENV_PASSTHROUGH: 'A=B' })).toThrow(/FORGE_GRPO_TRAINER_ENV_PASSTHROUGH: "A=B"/);
  });

  test('the operator config refuses a passthrough entry that is not a variable name', () => {
    expect(forgeConfigSchema.safeParse({ backends: { local: { kind: 'local' } }, trainer_env_passthrough: ['NOT A NAME'] }).success).toBe(false);
  });
});

describe('spawnTrainer', () => {
  test('the process sees the allow-listed environment only, never the rest of the worker\'s', async () => {
    const env = trainerEnvironment({ base: { ...process.env, ...SECRETS }, contract: { JOB_ID: 'j1' } });
    const child = spawnTrainer(['/bin/sh', '-c', 'env'], env, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
    expect(out).toContain('JOB_ID=j1\n');
    for (const secret of Object.values(SECRETS)) expect(out).not.toContain(secret);
  });

  test('an empty command is refused', () => {
    expect(() => spawnTrainer([], trainerEnvironment({ base: {} }))).toThrow(/command is empty/);
  });
});
