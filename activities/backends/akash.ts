/**
 * The `akash` backend (DESIGN.md §5, seed §6.2.1): a job attempt is an Akash deployment of one trainer container.
 *
 *   submit  → SDL from the spec (akash-sdl.ts), validated offline; deployment created with its manifest version
 *   status  → bidding: the cheapest open bid at or under the price cap becomes the lease and the provider gets the
 *             manifest; no such bid within bid_timeout_seconds → the deployment is closed, NO_CAPACITY
 *           → leased: the provider's lease status, then the forge agent in the container (remote-agent.ts) says
 *             RUNNING / how the trainer ended; on success its outputs are staged to FORGE_HOME before SUCCEEDED
 *           → a lease the provider or the chain closed → LOST (the job fails over)
 *   close   → the deployment is closed (its leases and escrow with it)
 *
 * Two ways to the market, chosen by the operator config: `chain` (own wallet, cosmjs; akash-chain.ts) and `console`
 * (Akash Console managed wallet; akash-console.ts). Cost = the lease's price per block × blocks (chain) or × time
 * (console) since the lease began, in USD.
 */
import path from 'node:path';
import { z } from 'zod';
import type { AkashBackendConfig } from '../../common/config';
import type { TrainingJobSpec } from '../../spec/schema';
import { AkashChain } from './akash-chain';
import { ConsoleMarket } from './akash-console';
import { ChainMarket, type AkashMarket, type MarketBid, type MarketLease } from './akash-market';
import { serviceReady, serviceUri } from './akash-provider';
import { akashSdlOptions, akashTrainer, buildSdl, parseGpuType, perBlockAmount, resolveDenom, SdlError, usdPerHour, usdPerUnit, type BuiltSdl } from './akash-sdl';
import { AgentClient, agentBaseUrl, collectStaged, decodeLineCursor, encodeLineCursor, failedStatus, statusFromAgent } from './remote-agent';
import { agentToken } from './remote-agent-script';
import { backendErrorFor, HttpStatusError, NetworkError } from './remote-http';
import { AttemptStore, costBetween, readSecret } from './remote-state';
import {
  BackendError,
  MAX_LOG_LINES,
  type Backend,
  type DeploymentRef,
  type DeploymentStatus,
  type HealthReport,
  type LogChunk,
  type Quote,
  type SubmitOptions,
} from './types';

/** A provider that has the lease but not the manifest gets it again at most this often. */
const MANIFEST_RESEND_MS = 30_000;

const recordSchema = z.object({
  dseq: z.string().optional(),
  owner: z.string().default(''),
  manifest: z.string().optional(),
  manifestVersion: z.string(),
  createdAt: z.string(),
  bidDeadline: z.string(),
  /** The attempt's price cap, per block in the denom and as USD per hour. */
  capAmount: z.number(),
  capUsd: z.number(),
  lease: z.object({ provider: z.string(), gseq: z.number(), oseq: z.number(), amount: z.number(), leasedAt: z.string() }).optional(),
  manifestSentAt: z.string().optional(),
  closed: z.boolean().default(false),
});
type AkashRecord = z.output<typeof recordSchema>;

/** What a DeploymentRef of this backend carries (no credential, no token, no manifest). */
const refDataSchema = z.object({
  mode: z.enum(['chain', 'console']),
  dseq: z.string(),
  owner: z.string(),
  manifest_version: z.string(),
  denom: z.string(),
  cap_amount: z.number(),
  cap_usd_hour: z.number(),
  bid_deadline: z.string(),
});
type RefData = z.output<typeof refDataSchema>;

export interface AkashBackendOptions {
  /** Tests: another market implementation. */
  market?: AkashMarket;
}

export class AkashBackend implements Backend {
  readonly kind = 'akash';
  private readonly market: AkashMarket;
  private readonly store: AttemptStore<typeof recordSchema>;

  constructor(
    readonly name: string,
    private readonly config: AkashBackendConfig,
    private readonly home: string,
    options: AkashBackendOptions = {},
  ) {
    this.store = new AttemptStore(home, name, recordSchema);
    this.market = options.market ?? this.makeMarket();
  }

