/**
 * A local Akash Console managed-wallet API (akash.network/docs/api-documentation/console-api): x-api-key auth;
 * POST/GET/DELETE /v1/deployments (the list: ?state=active|closed&skip&limit, each with its on-chain manifest
 * version as `hash`), GET /v1/bids, POST /v1/leases, POST /v1/certificates, GET /v1/providers/{a},
 * GET /v1/gpu-prices. SDLs are parsed with akashjs like the real one does; leases go to FakeAkashProviders.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { CertificateManager } from '@akashnetwork/akashjs/build/certificates/certificate-manager/CertificateManager';
import { SDL } from '@akashnetwork/akashjs/build/sdl/SDL/SDL';
import { endLeases, readBody, send, type FakeAkashProvider } from './akash-provider';
import { FaultyServer } from './faults';

export interface BidPlan {
  provider: string;
  /** Price per block, in the SDL's denom. */
  amount: number;
  /** The bid shows up this long after the deployment (default 0). */
  afterMs?: number;
}

export interface ConsoleScenario {
  apiKey: string;
  owner: string;
  providers: FakeAkashProvider[];
  bids: BidPlan[];
  /** The provider closes the lease this long after the manifest arrived (a lease that dies). */
  leaseDiesAfterMs?: number;
  gpuModels?: { vendor: string; model: string; available: number; med: number }[];
}

interface Lease {
  provider: string;
  gseq: number;
  oseq: number;
  state: string;
  price: { denom: string; amount: string };
  createdAt: string;
}

interface Deployment {
  dseq: string;
  sdl: string;
  /** The manifest version the deployment commits on chain, base64 (as the Console serves `hash`). */
  hash: string;
  /** Its groups' names, as the chain has them (the SDL's placement names). */
  groups: string[];
  denom: string;
  state: 'active' | 'closed';
  createdMs: number;
  leases: Lease[];
}

export class FakeAkashConsole extends FaultyServer {
  readonly requests: { method: string; path: string; headers: Record<string, string | string[] | undefined>; body: string }[] = [];
  readonly deployments = new Map<string, Deployment>();
  private server: http.Server | undefined;
  private nextDseq = 1000;
  private timers: NodeJS.Timeout[] = [];
  private certificate: ReturnType<CertificateManager['generatePEM']> | undefined;
  url = '';

  constructor(readonly scenario: ConsoleScenario) {
    super();
  }

