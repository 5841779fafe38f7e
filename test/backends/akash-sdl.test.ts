/**
 * Akash SDL generation (activities/backends/akash/akash-sdl.ts): a table of specs validated by akashjs' own parser
 * (beta3), every memory unit, denoms, GPU vendors, the brief's example, manifest versions, keytar never loaded,
 * and cf-sdl (the compiled CLI, as a user runs it).
 */
import { installationTag } from '../../common/orchestrator-key';
import { loadOrCreateKeyFile } from '../../common/orchestrator-key';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { convertResourceString } from '@akashnetwork/akashjs/build/sdl/sizes';
import { USDC_IBC_DENOMS } from '@akashnetwork/akashjs/build/config/network';
import {
  akashSdlOptions,
  buildSdl,
  memorySize,
  parseGpuType,
  parseSdl,
  perBlockAmount,
  resolveDenom,
  sdlDocument,
  SdlError,
  toYaml,
  usdPerHour,
  type SdlOptions,
} from '../../activities/backends/akash/akash-sdl';
import { parseConfig, type AkashBackendConfig } from '../../common/config';
import { trainingJobSpecSchema, type TrainingJobSpec } from '../../jobspec/schema';
import { makeSignedSpec } from '../jobspec/fixtures';

const ROOT = path.resolve(__dirname, '..', '..');
const GiB = 1024 ** 3;

function spec(resources: object, extra: object = {}): TrainingJobSpec {
  return trainingJobSpecSchema.parse(
    makeSignedSpec({ resources: { gpus: 0, cpus: 1, ram_gb: 1, storage_gb: 1, max_hours: 1, ...resources }, ...extra }),
  );
}

const base: SdlOptions = {
  image: 'chrysalis/trainer:latest',
  env: { JOB_ID: 'x' },
  service: 'trainer',
  placement: 'dcloud',
  pricing: { denom: 'uakt', amount: 1000 },
  exposePort: 8080,
};

const seedSpec = {
  job_id: '7d6f3c1e-2a4b-4c8d-9e0f-1a2b3c4d5e6f',
  base_model: { name: 'llama3-8b', source: 'huggingface', revision: 'main' },
  data: { repo: 'git@github.com:user/traces.git' },
  resources: { gpus: 1, gpu_type: 'a100', gpu_mem_gb: 80, cpus: 8, ram_gb: 64, storage_gb: 100, max_hours: 8 },
  backend: { provider: 'akash', region: 'any', max_cost_usd: 50 },
};

/** Seed §6.2.1, verbatim. */
const SEED_SDL = `version: "2.0"
services:
  trainer:
    image: chrysalis/trainer:latest
    env:
      - JOB_ID=\${JOB_ID}
      - MODEL=llama3-8b
      - DATA_REPO=git@github.com:user/traces.git
    expose:
      - port: 8080
        as: 80
        to:
          - global: true
profiles:
  compute:
    trainer:
      resources:
        cpu:
          units: 8
        memory:
          size: 64Gi
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: a100
        storage:
          size: 100Gi
  placement:
    dcloud:
      pricing:
        trainer:
          denom: uakt
          amount: 1000
deployment:
  trainer:
    dcloud:
      profile: trainer
      count: 1
`;

