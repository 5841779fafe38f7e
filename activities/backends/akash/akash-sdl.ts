/**
 * The Akash SDL (v2.0) of a training job, from the spec's resources and the operator's options. Pure: no I/O, no
 * credentials. Validated offline with akashjs' own parser, `SDL.fromString(yaml, 'beta3')`, through deep imports of
 * its build (the package index pulls in keytar, which must never load in the orchestrator).
 *
 * Units: resources.ram_gb, storage_gb and gpu_mem_gb are GiB (the seed's `ram_gb: 64` is `64Gi`); each size is
 * written in the largest binary unit (Ki … Ei) that holds it exactly. resources.gpu_type is "<model>" or
 * "<vendor>/<model>" (e.g. "a100", "nvidia/h100", "amd/mi300x"; "*" or "any" for any model of the vendor).
 */
import { SDL } from '@akashnetwork/akashjs/build/sdl/SDL/SDL';
import { MAINNET_ID, SANDBOX_ID, USDC_IBC_DENOMS } from '@akashnetwork/akashjs/build/config/network';
import type { AkashBackendConfig } from '../../../common/config';
import type { TrainingJobSpec } from '../../../jobspec/schema';
import type { ShippedSpec } from '../../../jobspec/signed-spec';
import { agentCommand, agentEnv } from '../remote/remote-agent-script';
import type { EvalRunInputs } from '../types';

export class SdlError extends Error {
  override name = 'SdlError';
}

export type AkashNetwork = 'mainnet' | 'sandbox';

/** Vendors the Akash SDL knows (akashjs GPU_SUPPORTED_VENDORS). */
export const GPU_VENDORS = ['nvidia', 'amd'] as const;
type GpuVendor = (typeof GPU_VENDORS)[number];

/** Model names that are AMD's; any other bare model is taken to be NVIDIA's. */
const AMD_MODEL = /^(mi\d+[a-z]*|rx\d+[a-z]*|\d{4}xtx?|w\d{4}|radeon.*)$/;

export interface SdlOptions {
  /** Container image and (optional) command + args. */
  image: string;
  command?: readonly string[];
  args?: readonly string[];
  /** Environment, in this order. */
  env: Readonly<Record<string, string>>;
  service: string;
  placement: string;
  /** Provider attributes the placement requires (region, …). */
  attributes?: Readonly<Record<string, string>>;
  /** The price cap per block, in `denom`. */
  pricing: { denom: string; amount: number };
  /** Container port exposed globally as port 80 (the agent's HTTP). */
  exposePort: number;
  network?: AkashNetwork;
}

/** "usdc" names the network's USDC IBC denom; anything else is taken as written (and checked by the SDL parser). */
export function resolveDenom(denom: string, network: AkashNetwork = 'mainnet'): string {
  if (denom.toLowerCase() === 'usdc') return USDC_IBC_DENOMS[network === 'sandbox' ? SANDBOX_ID : MAINNET_ID];
  return denom;
}

const BINARY_UNITS = ['Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'] as const;

/** GiB → the SDL size string in the largest binary unit that holds it exactly (rounded up to whole KiB). */
export function memorySize(gib: number, what = 'size'): string {
  if (!Number.isFinite(gib) || gib <= 0) throw new SdlError(`${what} must be a positive number of GiB, got ${gib}`);
  const kib = Math.ceil(gib * 1024 * 1024 - 1e-9);
  let value = kib;
  let unit = 0;
  while (unit < BINARY_UNITS.length - 1 && value % 1024 === 0) {
    value /= 1024;
    unit++;
  }
  return `${value}${BINARY_UNITS[unit]}`;
}

export interface GpuModel {
  vendor: GpuVendor;
  /** Absent: any model of the vendor. */
  model?: string;
}

/** Reads resources.gpu_type; an unknown vendor is a clear SdlError naming the ones Akash knows. */
export function parseGpuType(gpuType: string): GpuModel {
  const raw = gpuType.trim().toLowerCase();
  const slash = raw.indexOf('/');
  const vendorPart = slash >= 0 ? raw.slice(0, slash) : undefined;
  const modelPart = (slash >= 0 ? raw.slice(slash + 1) : raw).replace(/[\s_-]+/g, '');
  if (vendorPart !== undefined && !(GPU_VENDORS as readonly string[]).includes(vendorPart)) {
    throw new SdlError(
      `resources.gpu_type "${gpuType}": GPU vendor "${vendorPart}" is not one Akash knows (${GPU_VENDORS.join(', ')}); ` +
        'write it as "<vendor>/<model>" with one of those, or a bare model name',
    );
  }
  if (!/^[a-z0-9*.]+$/.test(modelPart || '*')) throw new SdlError(`resources.gpu_type "${gpuType}": not a GPU model name`);
  const vendor = (vendorPart ?? (AMD_MODEL.test(modelPart) ? 'amd' : 'nvidia')) as GpuVendor;
  const any = modelPart === '' || modelPart === '*' || modelPart === 'any';
  return any ? { vendor } : { vendor, model: modelPart };
}

type YamlValue = string | number | boolean | YamlValue[] | { [key: string]: YamlValue };

