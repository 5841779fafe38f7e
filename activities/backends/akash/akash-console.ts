/**
 * Akash "console" mode: the Akash Console's managed-wallet API (console-api.akash.network, header x-api-key), which
 * signs and pays for the operator. Deployments, bids, leases (with the manifest), status and close go through it;
 * container logs come from the provider over mTLS with a certificate the Console issues (POST /v1/certificates).
 * Shapes: akash.network/docs/api-documentation/console-api (answers are checked with zod; ids under `id` or
 * `bid_id`, wrappers under `data` or not, as the API has served both).
 *
 * Creating is idempotent per attempt although the Console picks the dseq: a deployment commits its manifest version
 * on chain (`hash`), and that version is unique to the job and attempt (the manifest's env names both and carries
 * the attempt's agent token). Before creating, the account's active deployments are listed and one with this
 * version is adopted: a worker that died between the POST and its record left it behind. After creating, the
 * list is read again and, of several (two workers submitting the same attempt at once), the oldest is kept and the
 * others closed.
 */
import { z } from 'zod';
import type { BuiltSdl, GpuModel } from './akash-sdl';
import type { BidId, ClientCertificate, Coin } from './akash-chain';
import { readCertFile, writeCertFile } from './akash-chain';
import { leaseStatusSchema, ProviderClient, type LeaseStatus } from './akash-provider';
import type { ActiveDeployment, AkashMarket, GpuPrice, MarketBid, MarketDeployment, MarketLease } from './akash-market';
import { ApiClient, isStatus } from '../remote/remote-http';
import type { HealthReport } from '../types';

const uint = z.union([z.string(), z.number()]).transform((v) => String(v));
const small = z.union([z.string(), z.number()]).transform((v) => Number(v));
const coinSchema = z.object({ denom: z.string(), amount: z.union([z.string(), z.number()]).transform((v) => Number(v)) });
const idSchema = z.object({ owner: z.string(), dseq: uint, gseq: small, oseq: small, provider: z.string() });

/** `{data: X}` or X. */
function wrapped<S extends z.ZodType>(inner: S) {
  return z.preprocess((v) => (v !== null && typeof v === 'object' && !Array.isArray(v) && 'data' in v ? (v as { data: unknown }).data : v), inner);
}

const createDeploymentSchema = wrapped(z.object({ dseq: uint, manifest: z.string() }));
const bidSchema = z.object({
  bid: z
    .object({ id: idSchema.optional(), bid_id: idSchema.optional(), state: z.string(), price: coinSchema })
    .refine((b) => b.id ?? b.bid_id, 'a bid needs id or bid_id')
    .transform((b) => ({ id: (b.id ?? b.bid_id) as BidId, state: b.state, price: b.price })),
});
const bidsSchema = wrapped(z.array(bidSchema));
const deploymentSchema = wrapped(
  z.object({
    deployment: z.object({
      id: z.object({ owner: z.string(), dseq: uint }).optional(),
      deployment_id: z.object({ owner: z.string(), dseq: uint }).optional(),
      state: z.string(),
    }),
    leases: z.array(
      z.object({
        id: idSchema.optional(),
        lease_id: idSchema.optional(),
        state: z.string(),
        price: coinSchema,
        created_at: uint.optional(),
        status: leaseStatusSchema.nullable().optional(),
      }),
    ),
  }),
);
const listSchema = wrapped(
  z.object({
    deployments: z.array(
      z.object({
        deployment: z.object({
          id: z.object({ owner: z.string(), dseq: uint }).optional(),
          deployment_id: z.object({ owner: z.string(), dseq: uint }).optional(),
          state: z.string(),
          // The manifest version: `hash` (base64) in the Console's answer, `version` in the chain's older one.
          hash: z.string().optional(),
          version: z.string().optional(),
        }),
        // The chain's groups, whose names carry the forge mark (akash-sdl.ts forgeGroupName).
        groups: z.array(z.object({ group_spec: z.object({ name: z.string() }) })).default([]),
      }),
    ),
    pagination: z.object({ hasMore: z.boolean().optional() }).optional(),
  }),
);
const certificateSchema = wrapped(z.object({ certPem: z.string().min(1), pubkeyPem: z.string().min(1), encryptedKey: z.string().min(1) }));
const providerSchema = wrapped(z.looseObject({ hostUri: z.string().optional(), host_uri: z.string().optional() }));
const gpuPricesSchema = z.object({
  models: z.array(
    z.object({
      vendor: z.string(),
      model: z.string(),
      ram: z.string().optional(),
      availability: z.object({ total: z.number(), available: z.number() }),
      price: z.object({ med: z.number().optional(), avg: z.number().optional(), weightedAverage: z.number().optional() }).nullable().optional(),
    }),
  ),
});

