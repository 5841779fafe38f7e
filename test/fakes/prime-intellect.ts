/**
 * A local Prime Intellect API (docs.primeintellect.ai/api-reference): Bearer auth; GET /api/v1/availability/gpus,
 * POST/GET /api/v1/pods/, GET/DELETE /api/v1/pods/{id}, GET /api/v1/pods/{id}/log. A pod runs its template's start
 * command (`sh -c 'eval "$FORGE_AGENT_BOOT"'`) with its envVars as a FakeContainer, its agent port mapped.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { FakeContainer, type Image } from './container';
import { readBody, send } from './akash-provider';
import { FaultyServer } from './faults';

export interface Offer {
  cloudId: string;
  gpuType: string;
  gpuCount: number;
  price: number;
  provider?: string;
  stockStatus?: string;
}

export interface PiScenario {
  apiKey: string;
  offers: Offer[];
  /** Template id → the image its pods run. */
  templates: Record<string, Image>;
  /** Answer this many requests with 429 + Retry-After before serving normally. */
  rateLimit?: { count: number; retryAfterSeconds: number };
  /** A pod disappears (404, container killed) this long after it became ACTIVE. */
  vanishAfterMs?: number;
  /** A pod stays PROVISIONING this long. */
  provisionMs?: number;
  /**
   * The address the API listens on and pods announce as their ip, their agents bound to it (default 127.0.0.1; the
   * chaos suite's network partition runs this fake inside a network namespace).
   */
  host?: string;
  /** An API outage: while true every request is answered 503 (pods and their containers run on). */
  down?: boolean;
}

interface Pod {
  id: string;
  name: string;
  status: string;
  priceHr: number;
  createdAt: string;
  gpuName: string;
  gpuCount: number;
  container?: FakeContainer;
  env: Record<string, string>;
  template: string;
  body: unknown;
}

export class FakePrimeIntellect extends FaultyServer {
  readonly requests: { method: string; path: string; auth: string | undefined; body: string; status: number }[] = [];
  readonly pods = new Map<string, Pod>();
  private server: http.Server | undefined;
  private n = 0;
  private timers: NodeJS.Timeout[] = [];
  url = '';

  constructor(readonly scenario: PiScenario) {
    super();
  }