describe('the table', () => {
  test.each([
    ['GPU: the seed’s A100 80GB', { gpus: 1, gpu_type: 'a100', gpu_mem_gb: 80, cpus: 8, ram_gb: 64, storage_gb: 100 }, 'vendor/nvidia/model/a100/ram/80Gi', 8000, 64 * GiB, 100 * GiB],
    ['GPU: vendor named, several', { gpus: 4, gpu_type: 'nvidia/h100', cpus: 32, ram_gb: 512, storage_gb: 2048 }, 'vendor/nvidia/model/h100', 32000, 512 * GiB, 2048 * GiB],
    ['GPU: AMD', { gpus: 1, gpu_type: 'amd/mi300x', gpu_mem_gb: 192, cpus: 16, ram_gb: 128, storage_gb: 500 }, 'vendor/amd/model/mi300x/ram/192Gi', 16000, 128 * GiB, 500 * GiB],
    ['GPU: a bare AMD model', { gpus: 2, gpu_type: 'MI250', cpus: 8, ram_gb: 64, storage_gb: 100 }, 'vendor/amd/model/mi250', 8000, 64 * GiB, 100 * GiB],
    ['GPU: spaced model name', { gpus: 1, gpu_type: 'RTX 4090', gpu_mem_gb: 24, cpus: 4, ram_gb: 32, storage_gb: 50 }, 'vendor/nvidia/model/rtx4090/ram/24Gi', 4000, 32 * GiB, 50 * GiB],
    ['GPU: any NVIDIA', { gpus: 1, gpu_type: '*', cpus: 2, ram_gb: 8, storage_gb: 20 }, 'vendor/nvidia/model/*', 2000, 8 * GiB, 20 * GiB],
    ['CPU only', { gpus: 0, cpus: 0.5, ram_gb: 0.5, storage_gb: 1.5 }, undefined, 500, 512 * 1024 ** 2, 1536 * 1024 ** 2],
  ])('%s', async (_name, resources, gpuAttribute, cpuMilli, memBytes, storageBytes) => {
    const s = spec(resources);
    const { yaml, sdl, manifestVersion } = await buildSdl(s, base);
    expect(parseSdl(yaml)).toBeDefined();
    const group = sdl.groups()[0];
    const unit = group.resources[0].resource;
    const text = (v: Uint8Array): string => Buffer.from(v).toString();
    expect(Number(text(unit.cpu.units.val))).toBe(cpuMilli);
    expect(Number(text(unit.memory.quantity.val))).toBe(memBytes);
    expect(Number(text(unit.storage[0].quantity.val))).toBe(storageBytes);
    expect(Number(text(unit.gpu.units.val))).toBe(s.resources.gpus);
    expect((unit.gpu.attributes ?? []).map((a: { key: string }) => a.key)).toEqual(gpuAttribute ? [gpuAttribute] : []);
    expect(group.resources[0].price).toMatchObject({ denom: 'uakt', amount: '1000' });
    expect(manifestVersion).toMatch(/^[0-9a-f]{64}$/);
    if (s.resources.gpus === 0) expect(yaml).not.toMatch(/gpu:/);
  });

  test.each([
    [0.5, '512Mi'],
    [1, '1Gi'],
    [1.5, '1536Mi'],
    [64, '64Gi'],
    [1024, '1Ti'],
    [1536, '1536Gi'],
    [1024 ** 2, '1Pi'],
    [1024 ** 3, '1Ei'],
    [1 / 1024, '1Mi'],
    [1 / 1024 ** 2, '1Ki'],
    [3 / 1024 ** 2, '3Ki'],
  ])('every memory unit: %p GiB is %s (exact bytes, as akashjs reads it back)', (gib, size) => {
    expect(memorySize(gib)).toBe(size);
    expect(convertResourceString(size)).toBe(gib * GiB);
  });

  test('a size finer than 1 KiB rounds up to whole KiB; zero or negative is an error', () => {
    expect(memorySize(1e-6)).toBe('2Ki');
    expect(() => memorySize(0, 'resources.ram_gb')).toThrow(new SdlError('resources.ram_gb must be a positive number of GiB, got 0'));
  });

  test('pricing: uakt and the network’s USDC (by its IBC denom or as "usdc") pass; any other denom is a clear error', async () => {
    const s = spec({});
    await expect(buildSdl(s, { ...base, pricing: { denom: 'usdc', amount: 0.5 } })).resolves.toBeDefined();
    await expect(buildSdl(s, { ...base, pricing: { denom: USDC_IBC_DENOMS.mainnet, amount: 0.5 } })).resolves.toBeDefined();
    expect(resolveDenom('usdc', 'sandbox')).toBe(USDC_IBC_DENOMS.sandbox);
    await expect(buildSdl(s, { ...base, pricing: { denom: 'uatom', amount: 1 } })).rejects.toThrow(/^invalid SDL: Invalid denom: "uatom"\. Only uakt and ibc\/170C6776\w+ are supported\.$/);
    await expect(buildSdl(s, { ...base, pricing: { denom: 'uakt', amount: 0 } })).rejects.toThrow(new SdlError('price cap must be a positive amount of uakt per block, got 0'));
  });

  test('a GPU vendor Akash does not know is a clear error naming the ones it does', async () => {
    await expect(buildSdl(spec({ gpus: 1, gpu_type: 'intel/gaudi2' }), base)).rejects.toThrow(
      new SdlError('resources.gpu_type "intel/gaudi2": GPU vendor "intel" is not one Akash knows (nvidia, amd); write it as "<vendor>/<model>" with one of those, or a bare model name'),
    );
    expect(parseGpuType('NVIDIA/A100')).toEqual({ vendor: 'nvidia', model: 'a100' });
    expect(parseGpuType('amd/any')).toEqual({ vendor: 'amd' });
    expect(() => parseGpuType('nvidia/a100;rm')).toThrow(/not a GPU model name/);
  });

  test('strings that YAML would misread are quoted; the parser reads back what was written', async () => {
    const env = { A: 'yes', B: '3.0', C: 'a: b # c', D: 'line1\nline2', E: "it's \"quoted\"", F: '' };
    const { sdl } = await buildSdl(spec({}), { ...base, env, command: ['sh', '-c'], args: ['echo "$@"', '--', '-x'] });
    const svc = sdl.data.services.trainer!;
    expect(svc.env).toEqual(Object.entries(env).map(([k, v]) => `${k}=${v}`));
    expect(svc.command).toEqual(['sh', '-c']);
    expect(svc.args).toEqual(['echo "$@"', '--', '-x']);
  });
});

