/**
 * A local Akash provider: its gateway's REST and WebSocket shapes over HTTPS with client certificates (mTLS), as
 * akash-network/provider serves them — PUT /deployment/{dseq}/manifest, GET /lease/{dseq}/{gseq}/{oseq}/status,
 * WS /lease/{dseq}/{gseq}/{oseq}/logs. A manifest starts its first service as a FakeContainer.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { CertificateManager } from '@akashnetwork/akashjs/build/certificates/certificate-manager/CertificateManager';
import WebSocket from 'ws';
import { z } from 'zod';
import { FakeContainer, type Image } from './container';
import { Faults } from './faults';

const manifestSchema = z.array(
  z.object({
    name: z.string(),
    services: z.array(
      z.object({
        name: z.string(),
        image: z.string(),
        command: z.array(z.string()).nullable(),
        args: z.array(z.string()).nullable(),
        env: z.array(z.string()).nullable(),
      }),
    ),
  }),
);

export interface ProviderLease {
  owner: string;
  dseq: string;
  gseq: number;
  oseq: number;
}

interface Held extends ProviderLease {
  service?: string;
  container?: FakeContainer;
  manifest?: unknown;
}

export class FakeAkashProvider {
  readonly certificate: { cert: string; publicKey: string; privateKey: string };
  /** Common names of the client certificates seen. */
  readonly clientNames: string[] = [];
  /** Every manifest received (a PUT, or handed over by the Console), in order. */
  readonly manifests: { dseq: string; body: unknown }[] = [];
  private readonly leases = new Map<string, Held>();
  private server: https.Server | undefined;
  private readonly wss = new WebSocket.Server({ noServer: true });
  /** Fault injection on the gateway's REST (test/fakes/faults.ts). */
  readonly faults = new Faults();
  url = '';

  constructor(
    readonly address: string,
    private readonly images: Record<string, Image>,
  ) {
    this.certificate = new CertificateManager().generatePEM(address);
  }

  async start(): Promise<void> {
    const server = https.createServer(
      { cert: this.certificate.cert, key: this.certificate.privateKey, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => send(res, 500, { message: (err as Error).message }));
      },
    );
    server.on('upgrade', (req: IncomingMessage, socket, head) => {
      const m = /^\/lease\/(\d+)\/(\d+)\/(\d+)\/logs/.exec(req.url ?? '');
      const held = m ? this.leases.get(m[1]!) : undefined;
      if (!held || !this.authorized(req, held)) {
        socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        for (const line of held.container?.lines ?? []) ws.send(JSON.stringify({ name: `${held.service ?? 'svc'}-0`, message: line }));
        ws.close();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = server.address();
    this.url = `https://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const l of this.leases.values()) l.container?.kill();
    this.wss.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }

  /** The market made a lease with this provider: it will accept its manifest. */
  expectLease(l: ProviderLease): void {
    if (!this.leases.has(l.dseq)) this.leases.set(l.dseq, { ...l });
  }

  /** The lease is gone (closed on chain, or the provider died): its container stops. */
  dropLease(dseq: string): void {
    this.leases.get(dseq)?.container?.kill();
    this.leases.delete(dseq);
  }

  container(dseq: string): FakeContainer | undefined {
    return this.leases.get(dseq)?.container;
  }

  get running(): number {
    return [...this.leases.values()].filter((l) => l.container?.running).length;
  }

  /** The manifest as the Console hands it over (no mTLS between the Console and the provider here). */
  async acceptManifest(dseq: string, body: unknown): Promise<void> {
    const held = this.leases.get(dseq);
    if (!held) throw new Error(`no lease for deployment ${dseq}`);
    this.manifests.push({ dseq, body });
    await this.run(held, body);
  }

  /** The lease's status as the Console reports it with the lease. */
  statusOf(dseq: string): unknown {
    const held = this.leases.get(dseq);
    return held?.container ? leaseStatus(held) : null;
  }

  private authorized(req: IncomingMessage, held: Held): boolean {
    const cert = (req.socket as TLSSocket).getPeerCertificate();
    const cn = cert?.subject?.CN;
    if (typeof cn === 'string') this.clientNames.push(cn);
    return cn === held.owner;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (await this.faults.gate(req, res)) return;
    const url = new URL(req.url ?? '/', 'https://provider');
    const manifest = /^\/deployment\/(\d+)\/manifest$/.exec(url.pathname);
    if (manifest && req.method === 'PUT') {
      const held = this.leases.get(manifest[1]!);
      if (!held) return send(res, 404, { message: 'no lease for deployment' });
      if (!this.authorized(req, held)) return send(res, 401, { message: 'client certificate does not belong to the lease owner' });
      const body = JSON.parse(await readBody(req)) as unknown;
      this.manifests.push({ dseq: held.dseq, body });
      await this.run(held, body);
      return send(res, 200, {});
    }
    const status = /^\/lease\/(\d+)\/(\d+)\/(\d+)\/status$/.exec(url.pathname);
    if (status && req.method === 'GET') {
      const held = this.leases.get(status[1]!);
      if (!held) return send(res, 404, { message: 'lease not found' });
      if (!this.authorized(req, held)) return send(res, 401, { message: 'unauthorized' });
      if (!held.container) return send(res, 404, { message: 'manifest not received' });
      return send(res, 200, leaseStatus(held));
    }
    if (url.pathname === '/status') return send(res, 200, { cluster: {}, bidengine: {}, manifest: {} });
    return send(res, 404, { message: `no route ${req.method} ${url.pathname}` });
  }

  private async run(held: Held, body: unknown): Promise<void> {
    if (held.container) return; // a manifest sent again changes nothing here
    const groups = manifestSchema.parse(body);
    const svc = groups[0]?.services[0];
    if (!svc) throw new Error('manifest has no service');
    const image = this.images[svc.image];
    if (!image) throw new Error(`image ${svc.image} is not known to this provider`);
    const env = Object.fromEntries((svc.env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    held.service = svc.name;
    held.manifest = body;
    held.container = await FakeContainer.start([...(svc.command ?? []), ...(svc.args ?? [])], env, image);
  }
}

function leaseStatus(held: Held): unknown {
  const up = held.container?.running ? 1 : 0;
  const name = held.service ?? 'svc';
  return {
    services: {
      [name]: { name, available: up, total: 1, uris: [`127.0.0.1:${held.container?.port ?? 0}`], observed_generation: 1, replicas: 1, updated_replicas: 1, ready_replicas: up, available_replicas: up },
    },
    forwarded_ports: {},
    ips: {},
  };
}

/** Leases of a deployment end (closed on chain): each provider that held one stops its container. */
export function endLeases(leases: { provider: string; state: string }[], dseq: string, providers: readonly FakeAkashProvider[]): void {
  for (const l of leases) {
    l.state = 'closed';
    providers.find((p) => p.address === l.provider)?.dropLease(dseq);
  }
}

export function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