  async start(port = 0): Promise<void> {
    const host = this.scenario.host ?? '127.0.0.1';
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => send(res, 500, { detail: (err as Error).message }));
    });
    this.url = await this.listenWith(this.server, host, port);
  }

  /** The machine behind a pod is lost: its container dies and the pod is gone (404), as with vanishAfterMs. */
  lose(id: string): void {
    const p = this.pods.get(id);
    if (!p) return;
    p.container?.kill();
    p.status = 'GONE';
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.faults.clear();
    for (const p of this.pods.values()) p.container?.kill();
    await this.up();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }

  /** Pods neither deleted nor vanished, or whose container still runs. */
  get live(): Pod[] {
    return [...this.pods.values()].filter((p) => (p.status !== 'TERMINATED' && p.status !== 'GONE') || p.container?.running);
  }

  private reply(_req: IncomingMessage, res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const last = this.requests.at(-1);
    if (last) last.status = status;
    send(res, status, body, headers);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://pi');
    const seen = { method: req.method ?? '', path: url.pathname, auth: req.headers.authorization, body, status: 0 };
    this.requests.push(seen);
    if (await this.faults.gate(req, res)) {
      seen.status = res.statusCode;
      return;
    }
    if (this.scenario.down) return this.reply(req, res, 503, { detail: 'Service Unavailable' });
    const rl = this.scenario.rateLimit;
    if (rl && rl.count > 0) {
      rl.count--;
      return this.reply(req, res, 429, { detail: 'Too Many Requests' }, { 'retry-after': String(rl.retryAfterSeconds) });
    }
    if (req.headers.authorization !== `Bearer ${this.scenario.apiKey}`) return this.reply(req, res, 401, { detail: 'Invalid API key' });
    const path = url.pathname.replace(/\/+$/, '');

    if (path === '/api/v1/availability/gpus' && req.method === 'GET') {
      const type = url.searchParams.get('gpu_type');
      const count = Number(url.searchParams.get('gpu_count') ?? 1);
      const items = this.scenario.offers
        .filter((o) => (!type || o.gpuType === type) && o.gpuCount >= count)
        .map((o) => ({
          cloudId: o.cloudId,
          gpuType: o.gpuType,
          socket: 'PCIe',
          provider: o.provider ?? 'runpod',
          dataCenter: 'US-1',
          country: 'US',
          gpuCount: o.gpuCount,
          gpuMemory: 80,
          disk: { minCount: 10, maxCount: 1000 },
          vcpu: { maxCount: 32 },
          memory: { maxCount: 256 },
          stockStatus: o.stockStatus ?? 'Available',
          security: 'secure_cloud',
          prices: { onDemand: o.price, communityPrice: null, isVariable: false, currency: 'USD' },
          images: ['ubuntu_22_cuda_12'],
        }));
      return this.reply(req, res, 200, { items, totalCount: items.length });
    }
    if (path === '/api/v1/pods' && req.method === 'GET') {
      const data = [...this.pods.values()].map((p) => this.describe(p));
      return this.reply(req, res, 200, { total_count: data.length, offset: 0, limit: 100, data });
    }
    if (path === '/api/v1/pods' && req.method === 'POST') {
      const b = JSON.parse(body) as {
        pod?: {
          name?: string;
          cloudId?: string;
          gpuType?: string;
          gpuCount?: number;
          maxPrice?: number;
          customTemplateId?: string;
          envVars?: { key: string; value: string }[];
        };
      };
      const pod = b.pod;
      const offer = this.scenario.offers.find((o) => o.cloudId === pod?.cloudId);
      if (!pod?.name || !offer || !pod.customTemplateId) return this.reply(req, res, 422, { detail: 'invalid pod request' });
      if (pod.maxPrice !== undefined && offer.price > pod.maxPrice) return this.reply(req, res, 400, { detail: 'price above maxPrice' });
      const image = this.scenario.templates[pod.customTemplateId];
      if (!image) return this.reply(req, res, 404, { detail: 'template not found' });
      const id = `pod${++this.n}`;
      const env = Object.fromEntries((pod.envVars ?? []).map((e) => [e.key, e.value]));
      const p: Pod = { id, name: pod.name, status: 'PROVISIONING', priceHr: offer.price, createdAt: new Date().toISOString(), gpuName: offer.gpuType, gpuCount: offer.gpuCount, env, template: pod.customTemplateId, body: b };
      this.pods.set(id, p);
      this.timers.push(setTimeout(() => void this.activate(p), this.scenario.provisionMs ?? 100));
      await this.faults.created();
      return this.reply(req, res, 200, this.describe(p));
    }
    const m = /^\/api\/v1\/pods\/(pod\d+)(\/log)?$/.exec(path);
    if (m) {
      const p = this.pods.get(m[1]!);
      if (!p || p.status === 'GONE') return this.reply(req, res, 404, { detail: 'Pod not found' });
      if (m[2] && req.method === 'GET') return this.reply(req, res, 200, (p.container?.lines ?? []).join('\n'));
      if (req.method === 'GET') return this.reply(req, res, 200, this.describe(p));
      if (req.method === 'DELETE') {
        p.container?.kill();
        p.status = 'TERMINATED';
        return this.reply(req, res, 200, { status: 'TERMINATED' });
      }
    }
    return this.reply(req, res, 404, { detail: `no route ${req.method} ${url.pathname}` });
  }

  private async activate(p: Pod): Promise<void> {
    if (p.status !== 'PROVISIONING') return;
    const image = this.scenario.templates[p.template]!;
    p.container = await FakeContainer.start(['sh', '-c', 'eval "$FORGE_AGENT_BOOT"'], p.env, image, this.scenario.host);
    p.status = 'ACTIVE';
    const vanish = this.scenario.vanishAfterMs;
    if (vanish !== undefined) {
      this.timers.push(
        setTimeout(() => {
          p.container?.kill();
          p.status = 'GONE';
        }, vanish),
      );
    }
  }

  private describe(p: Pod): unknown {
    const active = p.status === 'ACTIVE';
    return {
      id: p.id,
      name: p.name,
      userId: 'u1',
      teamId: null,
      providerType: 'runpod',
      gpuName: p.gpuName,
      gpuCount: p.gpuCount,
      socket: 'PCIe',
      priceHr: p.priceHr,
      type: 'HOSTED',
      status: p.status === 'GONE' ? 'TERMINATED' : p.status,
      installationStatus: active ? 'FINISHED' : 'PENDING',
      createdAt: p.createdAt,
      ip: active ? (this.scenario.host ?? '127.0.0.1') : null,
      primePortMapping: active ? [{ internal: '8080', external: String(p.container?.port ?? 0), protocol: 'TCP', usedBy: null, description: null }] : [],
    };
  }
}