describe('the example spec of the brief', () => {
  const s = trainingJobSpecSchema.parse(makeSignedSpec(seedSpec));

  test('the seed SDL itself is valid beta3', () => {
    expect(parseSdl(SEED_SDL).groups()).toHaveLength(1);
  });

  test('comes out equivalent: the same document, plus the GPU RAM the spec asks for (gpu_mem_gb 80)', async () => {
    const env = { JOB_ID: s.job_id, MODEL: s.base_model.name, DATA_REPO: s.data.repo };
    const ours = parseSdl(toYaml(sdlDocument(s, { ...base, env })));
    const seed = parseSdl(SEED_SDL);
    // The seed leaves JOB_ID to be filled in; ours is filled.
    const seedData = structuredClone(seed.data);
    seedData.services.trainer!.env = seedData.services.trainer!.env!.map((e) => e.replace('${JOB_ID}', s.job_id));
    const ourData = structuredClone(ours.data);
    // akashjs types profiles as v2 (no gpu); the beta3 data has one.
    const resources: object = ourData.profiles.compute.trainer!.resources;
    const gpu = ('gpu' in resources ? resources.gpu : undefined) as { attributes: unknown };
    expect(gpu.attributes).toEqual({ vendor: { nvidia: [{ model: 'a100', ram: '80Gi' }] } });
    // Without the RAM attribute (which the seed does not have), the two documents are equal.
    gpu.attributes = { vendor: { nvidia: [{ model: 'a100' }] } };
    expect(ourData).toEqual(seedData);
    // And what goes on chain: the same groups, the GPU attribute one step more specific.
    const keys = (x: typeof ours) => x.groups()[0].resources[0].resource.gpu.attributes.map((a: { key: string }) => a.key);
    expect(keys(seed)).toEqual(['vendor/nvidia/model/a100']);
    expect(keys(ours)).toEqual(['vendor/nvidia/model/a100/ram/80Gi']);
  });

  test('the backend’s own SDL for it (agent command, contract env) is a valid superset', async () => {
    const config = akashConfig();
    const built = await buildSdl(s, akashSdlOptions(config, { signed: { spec: s, raw: { ...s } }, attempt: 1, token: 'tok', capUsd: usdPerHour(1000, 3e-6, 6.117) }));
    const svc = built.sdl.data.services.trainer!;
    expect(svc.image).toBe('chrysalis/trainer:latest');
    expect(svc.command).toEqual(['sh', '-c']);
    expect(svc.args?.slice(1)).toEqual(['forge-agent', 'forge-trainer', 'run']);
    expect(svc.env).toEqual(expect.arrayContaining([`JOB_ID=${s.job_id}`, 'MODEL=llama3-8b', 'DATA_REPO=git@github.com:user/traces.git', 'FORGE_ATTEMPT=1', 'FORGE_AGENT_TOKEN=tok', 'FORGE_AGENT_PORT=8080']));
    expect(svc.expose).toEqual([{ port: 8080, as: 80, to: [{ global: true }] }]);
    expect(built.sdl.groups()[0].resources[0].price).toMatchObject({ denom: 'uakt' });
    expect(Number(built.sdl.groups()[0].resources[0].price.amount)).toBeCloseTo(1000, 3);
  });
});