  private makeMarket(): AkashMarket {
    const c = this.config;
    const certDir = path.join(this.home, 'akash', this.name);
    if (c.mode === 'chain' && c.chain) {
      const chain = c.chain;
      return new ChainMarket(
        new AkashChain({
          restUrl: chain.rest_url,
          chainId: chain.chain_id,
          mnemonic: () => readSecret(chain.mnemonic, chain.mnemonic_file, `backends.${this.name}.chain.mnemonic`),
          gas: chain.gas,
          gasPriceUakt: chain.gas_price_uakt,
          timeoutMs: c.request_timeout_ms,
          inclusionTimeoutMs: Math.max(60_000, c.block_seconds * 10_000),
          certificateFile: chain.certificate_file ?? path.join(certDir, 'cert.json'),
        }),
        { verifyProviderCertificates: chain.verify_provider_certificates, timeoutMs: c.request_timeout_ms },
      );
    }
    const con = c.console;
    if (!con) throw new BackendError('REJECTED', `backend ${this.name}: mode ${c.mode} is not configured`);
    return new ConsoleMarket({
      url: con.url,
      apiKey: () => readSecret(con.api_key, con.api_key_file, `backends.${this.name}.console.api_key`),
      depositUsd: con.deposit_usd,
      timeoutMs: c.request_timeout_ms,
      certificateFile: path.join(certDir, 'console-cert.json'),
    });
  }

  /** The credential the agent token is derived from (never sent anywhere). */
  private async credential(): Promise<string> {
    const c = this.config;
    if (c.mode === 'chain' && c.chain) return readSecret(c.chain.mnemonic, c.chain.mnemonic_file, `backends.${this.name}.chain.mnemonic`);
    return readSecret(c.console?.api_key, c.console?.api_key_file, `backends.${this.name}.console.api_key`);
  }

  private async token(jobId: string, attempt: number): Promise<string> {
    return agentToken(await this.credential(), this.name, jobId, attempt);
  }

  private denom(): string {
    return resolveDenom(this.config.denom, this.config.network);
  }

  // ---- Backend ----------------------------------------------------------------------------------------------------

  async health(): Promise<HealthReport> {
    try {
      usdPerUnit(this.config);
      const deposit = this.config.chain?.deposit_amount ?? 0;
      const report = await this.market.health(this.denom(), deposit);
      const off = this.config.enabled ? '' : ' (disabled: admits no new jobs)';
      return { ok: report.ok, detail: `${report.detail}; price cap $${this.config.hourly_usd}/h${off}` };
    } catch (err) {
      const e = backendErrorFor(err, `backend ${this.name}`);
      return { ok: false, detail: (e as Error).message };
    }
  }

  async quote(spec: TrainingJobSpec): Promise<Quote> {
    const cap = this.config.hourly_usd;
    if (!this.config.enabled) return { available: false, hourlyUsd: cap, detail: `backend "${this.name}" is disabled in the operator config` };
    await this.built(spec, spec, 1, 'quote', cap); // refuses (REJECTED) what this backend can never deploy
    const max = this.config.max_concurrent;
    if (max !== undefined) {
      const open = await this.store.countOpen(spec.job_id);
      if (open >= max) return { available: false, hourlyUsd: cap, detail: `${open} of max_concurrent ${max} deployments open` };
    }
    if (spec.resources.gpus > 0 && spec.resources.gpu_type) {
      const gpu = parseGpuType(spec.resources.gpu_type);
      const price = await this.market.gpuPrice(gpu).catch(() => undefined);
      if (price) {
        const what = `${gpu.vendor}/${gpu.model ?? '*'}`;
        if (price.available < spec.resources.gpus) {
          return { available: false, hourlyUsd: cap, detail: `${price.available} ${what} GPUs free on Akash, the job needs ${spec.resources.gpus}` };
        }
        if (price.hourlyUsd !== undefined) {
          const hourly = price.hourlyUsd * spec.resources.gpus;
          if (hourly > cap) return { available: false, hourlyUsd: hourly, detail: `Akash ${what} at ~$${hourly.toFixed(2)}/h is above the cap $${cap}/h` };
          return { available: true, hourlyUsd: hourly, detail: `Akash median price for ${spec.resources.gpus}× ${what}` };
        }
      }
    }
    return { available: true, hourlyUsd: cap, detail: 'the price cap (bids come at or under it)' };
  }

