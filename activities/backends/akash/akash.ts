/**
 * The `akash` backend (docs/architecture.md §5): a job attempt is an Akash deployment of one trainer container.
 *
 *   submit  → SDL from the spec (akash-sdl.ts), validated offline; deployment created with its manifest version
 *             (an eval attempt's: its inputs as env, trainer-contract.ts; the suite's size is capped)
 *   status  → bidding: the cheapest open bid at or under the price cap becomes the lease and the provider gets the
 *             manifest; no such bid within bid_timeout_seconds → the deployment is closed, NO_CAPACITY
 *           → leased: the provider's lease status, then the forge agent in the container (remote-agent.ts) says
 *             RUNNING / how the trainer ended; on success SUCCEEDED, its outputs fetched from the agent by the commit
 *             (the lease stays open until then)
 *           → a lease the provider or the chain closed → LOST (the job fails over)
 *   close   → the deployment is closed (its leases and escrow with it)
 *
 * Two ways to the market, chosen by the operator config: `chain` (own wallet, cosmjs; akash-chain.ts) and `console`
 * (Akash Console managed wallet; akash-console.ts). Cost = the lease's price per block × blocks (chain) or × time
 * (console) since the lease began, in USD.
 */
import { z } from 'zod';
import type { AkashBackendConfig } from '../../../common/config';
import type { TrainingJobSpec } from '../../../jobspec/schema';
import type { ShippedSpec, SignedSpec } from '../../../jobspec/signed-spec';
import { checkEvalSize, checkRebuiltVersion, manifestSourceOf, specFromSource } from './akash-manifest-source';
import type { ActiveDeployment, AkashMarket, MarketLease } from './akash-market';
import { marketFor } from './akash-market-config';
import { serviceReady, serviceUri } from './akash-provider';
import { akashSdlOptions, akashTrainer, buildSdl, parseGpuType, perBlockAmount, resolveDenom, SdlError, usdPerHour, usdPerUnit, type BuiltSdl } from './akash-sdl';
import { AgentClient, agentBaseUrl, agentLogLines, collectFromAgent, decodeLineCursor, encodeLineCursor, failedStatus, statusFromAgent, type CollectProgress } from '../remote/remote-agent';
import { agentToken } from '../remote/remote-agent-script';
import { backendErrorFor, HttpStatusError, NetworkError } from '../remote/remote-http';
import { AttemptStore, costBetween, readSecret } from '../remote/remote-state';
import { adoptedRecord, leaseRecord, markedAttempt, parseRefData, recordSchema, refDataOf, sourceOfRef, type AkashRecord, type GroupMark, type RefData } from './akash-records';
import {
  BackendError,
  MAX_LOG_LINES,
  type Backend,
  type DeploymentRef,
  type DeploymentStatus,
  type EvalRunInputs,
  type HealthReport,
  type LogChunk,
  type OpenDeployment,
  type Quote,
  type SubmitOptions,
} from '../types';

/** Stands for the agent token in a manifest kept on disk: no record holds a token (it is derived again when sent). */
const TOKEN_PLACEHOLDER = '@@FORGE_AGENT_TOKEN@@';

/** A provider that has the lease but not the manifest gets it again at most this often. */
const MANIFEST_RESEND_MS = 30_000;

export interface AkashBackendOptions {
  /** Tests: another market implementation. */
  market?: AkashMarket;
  /** This installation's tag (installation.ts): put in each deployment's mark, and the only tagged marks reaped. */
  installation?: string;
  /** Tags of this installation's earlier orchestrator keys (config `reaper.earlier_tags`): their marks are reaped too. */
  earlierTags?: readonly string[];
}

export class AkashBackend implements Backend {
  readonly kind = 'akash';
  private readonly market: AkashMarket;
  private readonly store: AttemptStore<typeof recordSchema>;
  private readonly installation: string | undefined;
  private readonly earlierTags: readonly string[];