function akashConfig(extra: object = {}): AkashBackendConfig {
  const c = parseConfig({ backends: { akash: { kind: 'akash', mode: 'console', hourly_usd: 2, akt_usd: 3, console: { api_key: 'k' }, ...extra } } }).backends.akash;
  if (c?.kind !== 'akash') throw new Error('not akash');
  return c;
}

test('manifest version: sha256 of the sorted manifest, the same every time, different when the SDL differs', async () => {
  const s = spec({ gpus: 1, gpu_type: 'a100' });
  const a = await buildSdl(s, base);
  const b = await buildSdl(s, base);
  expect(a.manifestVersion).toBe(b.manifestVersion);
  expect(a.manifestVersion).toBe(createHash('sha256').update(a.sdl.manifestSortedJSON()).digest('hex'));
  expect((await buildSdl(s, { ...base, env: { JOB_ID: 'y' } })).manifestVersion).not.toBe(a.manifestVersion);
});

test('price cap: USD per hour ↔ per-block amounts', () => {
  // $2/h at $3 per AKT and 6.117 s blocks.
  expect(perBlockAmount(2, 3e-6, 6.117)).toBeCloseTo(1132.7778, 3);
  expect(usdPerHour(1132.777777, 3e-6, 6.117)).toBeCloseTo(2, 5);
  expect(perBlockAmount(1, 1e-6, 6)).toBeCloseTo(1666.666666, 5);
});

test('requiring the backends (and cf-sdl) never loads keytar or the akashjs index', () => {
  // A plain Node process (jest keeps its own module registry): TypeScript through SWC, then Node's require.cache.
  const probe = `
    const fs = require('fs'); const swc = require('@swc/core');
    require.extensions['.ts'] = (m, f) => m._compile(swc.transformSync(fs.readFileSync(f, 'utf8'), { filename: f, jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }).code, f);
    for (const f of process.argv.slice(1)) require(require('path').resolve(f));
    const loaded = Object.keys(require.cache);
    console.log(JSON.stringify({ total: loaded.length, akash: loaded.filter((k) => k.includes('@akashnetwork/akashjs')).length, bad: loaded.filter((k) => /keytar|akashjs\\/build\\/(index|wallet)/.test(k)) }));`;
  const run = spawnSync(process.execPath, ['-e', probe, 'activities/backends/registry.ts', 'activities/backends/akash/akash.ts', 'client/cli/cf-sdl.ts'], { cwd: ROOT, encoding: 'utf8' });
  expect(run.stderr).toBe('');
  const result = JSON.parse(run.stdout) as { total: number; akash: number; bad: string[] };
  expect(result.akash).toBeGreaterThan(5); // akashjs' SDL, stargate and certificate modules did load
  expect(result.bad).toEqual([]);
  // The control: the package index does load keytar.
  const control = spawnSync(process.execPath, ['-e', probe, 'node_modules/@akashnetwork/akashjs/build/index.js'], { cwd: ROOT, encoding: 'utf8' });
  expect((JSON.parse(control.stdout) as { bad: string[] }).bad).toEqual(expect.arrayContaining([expect.stringMatching(/keytar/)]));
});