  async submit(spec: TrainingJobSpec, rawSpec: unknown, attempt: number, options: SubmitOptions = {}): Promise<DeploymentRef> {
    if (!Number.isInteger(attempt) || attempt < 1) throw new BackendError('REJECTED', `attempt must be an integer >= 1, got ${attempt}`);
    const existing = await this.store.read(spec.job_id, attempt);
    if (existing?.dseq) return this.refFor(spec.job_id, attempt, existing);
    if (!this.config.enabled) throw new BackendError('NO_CAPACITY', `backend "${this.name}" is disabled in the operator config`);
    const capUsd = Math.min(this.config.hourly_usd, options.maxHourlyUsd ?? Infinity);
    if (!(capUsd > 0)) throw new BackendError('BUDGET', `no budget left for an hour on ${this.name}`);
    const built = await this.built(spec, rawSpec, attempt, await this.token(spec.job_id, attempt), capUsd);
    const now = new Date();
    const dseq = existing?.dseq ?? (await this.market.proposeDseq());
    const capAmount = perBlockAmount(capUsd, usdPerUnit(this.config), this.config.block_seconds);
    const record: z.input<typeof recordSchema> = {
      ...(dseq && { dseq }),
      capAmount,
      capUsd,
      manifestVersion: built.manifestVersion,
      createdAt: now.toISOString(),
      bidDeadline: new Date(now.getTime() + this.config.bid_timeout_seconds * 1000).toISOString(),
    };
    // Chain mode: the dseq is on disk before the transaction, so a retried submit finds the same deployment.
    if (dseq) await this.store.write(spec.job_id, attempt, record);
    let created: { dseq: string; owner: string; manifest: string };
    try {
      created = await this.market.createDeployment(built, dseq, { denom: this.denom(), amount: String(this.config.chain?.deposit_amount ?? 0) });
    } catch (err) {
      throw backendErrorFor(err, `Akash (${this.name}) create deployment`);
    }
    const full = { ...record, dseq: created.dseq, owner: created.owner, manifest: created.manifest };
    await this.store.write(spec.job_id, attempt, full);
    await this.store.markOpen(spec.job_id, attempt);
    return this.refFor(spec.job_id, attempt, recordSchema.parse(full));
  }

  async status(ref: DeploymentRef): Promise<DeploymentStatus> {
    const d = this.refData(ref);
    try {
      return await this.statusOf(ref, d);
    } catch (err) {
      throw backendErrorFor(err, `Akash (${this.name}) deployment ${d.dseq}`);
    }
  }

  async logs(ref: DeploymentRef, cursor?: string): Promise<LogChunk> {
    const d = this.refData(ref);
    const skip = decodeLineCursor('akash', cursor);
    try {
      const dep = await this.market.deployment(d.owner, d.dseq);
      const lease = dep.leases.find((l) => l.state === 'active') ?? dep.leases.at(-1);
      if (!lease) return { lines: [], cursor: encodeLineCursor('akash', skip) };
      const lines = await this.market.logs(lease, this.config.service, skip, MAX_LOG_LINES);
      return { lines: lines.map((line) => ({ stream: 'stdout' as const, line })), cursor: encodeLineCursor('akash', skip + lines.length) };
    } catch (err) {
      // The provider drops a lease's logs when it is closed; a provider that cannot be reached has none to give now.
      if (err instanceof NetworkError || err instanceof HttpStatusError) return { lines: [], cursor: encodeLineCursor('akash', skip) };
      throw err;
    }
  }

  async collectArtifacts(ref: DeploymentRef, dir: string): Promise<string[]> {
    return collectStaged(this.home, ref.jobId, ref.attempt, dir);
  }