  constructor(
    readonly name: string,
    private readonly config: AkashBackendConfig,
    private readonly home: string,
    options: AkashBackendOptions = {},
  ) {
    this.store = new AttemptStore(home, name, recordSchema);
    this.market = options.market ?? marketFor(name, config, home);
    this.installation = options.installation;
    this.earlierTags = options.earlierTags ?? [];
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
    await this.built({ spec, raw: {} }, 1, 'quote', cap, { groupMark: true }); // refuses (REJECTED) what this backend can never deploy
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

  async submit(signed: SignedSpec, attempt: number, options: SubmitOptions = {}): Promise<DeploymentRef> {
    const { spec } = signed;
    if (!Number.isInteger(attempt) || attempt < 1) throw new BackendError('REJECTED', `attempt must be an integer >= 1, got ${attempt}`);
    // An eval attempt's inputs go in its manifest (as env) and in its source, from which any replica rebuilds it.
    if (options.evalRun) checkEvalSize(options.evalRun, this.name);
    const existing = await this.store.read(spec.job_id, attempt);
    if (existing?.dseq) return this.refFor(spec.job_id, attempt, existing);
    if (!this.config.enabled) throw new BackendError('NO_CAPACITY', `backend "${this.name}" is disabled in the operator config`);
    const capUsd = Math.min(this.config.hourly_usd, options.maxHourlyUsd ?? Infinity);
    if (!(capUsd > 0)) throw new BackendError('BUDGET', `no budget left for an hour on ${this.name}`);
    const token = await this.token(spec.job_id, attempt);
    const mark: GroupMark = { groupMark: true, ...(this.installation !== undefined && { groupTag: this.installation }) };
    const built = await this.built(signed, attempt, token, capUsd, mark, options.evalRun);
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
      source: manifestSourceOf(signed, options.evalRun),
      ...mark,
    };
    // Chain mode: the dseq is on disk before the transaction, so a retried submit finds the same deployment. Either
    // mode: the manifest version is, so the reaper knows the deployment for this attempt's even if we die after it.
    await this.store.write(spec.job_id, attempt, record);
    let created: { dseq: string; owner: string; manifest: string };
    try {
      created = await this.market.createDeployment(built, dseq, { denom: this.denom(), amount: String(this.config.chain?.deposit_amount ?? 0) });
    } catch (err) {
      throw backendErrorFor(err, `Akash (${this.name}) create deployment`);
    }
    // The record keeps the manifest with its agent token replaced by a placeholder (put back by manifestOf).
    const full = { ...record, dseq: created.dseq, owner: created.owner, manifest: created.manifest.split(token).join(TOKEN_PLACEHOLDER) };
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
      return { lines: await agentLogLines(lines, () => this.token(ref.jobId, ref.attempt)), cursor: encodeLineCursor('akash', skip + lines.length) };
    } catch (err) {
      // The provider drops a lease's logs when it is closed; a provider that cannot be reached has none to give now.
      if (err instanceof NetworkError || err instanceof HttpStatusError) return { lines: [], cursor: encodeLineCursor('akash', skip) };
      throw err;
    }
  }

  /** From the lease's agent (the deployment stays open until the commit): any replica can run it. */
  async collectArtifacts(ref: DeploymentRef, dir: string, onProgress?: (p: CollectProgress) => void): Promise<string[]> {
    const d = this.refData(ref);
    const agent = async (): Promise<AgentClient | undefined> => {
      const dep = await this.market.deployment(d.owner, d.dseq);
      const lease = dep.leases.find((l) => l.state === 'active');
      const status = lease ? await this.market.leaseStatus(lease) : 'not-found';
      const uri = status === 'not-found' ? undefined : serviceUri(status, this.config.service, this.config.agent_port);
      return uri ? this.agentAt(ref, uri) : undefined;
    };
    try {
      return await collectFromAgent(agent, { home: this.home, ref, dir, ...(onProgress && { onProgress }) });
    } catch (err) {
      throw backendErrorFor(err, `Akash (${this.name}) outputs of deployment ${d.dseq}`);
    }
  }

  private async agentAt(ref: DeploymentRef, uri: string): Promise<AgentClient> {
    return new AgentClient(agentBaseUrl(uri), await this.token(ref.jobId, ref.attempt), this.config.request_timeout_ms);
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

  /**
   * The reaper: the account's active deployments that are forge attempts, known from the chain's (or Console's)
   * listing itself: the group's name carries the forge mark with the job id and attempt (akash-sdl.ts
   * forgeGroupName), so any replica finds them — those of a replica whose FORGE_HOME vanished included. A deployment
   * from before the mark is known by its manifest version when this replica recorded it. Deployments of the account
   * that are not forge attempts, or are another installation's (installation.ts), are never listed.
   */
  async listOpen(): Promise<OpenDeployment[]> {
    const byVersion = new Map<string, { jobId: string; attempt: number; record: AkashRecord }>();
    for (const r of await this.store.list()) byVersion.set(r.record.manifestVersion, r);
    let active: ActiveDeployment[];
    try {
      active = await this.market.listActive();
    } catch (err) {
      throw backendErrorFor(err, `Akash (${this.name}) list deployments`);
    }
    return active.flatMap((d) => {
      const mine = byVersion.get(d.version) ?? markedAttempt(d, this.installation, this.earlierTags);
      if (!mine) return [];
      const ref = this.refFor(mine.jobId, mine.attempt, { ...mine.record, dseq: d.dseq, owner: d.owner });
      return [{ ref, jobId: mine.jobId, attempt: mine.attempt, createdAt: mine.record.createdAt }];
    });
  }

  // ---- internals --------------------------------------------------------------------------------------------------

  /** The attempt's SDL; what this backend can never deploy is REJECTED (a bad GPU vendor, an unmapped image, …). */
  private async built(
    signed: ShippedSpec,
    attempt: number,
    token: string,
    capUsd: number,
    mark: GroupMark,
    evalRun?: EvalRunInputs,
  ): Promise<BuiltSdl> {
    const { spec } = signed;
    if (!akashTrainer(this.config, spec.trainer.image)) {
      throw new BackendError('REJECTED', `backend ${this.name}: no container configured for trainer image "${spec.trainer.image}" (configured: ${Object.keys(this.config.trainers).join(', ')})`);
    }
    try {
      return await buildSdl(spec, akashSdlOptions(this.config, { signed, attempt, token, capUsd, ...mark, ...(evalRun && { evalRun }) }));
    } catch (err) {
      if (err instanceof SdlError) throw new BackendError('REJECTED', `backend ${this.name}: ${err.message}`);
      throw err;
    }
  }

  private refFor(jobId: string, attempt: number, rec: AkashRecord): DeploymentRef {
    const data = refDataOf(rec, this.config.mode, this.denom());
    return { backend: this.name, kind: this.kind, id: `dseq-${rec.dseq}`, jobId, attempt, submittedAt: rec.createdAt, data: { ...data } };
  }

  private refData(ref: DeploymentRef): RefData {
    return parseRefData(ref);
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
      await this.store.write(ref.jobId, ref.attempt, { ...(rec ?? adoptedRecord(ref, d)), lease: leaseRecord(best, now), manifestSentAt: now });
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
        await this.store.write(ref.jobId, ref.attempt, { ...(rec ?? adoptedRecord(ref, d)), manifestSentAt: new Date().toISOString() });
      }
      return { state: 'PENDING', costUsd };
    }
    const ready = serviceReady(status, this.config.service);
    const uri = serviceUri(status, this.config.service, this.config.agent_port);
    const startedAt = rec?.lease?.leasedAt;
    const base = { costUsd, ...(startedAt && { startedAt }) };
    if (!uri) return { state: ready ? 'RUNNING' : 'PENDING', ...base };
    const agent = await this.agentAt(ref, uri);
    return statusFromAgent(await agent.state(), { ready, base, platform: 'Akash' });
  }

  /**
   * The manifest the provider gets: the one kept at creation, else (another replica, a lost FORGE_HOME) rebuilt from
   * the spec (and an eval attempt's inputs) in the ref, the attempt, its price cap and this replica's operator config and credential — the same SDL
   * generator, so the same manifest, which its version (committed on chain at creation) must confirm.
   */
  private async manifestOf(ref: DeploymentRef, d: RefData, rec: AkashRecord | undefined): Promise<string> {
    const token = await this.token(ref.jobId, ref.attempt);
    if (rec?.manifest) return rec.manifest.split(TOKEN_PLACEHOLDER).join(token);
    const source = sourceOfRef(d);
    if (!source) {
      throw new BackendError('LOST', `deployment ${d.dseq}: its manifest is kept by the worker that created it (FORGE_HOME ${this.home} has no record of attempt ${ref.attempt}, and the deployment ref predates the spec it would be rebuilt from)`);
    }
    const { signed, evalRun } = specFromSource(source, d.dseq);
    const mark: GroupMark = { groupMark: d.group_mark === true, ...(d.group_tag !== undefined && { groupTag: d.group_tag }) };
    const built = await this.built(signed, ref.attempt, token, d.cap_usd_hour, mark, evalRun);
    checkRebuiltVersion({ rebuilt: built.manifestVersion, committed: d.manifest_version, dseq: d.dseq, backend: this.name, attempt: ref.attempt });
    return built.sdl.manifestSortedJSON();
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