/** The list is read in pages of this many, at most this many pages (an account with more open deployments is not ours to search). */
const LIST_PAGE = 100;
const LIST_MAX_PAGES = 50;

interface OwnedDeployment {
  dseq: string;
  owner: string;
}

/** A manifest version as hex, whether the API served it as hex or base64. */
function versionHex(v: string): string {
  return /^[0-9a-f]{64}$/i.test(v) ? v.toLowerCase() : Buffer.from(v, 'base64').toString('hex');
}

function byDseq(a: OwnedDeployment, b: OwnedDeployment): number {
  const x = BigInt(a.dseq);
  const y = BigInt(b.dseq);
  return x < y ? -1 : x > y ? 1 : 0;
}

export interface ConsoleOptions {
  url: string;
  apiKey: () => Promise<string>;
  depositUsd: number;
  timeoutMs: number;
  /** Where the Console-issued client certificate is kept (mode 0600). */
  certificateFile: string;
}

export class ConsoleMarket implements AkashMarket {
  readonly mode = 'console';
  private readonly api: ApiClient;
  private key = '';

  constructor(private readonly o: ConsoleOptions) {
    this.api = new ApiClient({
      service: 'Akash Console',
      baseUrl: o.url,
      timeoutMs: o.timeoutMs,
      headers: async () => {
        this.key = await o.apiKey();
        return { 'x-api-key': this.key };
      },
      secrets: () => [this.key],
    });
  }

  async health(): Promise<HealthReport> {
    await this.api.send('GET', 'v1/deployments', { query: { skip: 0, limit: 1 } });
    return { ok: true, detail: `console mode: ${new URL(this.o.url).host} accepts the API key` };
  }

  async proposeDseq(): Promise<undefined> {
    return undefined;
  }

  async createDeployment(built: BuiltSdl): Promise<{ dseq: string; owner: string; manifest: string }> {
    let mine = await this.activeWithVersion(built.manifestVersion);
    // Same version, same manifest: an adopted deployment's is the one this SDL makes.
    let manifest = built.sdl.manifestSortedJSON();
    if (mine.length === 0) {
      const res = await this.api.json('POST', 'v1/deployments', createDeploymentSchema, { json: { data: { sdl: built.yaml, deposit: this.o.depositUsd } } });
      manifest = res.manifest;
      mine = await this.activeWithVersion(built.manifestVersion);
      // A list that lags behind the chain must not lose the one just made.
      if (!mine.some((d) => d.dseq === res.dseq)) mine = [...mine, { dseq: res.dseq, owner: await this.ownerOf(res.dseq) }].sort(byDseq);
    }
    const [keep, ...duplicates] = mine;
    if (!keep) throw new Error('Akash Console: no deployment after creating one');
    // An error here fails the submit, and its retry adopts `keep` and closes what is still open.
    for (const d of duplicates) await this.close(d.owner, d.dseq);
    return { ...keep, manifest };
  }

  /** This account's active deployments whose on-chain manifest version is `version` (hex), oldest first. */
  private async activeWithVersion(version: string): Promise<OwnedDeployment[]> {
    return (await this.listActive()).filter((d) => d.version === version).map(({ dseq, owner }) => ({ dseq, owner }));
  }

  /** This account's active deployments with their on-chain manifest version (hex), oldest first. */
  async listActive(): Promise<ActiveDeployment[]> {
    const found: ActiveDeployment[] = [];
    let skip = 0;
    for (let page = 0; page < LIST_MAX_PAGES; page++) {
      const res = await this.api.json('GET', 'v1/deployments', listSchema, { query: { skip, limit: LIST_PAGE } });
      for (const { deployment: d, groups } of res.deployments) {
        const id = d.id ?? d.deployment_id;
        const v = d.hash ?? d.version;
        if (id && d.state === 'active' && v) found.push({ dseq: id.dseq, owner: id.owner, version: versionHex(v), groups: groups.map((g) => g.group_spec.name) });
      }
      if (!res.pagination?.hasMore || res.deployments.length === 0) break;
      skip += res.deployments.length;
    }
    return found.sort(byDseq);
  }

