/**
 * Prime Intellect's REST API as the `prime-intellect` backend reads it (docs.primeintellect.ai/api-reference): GPU
 * names, the answers' shapes (checked with zod), and the pure helpers over them: pod names, prices, the agent's
 * address. Split from prime-intellect.ts.
 */
import { z } from 'zod';
import { agentBaseUrl } from '../remote/remote-agent';

/** The spec's gpu_type (lower case, vendor prefix dropped) → Prime Intellect's gpuType; the config may add more. */
export const PI_GPU_TYPES: Readonly<Record<string, string>> = {
  a100: 'A100_80GB',
  'a100-40gb': 'A100_40GB',
  h100: 'H100_80GB',
  h200: 'H200_141GB',
  b200: 'B200_180GB',
  l40s: 'L40S_48GB',
  l40: 'L40_48GB',
  a6000: 'RTX_A6000_48GB',
  rtx4090: 'RTX4090_24GB',
  rtx3090: 'RTX3090_24GB',
  a10: 'A10_24GB',
  l4: 'L4_24GB',
  t4: 'T4_16GB',
  v100: 'V100_32GB',
};

const num = z.union([z.number(), z.string()]).transform((v) => Number(v));
const offerSchema = z.looseObject({
  cloudId: z.string(),
  gpuType: z.string(),
  socket: z.string().nullish(),
  provider: z.string().nullish(),
  dataCenter: z.string().nullish(),
  country: z.string().nullish(),
  gpuCount: num,
  stockStatus: z.string().nullish(),
  security: z.string().nullish(),
  prices: z.looseObject({ onDemand: num.nullish(), communityPrice: num.nullish(), currency: z.string().nullish() }),
  vcpu: z.looseObject({ maxCount: num.nullish() }).nullish(),
  memory: z.looseObject({ maxCount: num.nullish() }).nullish(),
  disk: z.looseObject({ maxCount: num.nullish() }).nullish(),
});
export type Offer = z.output<typeof offerSchema>;

/** `{items, totalCount}` (current) or `{<gpuType>: [offers]}` (older answers). */
export const availabilitySchema = z.preprocess(
  (v) => (v && typeof v === 'object' && !Array.isArray(v) && !('items' in v) ? { items: Object.values(v).flat(), totalCount: -1 } : v),
  z.object({ items: z.array(offerSchema), totalCount: num.optional() }),
);

const portSchema = z.looseObject({
  internal: z.union([z.string(), z.number()]).transform(String),
  external: z.union([z.string(), z.number()]).transform(String),
  protocol: z.string().nullish(),
});
export const podSchema = z.looseObject({
  id: z.string(),
  name: z.string().nullish(),
  status: z.string(),
  priceHr: num.nullish(),
  createdAt: z.string().nullish(),
  installationFailure: z.string().nullish(),
  ip: z.union([z.string(), z.array(z.string().nullable())]).nullish(),
  primePortMapping: z.array(portSchema).nullish(),
});
export type Pod = z.output<typeof podSchema>;
export const podListSchema = z.object({ data: z.array(podSchema), total_count: num.optional() });
export const logSchema = z.union([
  z.string(),
  z.array(z.string()),
  z.object({ logs: z.union([z.string(), z.array(z.string())]) }),
  z.object({ data: z.union([z.string(), z.array(z.string())]) }),
]);

/** An attempt's pod name: forge-<tag>-<job_id>-<attempt>, or forge-<job_id>-<attempt> with no installation tag. */
export function podName(jobId: string, attempt: number, tag?: string): string {
  return tag === undefined ? `forge-${jobId}-${attempt}` : `forge-${tag}-${jobId}-${attempt}`;
}

/** The pod list is read in pages of this many, at most this many pages. */
export const LIST_PAGE = 100;
export const LIST_MAX_PAGES = 50;

const TAGGED_POD = /^forge-([0-9a-f]{8})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-([1-9]\d{0,5})$/;
const UNTAGGED_POD = /^forge-([A-Za-z0-9][A-Za-z0-9._-]*)-([1-9]\d{0,5})$/;

/** The job, attempt and installation tag (absent in names from before tags) a forge pod's name carries, if any. */
export function parsePodName(name: string): { jobId: string; attempt: number; tag?: string } | undefined {
  const t = TAGGED_POD.exec(name);
  if (t) return { tag: t[1]!, jobId: t[2]!, attempt: Number(t[3]) };
  const m = UNTAGGED_POD.exec(name);
  return m ? { jobId: m[1]!, attempt: Number(m[2]) } : undefined;
}

export function ended(status: string): boolean {
  return ['TERMINATED', 'STOPPED', 'DELETED'].includes(status.toUpperCase());
}

export function priceOf(o: Offer): number {
  return o.prices.communityPrice ?? o.prices.onDemand ?? Infinity;
}

export function agentUrl(pod: Pod, port: number, tls: boolean): string | undefined {
  const ip = Array.isArray(pod.ip) ? pod.ip.find((x): x is string => typeof x === 'string') : pod.ip;
  if (!ip) return undefined;
  const mapped = pod.primePortMapping?.find((p) => p.internal === String(port));
  return agentBaseUrl(`${ip}:${mapped?.external ?? port}`, tls);
}

export function toLines(v: z.output<typeof logSchema>): string[] {
  const raw = typeof v === 'string' || Array.isArray(v) ? v : 'logs' in v ? v.logs : v.data;
  const lines = Array.isArray(raw) ? raw : raw.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}