describe('cf-sdl (dist/client/cli/cf-sdl.js)', () => {
  const CLI = path.join(ROOT, 'dist', 'client', 'cli', 'cf-sdl.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cf-sdl-'));
  const specFile = path.join(dir, 'spec.json');
  const raw = makeSignedSpec(seedSpec);
  writeFileSync(specFile, JSON.stringify(raw, null, 2));
  const keyFile = path.join(dir, 'key');
  writeFileSync(keyFile, 'console-key-for-exact', { mode: 0o600 });
  const configFile = path.join(dir, 'forge.json');
  writeFileSync(
    configFile,
    JSON.stringify({ backends: { local: { kind: 'local' }, akash: { kind: 'akash', mode: 'console', hourly_usd: 4, akt_usd: 3, console: { api_key_file: keyFile }, trainers: { 'chrysalis/trainer:latest': { image: 'ghcr.io/acme/trainer:1' } } } } }),
  );
  // FORGE_HOME of its own, with no orchestrator key unless a test names one.
  const home = path.join(dir, 'home');
  const cf = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', FORGE_HOME: home } });
  const withKey = (keys: string, ...args: string[]) =>
    spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', FORGE_HOME: home, FORGE_ORCHESTRATOR_KEY_FILE: keys } });

  beforeAll(() => {
    const source = path.join(ROOT, 'client', 'cli', 'cf-sdl.ts');
    if (!existsSync(CLI) || statSync(CLI).mtimeMs < statSync(source).mtimeMs) throw new Error(`${CLI} is missing or older than its source: run npm run bootstrap`);
  });

  test('prints the SDL the backend would deploy and its manifest version; deploys nothing', async () => {
    const r = cf(specFile, '--config', configFile);
    expect(r.status).toBe(0);
    const [yaml, versionLine] = r.stdout.split(/(?=# manifest version: )/);
    const sdl = parseSdl(yaml!);
    expect(sdl.data.services.trainer?.image).toBe('ghcr.io/acme/trainer:1');
    expect(r.stderr).toMatch(/FORGE_AGENT_TOKEN is a placeholder/);
    expect(r.stderr).toMatch(/no orchestrator key here: the group name lacks the installation tag/);
    // The cap is min(hourly_usd $4, max_cost_usd $50 / max_hours 8 = $6.25) = $4/h.
    const config = akashConfig({ hourly_usd: 4, trainers: { 'chrysalis/trainer:latest': { image: 'ghcr.io/acme/trainer:1' } } });
    const s = trainingJobSpecSchema.parse(raw);
    const same = await buildSdl(s, akashSdlOptions(config, { signed: { spec: s, raw }, attempt: 1, token: 'dry-run-agent-token', capUsd: 4 }));
    expect(yaml).toBe(same.yaml);
    expect(versionLine?.trim()).toBe(`# manifest version: ${same.manifestVersion}`);
  });

  test('--exact uses the attempt’s real agent token and the installation tag of the orchestrator key; --json; errors exit 2', async () => {
    const keyless = cf(specFile, '--config', configFile, '--exact');
    expect(keyless.status).toBe(2);
    expect(keyless.stderr).toMatch(/--exact: no orchestrator key at .*cf-keygen --orchestrator/);
    const orchestratorKeyFile = path.join(dir, 'orchestrator.json');
    const { did } = loadOrCreateKeyFile(orchestratorKeyFile);
    const r = withKey(orchestratorKeyFile, specFile, '--config', configFile, '--exact', '--json');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { backend: string; cap_usd_hour: number; exact: boolean; manifest_version: string; sdl: string };
    expect(out).toMatchObject({ backend: 'akash', cap_usd_hour: 4, exact: true });
    expect(parseSdl(out.sdl).data.services.trainer?.env).not.toContain('FORGE_AGENT_TOKEN=dry-run-agent-token');
    expect(out.sdl).toContain(`-forge-${installationTag(did)}-${raw.job_id}-a1`);

    expect(cf(specFile, '--config', configFile, '--backend', 'nope').status).toBe(2);
    const incomplete = path.join(dir, 'bad.json');
    writeFileSync(incomplete, JSON.stringify({ ...raw, signature_ed25519: undefined }));
    const bad = cf(incomplete);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/signature_ed25519/);
    const gaudi = path.join(dir, 'gaudi.json');
    writeFileSync(gaudi, JSON.stringify(makeSignedSpec({ ...seedSpec, resources: { ...seedSpec.resources, gpu_type: 'intel/gaudi2' } })));
    const vendor = cf(gaudi, '--config', configFile);
    expect(vendor.status).toBe(2);
    expect(vendor.stderr).toMatch(/GPU vendor "intel" is not one Akash knows/);
  });

  test('without an akash backend in the config: USDC pricing at the budget’s cap', () => {
    const r = cf(specFile);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/no akash backend in the operator config/);
    expect(r.stdout).toContain(`denom: ${USDC_IBC_DENOMS.mainnet}`);
  });
});