  private async ownerOf(dseq: string): Promise<string> {
    const dep = await this.deploymentRaw(dseq);
    return dep === 'missing' ? '' : ((dep.deployment.id ?? dep.deployment.deployment_id)?.owner ?? '');
  }

  async openBids(_owner: string, dseq: string): Promise<MarketBid[]> {
    const bids = await this.api.json('GET', 'v1/bids', bidsSchema, { query: { dseq } });
    return bids.map((b) => b.bid).filter((b) => b.state === 'open');
  }

  private async deploymentRaw(dseq: string): Promise<z.output<typeof deploymentSchema> | 'missing'> {
    try {
      return await this.api.json('GET', `v1/deployments/${dseq}`, deploymentSchema);
    } catch (err) {
      if (isStatus(err, 404)) return 'missing';
      throw err;
    }
  }

  async deployment(_owner: string, dseq: string): Promise<MarketDeployment> {
    const d = await this.deploymentRaw(dseq);
    if (d === 'missing') return { state: 'missing', leases: [] };
    return {
      state: d.deployment.state,
      leases: d.leases.flatMap((l) => {
        const id = l.id ?? l.lease_id;
        if (!id) return [];
        return [
          {
            id,
            state: l.state,
            price: l.price,
            ...(l.created_at !== undefined && { createdHeight: Number(l.created_at) }),
            status: l.status ?? null,
          },
        ];
      }),
    };
  }

  async createLease(bid: MarketBid, manifest: string): Promise<void> {
    const cert = await this.certificate();
    await this.api.send('POST', 'v1/leases', {
      json: {
        manifest,
        certificate: { certPem: cert.cert, keyPem: cert.privateKey },
        leases: [{ dseq: bid.id.dseq, gseq: bid.id.gseq, oseq: bid.id.oseq, provider: bid.id.provider }],
      },
    });
  }

  async resendManifest(lease: MarketLease, manifest: string): Promise<void> {
    await this.createLease({ id: lease.id, price: lease.price }, manifest);
  }

  async leaseStatus(lease: MarketLease): Promise<LeaseStatus | 'not-found'> {
    if (lease.status) return lease.status;
    const d = await this.deployment(lease.id.owner, lease.id.dseq);
    const found = d.leases.find((l) => l.id.provider === lease.id.provider && l.id.gseq === lease.id.gseq && l.id.oseq === lease.id.oseq);
    return found?.status ?? 'not-found';
  }

  async logs(lease: MarketLease, service: string, skip: number, max: number): Promise<string[]> {
    const p = await this.api.json('GET', `v1/providers/${lease.id.provider}`, providerSchema);
    const hostUri = p.hostUri ?? p.host_uri;
    if (!hostUri) return [];
    const cert = await this.certificate();
    return new ProviderClient(hostUri, { cert: cert.cert, key: cert.privateKey, rejectUnauthorized: false }, this.o.timeoutMs).logs(
      lease.id,
      service,
      skip,
      max,
    );
  }

  async close(_owner: string, dseq: string): Promise<void> {
    try {
      await this.api.send('DELETE', `v1/deployments/${dseq}`);
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
  }

  async height(): Promise<undefined> {
    return undefined;
  }

  async gpuPrice(gpu: GpuModel): Promise<GpuPrice | undefined> {
    const prices = await this.api.json('GET', 'v1/gpu-prices', gpuPricesSchema);
    const models = prices.models.filter((m) => m.vendor.toLowerCase() === gpu.vendor && (gpu.model === undefined || m.model.toLowerCase().replace(/[\s_-]+/g, '') === gpu.model));
    if (!models.length) return { available: 0 };
    const available = models.reduce((n, m) => n + m.availability.available, 0);
    const priced = models.map((m) => m.price?.med ?? m.price?.weightedAverage ?? m.price?.avg).filter((p): p is number => p !== undefined && p > 0);
    return { available, ...(priced.length && { hourlyUsd: Math.min(...priced) }) };
  }

  /** The Console-issued client certificate (kept, mode 0600; a new one when none is kept). */
  private async certificate(): Promise<ClientCertificate> {
    const kept = await readCertFile(this.o.certificateFile);
    if (kept) return kept;
    const c = await this.api.json('POST', 'v1/certificates', certificateSchema);
    const cert = { cert: c.certPem, publicKey: c.pubkeyPem, privateKey: c.encryptedKey };
    await writeCertFile(this.o.certificateFile, cert);
    return cert;
  }
}

export type { Coin };