  async close(ref: DeploymentRef): Promise<void> {
    const d = this.refData(ref);
    try {
      await this.market.close(d.owner, d.dseq);
    } catch (err) {
      throw backendErrorFor(err, `Akash (${this.name}) close deployment ${d.dseq}`);
    }
    const rec = await this.store.read(ref.jobId, ref.attempt);
    if (rec) await this.store.write(ref.jobId, ref.attempt, { ...rec, closed: true });
    await this.store.markClosed(ref.jobId, ref.attempt);
  }

  // ---- internals --------------------------------------------------------------------------------------------------

  /** The attempt's SDL; what this backend can never deploy is REJECTED (a bad GPU vendor, an unmapped image, …). */
  private async built(spec: TrainingJobSpec, rawSpec: unknown, attempt: number, token: string, capUsd: number): Promise<BuiltSdl> {
    if (!akashTrainer(this.config, spec.trainer.image)) {
      throw new BackendError('REJECTED', `backend ${this.name}: no container configured for trainer image "${spec.trainer.image}" (configured: ${Object.keys(this.config.trainers).join(', ')})`);
    }
    try {
      return await buildSdl(spec, akashSdlOptions(this.config, { spec, rawSpec, attempt, token, capUsd }));
    } catch (err) {
      if (err instanceof SdlError) throw new BackendError('REJECTED', `backend ${this.name}: ${err.message}`);
      throw err;
    }
  }

  private refFor(jobId: string, attempt: number, rec: AkashRecord): DeploymentRef {
    const data: RefData = {
      mode: this.config.mode,
      dseq: rec.dseq ?? '',
      owner: rec.owner,
      manifest_version: rec.manifestVersion,
      denom: this.denom(),
      cap_amount: rec.capAmount,
      cap_usd_hour: rec.capUsd,
      bid_deadline: rec.bidDeadline,
    };
    return { backend: this.name, kind: this.kind, id: `dseq-${rec.dseq}`, jobId, attempt, submittedAt: rec.createdAt, data: { ...data } };
  }

  private refData(ref: DeploymentRef): RefData {
    const parsed = refDataSchema.safeParse(ref.data);
    if (!parsed.success) throw new BackendError('REJECTED', `deployment ${ref.id} is not an Akash deployment of this orchestrator`);
    return parsed.data;
  }

  private async statusOf(ref: DeploymentRef, d: RefData): Promise<DeploymentStatus> {
    const rec = await this.store.read(ref.jobId, ref.attempt);
    const dep = await this.market.deployment(d.owner, d.dseq);
    if (dep.state === 'missing') return failedStatus('LOST', `deployment ${d.dseq} is not on Akash (closed long ago, or never created)`, 0);
    const active = dep.leases.find((l) => l.state === 'active');
    if (!active) {
      const ended = dep.leases.at(-1);
      if (ended) {
        const cost = await this.leaseCost(ended, rec, ref, true);
        const why = rec?.closed ? 'closed by the orchestrator' : ended.state === 'insufficient_funds' ? 'out of escrow funds' : `closed (${ended.state}) by the provider or the chain`;
        return failedStatus('LOST', `lease with provider ${ended.id.provider} on deployment ${d.dseq} ended: ${why}`, cost);
      }
      if (dep.state !== 'active') return failedStatus('LOST', `deployment ${d.dseq} was closed ${rec?.closed ? 'by the orchestrator' : 'outside the orchestrator'} before any lease`, 0);
      return this.bid(ref, d, rec);
    }
    return this.leased(ref, d, rec, active);
  }