  async start(): Promise<void> {
    // The certificate is made before the fake listens: akashjs makes it synchronously (pure-JS key generation, seconds
    // on a busy 2-core machine), and made per request it blocked the event loop past the client's 5 s request timeout.
    this.certificate = new CertificateManager().generatePEM(this.scenario.owner);
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => send(res, 500, { message: (err as Error).message }));
    });
    this.url = await this.listenWith(this.server, '127.0.0.1');
  }

  /** The provider loses the deployment's lease now (closed on chain, its container gone); the deployment stays. */
  loseLease(dseq: string): void {
    const d = this.deployments.get(dseq);
    if (d) endLeases(d.leases, dseq, this.scenario.providers);
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.faults.clear();
    await this.up();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }

  /** Deployments not closed. */
  get open(): string[] {
    return [...this.deployments.values()].filter((d) => d.state === 'active').map((d) => d.dseq);
  }

  private provider(address: string): FakeAkashProvider | undefined {
    return this.scenario.providers.find((p) => p.address === address);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://console');
    this.requests.push({ method: req.method ?? '', path: url.pathname, headers: req.headers, body });
    if (await this.faults.gate(req, res)) return;
    if (url.pathname === '/v1/gpu-prices') return send(res, 200, this.gpuPrices());
    if (req.headers['x-api-key'] !== this.scenario.apiKey) return send(res, 401, { error: 'Unauthorized', message: 'Invalid API key' });
    const json = (): Record<string, unknown> => (body ? (JSON.parse(body) as Record<string, unknown>) : {});

    if (url.pathname === '/v1/deployments' && req.method === 'POST') {
      const data = json().data as { sdl?: string; deposit?: number } | undefined;
      if (!data?.sdl) return send(res, 400, { message: 'data.sdl is required' });
      let sdl: SDL;
      try {
        sdl = SDL.fromString(data.sdl, 'beta3');
      } catch (err) {
        return send(res, 400, { message: `Invalid SDL: ${(err as Error).message}` });
      }
      const dseq = String(this.nextDseq++);
      const denom = String(sdl.groups()[0]?.resources[0]?.price?.denom ?? 'uakt');
      const hash = Buffer.from(await sdl.manifestVersion()).toString('base64');
      const groups = sdl.groups().map((g) => String(g.name));
      this.deployments.set(dseq, { dseq, sdl: data.sdl, hash, groups, denom, state: 'active', createdMs: Date.now(), leases: [] });
      await this.faults.created();
      return send(res, 200, { data: { dseq, manifest: sdl.manifestSortedJSON(), signTx: { code: 0, transactionHash: 'AB', rawLog: '' } } });
    }
    if (url.pathname === '/v1/deployments' && req.method === 'GET') {
      // The account's deployments in one state (active by default), oldest first, paged by skip and limit.
      const state = url.searchParams.get('state') ?? 'active';
      const skip = Number(url.searchParams.get('skip') ?? 0);
      const limit = Number(url.searchParams.get('limit') ?? 1000);
      if (!['active', 'closed'].includes(state) || !(skip >= 0) || !(limit >= 1)) return send(res, 400, { message: 'invalid query' });
      const all = [...this.deployments.values()].filter((d) => d.state === state);
      const page = all.slice(skip, skip + limit).map((d) => ({ ...this.describe(d, false), name: null }));
      return send(res, 200, { data: { deployments: page, pagination: { total: all.length, skip, limit, hasMore: skip + limit < all.length } } });
    }
    const one = /^\/v1\/deployments\/(\d+)$/.exec(url.pathname);
    if (one) {
      const d = this.deployments.get(one[1]!);
      if (!d) return send(res, 404, { message: 'Deployment not found' });
      if (req.method === 'GET') return send(res, 200, { data: { ...this.describe(d), consoleSettings: null } });
      if (req.method === 'DELETE') {
        this.close(d);
        return send(res, 200, { data: { success: true } });
      }
    }
    if (url.pathname === '/v1/bids' && req.method === 'GET') {
      const d = this.deployments.get(url.searchParams.get('dseq') ?? '');
      if (!d) return send(res, 404, { message: 'Deployment not found' });
      return send(res, 200, { data: this.bidsOf(d) });
    }
    if (url.pathname === '/v1/certificates' && req.method === 'POST') {
      const pem = this.certificate!;
      return send(res, 200, { data: { certPem: pem.cert, pubkeyPem: pem.publicKey, encryptedKey: pem.privateKey } });
    }
    if (url.pathname === '/v1/leases' && req.method === 'POST') {
      const b = json() as {
        manifest?: string;
        certificate?: { certPem: string; keyPem: string };
        leases?: { dseq: string; gseq: number; oseq: number; provider: string }[];
      };
      const want = b.leases?.[0];
      const d = want ? this.deployments.get(String(want.dseq)) : undefined;
      if (!want || !d || d.state !== 'active' || !b.manifest) return send(res, 400, { message: 'bad lease request' });
      const bid = this.bidsOf(d).find((x) => x.bid.id.provider === want.provider);
      const provider = this.provider(want.provider);
      if (!bid || !provider) return send(res, 400, { message: 'no such bid' });
      if (!d.leases.some((l) => l.provider === want.provider && l.state === 'active')) {
        d.leases.push({
          provider: want.provider,
          gseq: want.gseq,
          oseq: want.oseq,
          state: 'active',
          price: bid.bid.price,
          createdAt: String(Math.floor(Date.now() / 1000)),
        });
      }
      provider.expectLease({ owner: this.scenario.owner, dseq: d.dseq, gseq: want.gseq, oseq: want.oseq });
      await provider.acceptManifest(d.dseq, JSON.parse(b.manifest) as unknown);
      const dies = this.scenario.leaseDiesAfterMs;
      if (dies !== undefined) {
        this.timers.push(setTimeout(() => this.loseLease(d.dseq), dies));
      }
      return send(res, 200, { data: this.describe(d) });
    }
    const prov = /^\/v1\/providers\/(akash1[a-z0-9]+)$/.exec(url.pathname);
    if (prov) {
      const p = this.provider(prov[1]!);
      if (!p) return send(res, 404, { message: 'Provider not found' });
      return send(res, 200, { owner: p.address, hostUri: p.url, attributes: [] });
    }
    return send(res, 404, { message: `no route ${req.method} ${url.pathname}` });
  }

  private bidsOf(
    d: Deployment,
  ): {
    bid: {
      id: { owner: string; dseq: string; gseq: number; oseq: number; provider: string; bseq: number };
      state: string;
      price: { denom: string; amount: string };
      created_at: string;
    };
  }[] {
    if (d.state !== 'active' || d.leases.length) return [];
    const age = Date.now() - d.createdMs;
    return this.scenario.bids
      .filter((b) => age >= (b.afterMs ?? 0))
      .map((b) => ({
        bid: {
          id: { owner: this.scenario.owner, dseq: d.dseq, gseq: 1, oseq: 1, provider: b.provider, bseq: 0 },
          state: 'open',
          price: { denom: d.denom, amount: b.amount.toFixed(18) },
          created_at: '100',
        },
      }));
  }

  /** A deployment as the Console describes it; list items carry no lease status. */
  private describe(d: Deployment, withStatus = true): Record<string, unknown> {
    return {
      deployment: { id: { owner: this.scenario.owner, dseq: d.dseq }, state: d.state, hash: d.hash, created_at: '100' },
      groups: d.groups.map((name, i) => ({ group_id: { owner: this.scenario.owner, dseq: d.dseq, gseq: i + 1 }, state: d.state === 'active' ? 'open' : 'closed', group_spec: { name } })),
      leases: d.leases.map((l) => ({
        id: { owner: this.scenario.owner, dseq: d.dseq, gseq: l.gseq, oseq: l.oseq, provider: l.provider, bseq: 0 },
        state: l.state,
        price: l.price,
        created_at: l.createdAt,
        closed_on: '0',
        ...(withStatus && { status: l.state === 'active' ? (this.provider(l.provider)?.statusOf(d.dseq) ?? null) : null }),
      })),
      escrow_account: {
        id: { scope: 'deployment', xid: `${this.scenario.owner}/${d.dseq}` },
        state: { owner: this.scenario.owner, state: 'open', transferred: [], settled_at: '0', funds: [], deposits: [] },
      },
    };
  }

  private close(d: Deployment): void {
    d.state = 'closed';
    for (const l of d.leases) {
      l.state = 'closed';
      this.provider(l.provider)?.dropLease(d.dseq);
    }
  }

  private gpuPrices(): unknown {
    const models = (this.scenario.gpuModels ?? []).map((m) => ({
      vendor: m.vendor,
      model: m.model,
      ram: '80Gi',
      interface: 'PCIe',
      availability: { total: m.available + 2, available: m.available },
      providerAvailability: { total: 3, available: 1 },
      price: { currency: 'USD', min: m.med / 2, max: m.med * 2, avg: m.med, weightedAverage: m.med, med: m.med },
    }));
    return { availability: { total: 10, available: 4 }, models };
  }
}