/** The SDL document as data (keys in the order the seed writes them). */
export function sdlDocument(spec: TrainingJobSpec, o: SdlOptions): { [key: string]: YamlValue } {
  const r = spec.resources;
  const denom = resolveDenom(o.pricing.denom, o.network);
  if (!(o.pricing.amount > 0) || !Number.isFinite(o.pricing.amount)) throw new SdlError(`price cap must be a positive amount of ${denom} per block, got ${o.pricing.amount}`);
  const service: { [key: string]: YamlValue } = { image: o.image };
  if (o.command?.length) service.command = [...o.command];
  if (o.args?.length) service.args = [...o.args];
  const env = Object.entries(o.env).map(([k, v]) => `${k}=${v}`);
  if (env.length) service.env = env;
  service.expose = [{ port: o.exposePort, as: 80, to: [{ global: true }] }];

  const resources: { [key: string]: YamlValue } = {
    cpu: { units: r.cpus },
    memory: { size: memorySize(r.ram_gb, 'resources.ram_gb') },
  };
  if (r.gpus > 0) {
    if (!r.gpu_type) throw new SdlError('resources.gpu_type is required when gpus > 0');
    const gpu = parseGpuType(r.gpu_type);
    const model: { [key: string]: YamlValue } = { model: gpu.model ?? '*' };
    if (r.gpu_mem_gb !== undefined && r.gpu_mem_gb > 0) model.ram = memorySize(r.gpu_mem_gb, 'resources.gpu_mem_gb');
    resources.gpu = { units: r.gpus, attributes: { vendor: { [gpu.vendor]: [model] } } };
  }
  resources.storage = { size: memorySize(r.storage_gb, 'resources.storage_gb') };

  const placement: { [key: string]: YamlValue } = {};
  if (o.attributes && Object.keys(o.attributes).length) placement.attributes = { ...o.attributes };
  placement.pricing = { [o.service]: { denom, amount: o.pricing.amount } };

  return {
    version: '2.0',
    services: { [o.service]: service },
    profiles: {
      compute: { [o.service]: { resources } },
      placement: { [o.placement]: placement },
    },
    deployment: { [o.service]: { [o.placement]: { profile: o.service, count: 1 } } },
  };
}

// ---- a small YAML writer (block style; anything not trivially plain is a JSON string, which is valid YAML) -----------

const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./@+=$-]*(:[A-Za-z0-9_./@+=$-]+)*$/;
const YAML_WORDS = /^(true|false|yes|no|on|off|null|y|n|~)$/i;

/** Sizes like 64Gi or 512Mi read as strings in YAML, so they need no quotes (the seed writes them bare). */
const SIZE = /^\d+(\.\d+)?[KMGTPE]i?$/;

function scalar(v: string | number | boolean): string {
  if (typeof v !== 'string') return String(v);
  return (PLAIN.test(v) && !YAML_WORDS.test(v)) || SIZE.test(v) ? v : JSON.stringify(v);
}

function isMap(v: YamlValue): v is { [key: string]: YamlValue } {
  return typeof v === 'object' && !Array.isArray(v);
}

function emit(v: YamlValue, indent: string): string[] {
  if (Array.isArray(v)) {
    if (v.length === 0) return [`${indent}[]`];
    return v.flatMap((item) => {
      if (isMap(item) || Array.isArray(item)) {
        const [first = '', ...rest] = emit(item, `${indent}  `);
        return [`${indent}- ${first.trimStart()}`, ...rest];
      }
      return [`${indent}- ${scalar(item)}`];
    });
  }
  if (isMap(v)) {
    return Object.entries(v).flatMap(([k, item]) => {
      const key = scalar(k);
      if (Array.isArray(item) && item.length === 0) return [`${indent}${key}: []`];
      if (isMap(item) || Array.isArray(item)) return [`${indent}${key}:`, ...emit(item, `${indent}  `)];
      return [`${indent}${key}: ${scalar(item)}`];
    });
  }
  return [`${indent}${scalar(v)}`];
}

export function toYaml(doc: { [key: string]: YamlValue }): string {
  return `${emit(doc, '').join('\n')}\n`;
}

// ---- validation and hashing -----------------------------------------------------------------------------------------

/** Parses and validates with akashjs (beta3 rules); its complaints become SdlErrors. */
export function parseSdl(yaml: string, network: AkashNetwork = 'mainnet'): SDL {
  try {
    return SDL.fromString(yaml, 'beta3', network === 'sandbox' ? SANDBOX_ID : MAINNET_ID);
  } catch (err) {
    throw new SdlError(`invalid SDL: ${(err as Error).message}`);
  }
}

export interface BuiltSdl {
  yaml: string;
  sdl: SDL;
  /** sha256 of the sorted manifest (what MsgCreateDeployment carries as `version`), hex. */
  manifestVersion: string;
}

/** The SDL of a job: generated, written as YAML, parsed back and validated, with its manifest version. */
export async function buildSdl(spec: TrainingJobSpec, o: SdlOptions): Promise<BuiltSdl> {
  const yaml = toYaml(sdlDocument(spec, o));
  const sdl = parseSdl(yaml, o.network);
  return { yaml, sdl, manifestVersion: Buffer.from(await sdl.manifestVersion()).toString('hex') };
}