  /** No lease yet: take the cheapest acceptable bid, or give up after the bid timeout. */
  private async bid(ref: DeploymentRef, d: RefData, rec: AkashRecord | undefined): Promise<DeploymentStatus> {
    const bids = await this.market.openBids(d.owner, d.dseq);
    const allowed = this.config.providers;
    const acceptable = bids
      .filter((b) => b.price.denom === d.denom && b.price.amount <= d.cap_amount && (allowed.length === 0 || allowed.includes(b.id.provider)))
      .sort((a, b) => a.price.amount - b.price.amount || a.id.provider.localeCompare(b.id.provider));
    const best = acceptable[0];
    if (best) {
      await this.market.createLease(best, await this.manifestOf(ref, d, rec));
      const now = new Date().toISOString();
      if (rec) await this.store.write(ref.jobId, ref.attempt, { ...rec, lease: leaseRecord(best, now), manifestSentAt: now });
      return { state: 'PENDING', costUsd: 0 };
    }
    if (Date.now() >= Date.parse(d.bid_deadline)) {
      await this.market.close(d.owner, d.dseq);
      if (rec) await this.store.write(ref.jobId, ref.attempt, { ...rec, closed: true });
      await this.store.markClosed(ref.jobId, ref.attempt);
      const seen = bids.length ? `; ${bids.length} bid(s), cheapest ${Math.min(...bids.map((b) => b.price.amount))} ${bids[0]?.price.denom}` : '; no bids at all';
      return failedStatus('NO_CAPACITY', `no Akash bid at or under ${d.cap_amount} ${d.denom}/block ($${d.cap_usd_hour.toFixed(2)}/h) within ${this.config.bid_timeout_seconds} s${seen}; deployment ${d.dseq} closed`, 0);
    }
    return { state: 'PENDING', costUsd: 0 };
  }

  private async leased(ref: DeploymentRef, d: RefData, rec: AkashRecord | undefined, lease: MarketLease): Promise<DeploymentStatus> {
    const costUsd = await this.leaseCost(lease, rec, ref, false);
    const status = await this.market.leaseStatus(lease);
    if (status === 'not-found') {
      // A lease the provider has no manifest for (a worker died between the two): hand it over again.
      const last = rec?.manifestSentAt ? Date.parse(rec.manifestSentAt) : 0;
      if (Date.now() - last > MANIFEST_RESEND_MS) {
        await this.market.resendManifest(lease, await this.manifestOf(ref, d, rec));
        if (rec) await this.store.write(ref.jobId, ref.attempt, { ...rec, manifestSentAt: new Date().toISOString() });
      }
      return { state: 'PENDING', costUsd };
    }
    const ready = serviceReady(status, this.config.service);
    const uri = serviceUri(status, this.config.service, this.config.agent_port);
    const startedAt = rec?.lease?.leasedAt;
    const base = { costUsd, ...(startedAt && { startedAt }) };
    if (!uri) return { state: ready ? 'RUNNING' : 'PENDING', ...base };
    const agent = new AgentClient(agentBaseUrl(uri), await this.token(ref.jobId, ref.attempt), this.config.request_timeout_ms);
    return statusFromAgent(await agent.state(), agent, { home: this.home, ref, ready, base, platform: 'Akash' });
  }

  /** The manifest the provider gets: the one kept at creation, else rebuilt (deterministic for the same attempt). */
  private async manifestOf(ref: DeploymentRef, d: RefData, rec: AkashRecord | undefined): Promise<string> {
    if (rec?.manifest) return rec.manifest;
    throw new BackendError('LOST', `deployment ${d.dseq}: its manifest is kept by the worker that created it (FORGE_HOME ${this.home} has no record of attempt ${ref.attempt})`);
  }

  /** USD so far: price per block × blocks since the lease began (chain), or × time (console). */
  private async leaseCost(lease: MarketLease, rec: AkashRecord | undefined, ref: DeploymentRef, ended: boolean): Promise<number> {
    const unit = usdPerUnit(this.config);
    const height = ended ? undefined : await this.market.height().catch(() => undefined);
    if (height !== undefined && lease.createdHeight !== undefined) return Math.max(0, height - lease.createdHeight) * lease.price.amount * unit;
    const hourly = usdPerHour(lease.price.amount, unit, this.config.block_seconds);
    return costBetween(hourly, rec?.lease?.leasedAt ?? ref.submittedAt, new Date());
  }
}

function leaseRecord(bid: MarketBid, at: string): NonNullable<AkashRecord['lease']> {
  return { provider: bid.id.provider, gseq: bid.id.gseq, oseq: bid.id.oseq, amount: bid.price.amount, leasedAt: at };
}
