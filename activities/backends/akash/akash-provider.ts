/**
 * An Akash provider's own API, over mutual TLS with the deployment owner's certificate (the one on chain): the
 * manifest PUT, lease status, and container logs over its WebSocket. Shapes as the provider serves them
 * (akash-network/provider gateway/rest).
 */
import { z } from 'zod';
import { ApiClient, isStatus, type TlsOptions } from '../remote/remote-http';
import { wsCollect } from '../remote/remote-ws';

export interface LeaseRef {
  owner: string;
  dseq: string;
  gseq: number;
  oseq: number;
  provider: string;
}

export const leaseServiceStatusSchema = z.object({
  name: z.string(),
  available: z.number().optional(),
  total: z.number().optional(),
  uris: z.array(z.string()).nullable().optional(),
  replicas: z.number().optional(),
  ready_replicas: z.number().optional(),
  available_replicas: z.number().optional(),
});

export const leaseStatusSchema = z.object({
  services: z.record(z.string(), leaseServiceStatusSchema).nullable().default({}),
  forwarded_ports: z
    .record(z.string(), z.array(z.object({ host: z.string().optional(), port: z.number(), externalPort: z.number(), proto: z.string().optional() })))
    .nullable()
    .default({}),
});
export type LeaseStatus = z.output<typeof leaseStatusSchema>;

const logMessageSchema = z.object({ name: z.string().optional(), message: z.string() });

/** How to reach a service's port 80 (global HTTP) or a forwarded port, as a host[:port] the agent answers on. */
export function serviceUri(status: LeaseStatus, service: string, containerPort: number): string | undefined {
  const svc = status.services?.[service];
  const uri = svc?.uris?.[0];
  if (uri) return uri;
  const fwd = status.forwarded_ports?.[service]?.find((p) => p.port === containerPort);
  return fwd?.host ? `${fwd.host}:${fwd.externalPort}` : undefined;
}

export function serviceReady(status: LeaseStatus, service: string): boolean {
  const svc = status.services?.[service];
  return (svc?.available_replicas ?? svc?.available ?? 0) > 0;
}

export class ProviderClient {
  private readonly api: ApiClient;
  constructor(
    readonly hostUri: string,
    private readonly tls: TlsOptions,
    private readonly timeoutMs: number,
  ) {
    this.api = new ApiClient({ service: `Akash provider ${new URL(hostUri).host}`, baseUrl: hostUri, timeoutMs, tls });
  }

  /** PUT /deployment/{dseq}/manifest: idempotent on the provider's side. */
  async sendManifest(dseq: string, manifestJson: string): Promise<void> {
    await this.api.send('PUT', `deployment/${dseq}/manifest`, { json: JSON.parse(manifestJson) as unknown });
  }

  /** The lease's status, or 'not-found' when the provider holds no such lease (or no manifest for it yet). */
  async leaseStatus(l: LeaseRef): Promise<LeaseStatus | 'not-found'> {
    try {
      return await this.api.json('GET', `lease/${l.dseq}/${l.gseq}/${l.oseq}/status`, leaseStatusSchema);
    } catch (err) {
      if (isStatus(err, 404)) return 'not-found';
      throw err;
    }
  }

  /**
   * Up to `max` log lines after the first `skip` (the provider has no offsets: it replays from the start, so the
   * cursor is a line count). Does not follow.
   */
  async logs(l: LeaseRef, service: string, skip: number, max: number): Promise<string[]> {
    const url = new URL(`lease/${l.dseq}/${l.gseq}/${l.oseq}/logs`, this.hostUri.endsWith('/') ? this.hostUri : `${this.hostUri}/`);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('follow', 'false');
    url.searchParams.set('tail', '-1');
    url.searchParams.set('service', service);
    const messages = await wsCollect(url.toString(), { tls: this.tls, timeoutMs: this.timeoutMs, maxMessages: skip + max });
    return messages
      .slice(skip)
      .map((m) => {
        const parsed = logMessageSchema.safeParse(safeJson(m));
        return parsed.success ? parsed.data.message.replace(/\n$/, '') : m;
      });
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