/** USD per hour → price per block in units of the denom (uakt: akt_usd per 10^6; USDC: 10^-6 USD per unit). */
export function perBlockAmount(usdPerHour: number, usdPerUnit: number, blockSeconds: number): number {
  const amount = (usdPerHour * blockSeconds) / 3600 / usdPerUnit;
  return Math.floor(amount * 1e6) / 1e6;
}

export function usdPerHour(perBlock: number, usdPerUnit: number, blockSeconds: number): number {
  return (perBlock * usdPerUnit * 3600) / blockSeconds;
}

// ---- from the operator config -----------------------------------------------------------------------------------------

/** USD per unit of the pricing denom: uakt at akt_usd per AKT; USDC at 10^-6. */
export function usdPerUnit(config: Pick<AkashBackendConfig, 'denom' | 'akt_usd' | 'network'>): number {
  const denom = resolveDenom(config.denom, config.network);
  if (denom === 'uakt') {
    if (config.akt_usd === undefined) throw new SdlError('pricing in uakt needs akt_usd (USD per AKT) in the operator config');
    return config.akt_usd / 1e6;
  }
  if (denom === resolveDenom('usdc', config.network)) return 1e-6;
  throw new SdlError(`denom "${config.denom}" is not one Akash takes for pricing (uakt, or usdc: ${resolveDenom('usdc', config.network)})`);
}

/** The container that runs the spec's trainer image: the operator's mapping; with none configured, the image itself. */
export function akashTrainer(config: Pick<AkashBackendConfig, 'trainers'>, image: string): { image: string; command: string[]; env: Record<string, string> } | undefined {
  const mapped = config.trainers[image];
  if (mapped) return { image: mapped.image ?? image, command: mapped.command, env: mapped.env };
  if (Object.keys(config.trainers).length === 0) return { image, command: ['forge-trainer', 'run'], env: {} };
  return undefined;
}

/**
 * The forge mark of an attempt's deployment, carried on chain as its group's (placement's) name: the reaper recognises
 * a deployment of the account as a forge attempt from the chain or Console listing alone, on any replica (one whose
 * FORGE_HOME vanished included), and as its own installation's by the tag (installation.ts). Fits the placement names
 * the config allows (`^[a-z][a-z0-9-]*$`).
 */
export function forgeGroupName(placement: string, jobId: string, attempt: number, tag?: string): string {
  return `${placement}-forge-${tag === undefined ? '' : `${tag}-`}${jobId}-a${attempt}`;
}

const GROUP_MARK = /-forge-(?:([0-9a-f]{8})-)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-a([1-9][0-9]{0,8})$/;

/** The job, attempt and installation tag (absent in marks made before tags) a deployment group's name marks. */
export function parseForgeGroupName(name: string): { jobId: string; attempt: number; tag?: string } | undefined {
  const m = GROUP_MARK.exec(name);
  return m ? { jobId: m[2]!, attempt: Number(m[3]), ...(m[1] !== undefined && { tag: m[1] }) } : undefined;
}

export interface JobSdlInput {
  signed: ShippedSpec;
  attempt: number;
  /** The agent's path token (agentToken(); a placeholder for a dry run). */
  token: string;
  /** The price cap of this attempt, USD per hour. */
  capUsd: number;
  /**
   * Name the group with the forge mark (forgeGroupName; default). False only to rebuild the manifest of a deployment
   * made before the mark existed, whose committed version has the plain placement name.
   */
  groupMark?: boolean;
  /** The installation tag the mark carries (installation.ts); absent in marks made before tags. */
  groupTag?: string;
  /** An eval attempt's inputs (trainer-contract.ts evalContractEnv); absent: the attempt trains. */
  evalRun?: EvalRunInputs;
}

/** Everything the SDL of one attempt is made of, from the spec and the operator's akash backend config. */
export function akashSdlOptions(config: AkashBackendConfig, input: JobSdlInput): SdlOptions {
  const image = input.signed.spec.trainer.image;
  const trainer = akashTrainer(config, image);
  if (!trainer) {
    throw new SdlError(`no container configured for trainer image "${image}": add it to this akash backend's trainers in FORGE_CONFIG (configured: ${Object.keys(config.trainers).join(', ')})`);
  }
  const { command, args } = agentCommand(trainer.command);
  return {
    image: trainer.image,
    command,
    args,
    env: agentEnv({
      signed: input.signed,
      attempt: input.attempt,
      token: input.token,
      port: config.agent_port,
      operatorEnv: trainer.env,
      ...(input.evalRun && { evalRun: input.evalRun }),
    }),
    service: config.service,
    placement:
      input.groupMark === false ? config.placement : forgeGroupName(config.placement, input.signed.spec.job_id, input.attempt, input.groupTag),
    attributes: config.attributes,
    pricing: { denom: config.denom, amount: perBlockAmount(input.capUsd, usdPerUnit(config), config.block_seconds) },
    exposePort: config.agent_port,
    network: config.network,
  };
}
