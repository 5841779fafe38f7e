/**
 * What the Akash backend needs from the marketplace, whichever way it is reached: the chain with the operator's own
 * wallet (ChainMarket, here) or the Akash Console's managed-wallet API (ConsoleMarket, akash-console.ts).
 */
import type { BuiltSdl, GpuModel } from './akash-sdl';
import { AkashChain, closeDeploymentMsg, createDeploymentMsg, createLeaseMsg, type BidId, type Coin } from './akash-chain';
import { ProviderClient, type LeaseStatus } from './akash-provider';
import type { HealthReport } from '../types';

export interface MarketBid {
  id: BidId;
  /** Per block, in `denom`. */
  price: { denom: string; amount: number };
}

export interface MarketLease {
  id: BidId;
  /** active | insufficient_funds | closed */
  state: string;
  price: { denom: string; amount: number };
  createdHeight?: number;
  /** The Console reports the provider's lease status with the lease; the chain does not (undefined). */
  status?: LeaseStatus | null;
}

export interface MarketDeployment {
  /** active | closed | missing */
  state: string;
  leases: MarketLease[];
}

export interface ActiveDeployment {
  dseq: string;
  owner: string;
  /** The manifest version the deployment committed on chain, hex. */
  version: string;
  /** Its groups' names as the chain has them (a forge attempt's carries its mark: akash-sdl.ts forgeGroupName). */
  groups: string[];
}

export interface GpuPrice {
  available: number;
  /** USD per GPU-hour (median, else average), when known. */
  hourlyUsd?: number;
}

export interface AkashMarket {
  readonly mode: 'chain' | 'console';
  health(denom: string, needed: number): Promise<HealthReport>;
  /** The dseq to create under (chain: the latest height), or undefined when the market assigns it (console). */
  proposeDseq(): Promise<string | undefined>;
  /** Creates the deployment; with a proposed dseq, a second call for the same dseq creates nothing. */
  createDeployment(built: BuiltSdl, dseq: string | undefined, deposit: Coin): Promise<{ dseq: string; owner: string; manifest: string }>;
  openBids(owner: string, dseq: string): Promise<MarketBid[]>;
  deployment(owner: string, dseq: string): Promise<MarketDeployment>;
  /** Accepts the bid and hands the provider the manifest. */
  createLease(bid: MarketBid, manifest: string): Promise<void>;
  /** Sends the manifest again (a provider that lost it, or a lease made by another worker). */
  resendManifest(lease: MarketLease, manifest: string): Promise<void>;
  leaseStatus(lease: MarketLease): Promise<LeaseStatus | 'not-found'>;
  logs(lease: MarketLease, service: string, skip: number, max: number): Promise<string[]>;
  /** The account's active deployments with their on-chain manifest version (hex), oldest first. */
  listActive(): Promise<ActiveDeployment[]>;
  /** Closes the deployment (and its leases); a closed or unknown one is fine. */
  close(owner: string, dseq: string): Promise<void>;
  /** The chain's height now, when the market can tell (for cost = price × blocks). */
  height(): Promise<number | undefined>;
  gpuPrice(gpu: GpuModel): Promise<GpuPrice | undefined>;
}

/** The chain, with the operator's wallet; providers over mTLS with the wallet's on-chain certificate. */
export class ChainMarket implements AkashMarket {
  readonly mode = 'chain';
  constructor(
    private readonly chain: AkashChain,
    private readonly o: { verifyProviderCertificates: boolean; timeoutMs: number },
  ) {}

  async health(denom: string, needed: number): Promise<HealthReport> {
    const address = await this.chain.address();
    const height = await this.chain.height();
    const balance = await this.chain.balance(denom);
    const ok = balance >= needed;
    return { ok, detail: `chain mode, wallet ${address}: ${balance} ${denom} (a deployment needs ${needed}); block ${height}` };
  }

  async proposeDseq(): Promise<string> {
    return String(await this.chain.height());
  }

  async createDeployment(built: BuiltSdl, dseq: string | undefined, deposit: Coin): Promise<{ dseq: string; owner: string; manifest: string }> {
    const owner = await this.chain.address();
    const id = dseq ?? (await this.proposeDseq());
    if ((await this.chain.deploymentState(owner, id)) === 'missing') {
      await this.chain.clientCertificate(); // providers refuse the manifest of an owner without one
      const version = Buffer.from(built.manifestVersion, 'hex');
      await this.chain.broadcast([createDeploymentMsg(owner, id, built.sdl, version, deposit)], 'chrysalis-forge');
    }
    return { dseq: id, owner, manifest: built.sdl.manifestSortedJSON() };
  }

  async openBids(owner: string, dseq: string): Promise<MarketBid[]> {
    return (await this.chain.bids(owner, dseq)).filter((b) => b.state === 'open');
  }

  async deployment(owner: string, dseq: string): Promise<MarketDeployment> {
    const state = await this.chain.deploymentState(owner, dseq);
    if (state === 'missing') return { state, leases: [] };
    return { state, leases: await this.chain.leases(owner, dseq) };
  }

  async createLease(bid: MarketBid, manifest: string): Promise<void> {
    const leases = await this.chain.leases(bid.id.owner, bid.id.dseq);
    if (!leases.some((l) => l.id.provider === bid.id.provider && l.state === 'active')) {
      await this.chain.broadcast([createLeaseMsg(bid.id)], 'chrysalis-forge');
    }
    await (await this.provider(bid.id.provider)).sendManifest(bid.id.dseq, manifest);
  }

  async resendManifest(lease: MarketLease, manifest: string): Promise<void> {
    await (await this.provider(lease.id.provider)).sendManifest(lease.id.dseq, manifest);
  }

  async leaseStatus(lease: MarketLease): Promise<LeaseStatus | 'not-found'> {
    return (await this.provider(lease.id.provider)).leaseStatus(lease.id);
  }

  async logs(lease: MarketLease, service: string, skip: number, max: number): Promise<string[]> {
    return (await this.provider(lease.id.provider)).logs(lease.id, service, skip, max);
  }

  async listActive(): Promise<ActiveDeployment[]> {
    return (await this.chain.activeDeployments(await this.chain.address())).sort((a, b) => (BigInt(a.dseq) < BigInt(b.dseq) ? -1 : 1));
  }

  async close(owner: string, dseq: string): Promise<void> {
    const state = await this.chain.deploymentState(owner, dseq);
    if (state === 'active') await this.chain.broadcast([closeDeploymentMsg(owner, dseq)], 'chrysalis-forge');
  }

  async height(): Promise<number> {
    return this.chain.height();
  }

  async gpuPrice(): Promise<undefined> {
    return undefined; // the chain publishes no price index: quotes use the operator's cap
  }

  private async provider(address: string): Promise<ProviderClient> {
    const [hostUri, cert, pinned] = await Promise.all([
      this.chain.providerHostUri(address),
      this.chain.clientCertificate(),
      this.o.verifyProviderCertificates ? this.chain.certificates(address) : Promise.resolve(undefined),
    ]);
    return new ProviderClient(
      hostUri,
      { cert: cert.cert, key: cert.privateKey, rejectUnauthorized: false, ...(pinned && { pinned }) },
      this.o.timeoutMs,
    );
  }
}
