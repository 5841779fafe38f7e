/**
 * The `prime-intellect` backend (docs/architecture.md §5): a job attempt is one Prime Intellect GPU pod, started
 * from the operator's custom template for the spec's trainer image, through its REST API
 * (https://api.primeintellect.ai, Authorization: Bearer <key>; docs.primeintellect.ai/api-reference):
 *
 *   quote  → GET  /api/v1/availability/gpus   the cheapest offer in stock for the GPU type and count, under the cap
 *   submit → POST /api/v1/pods/                {pod: {name, cloudId, gpuType, gpuCount, …, maxPrice, customTemplateId,
 *                                               envVars}, provider: {type}}; named forge-<tag>-<job>-<attempt>, so a
 *                                               retried submit finds its pod (GET /api/v1/pods/) instead of renting two
 *   status → GET  /api/v1/pods/{id}            PROVISIONING → PENDING; ACTIVE → the forge agent in the container
 *                                               (remote-agent.ts) at the pod's IP and mapped port; ERROR, a pod that
 *                                               vanished (404) or was terminated elsewhere → LOST
 *   logs   → GET  /api/v1/pods/{id}/log
 *   close  → DELETE /api/v1/pods/{id}
 *
 * The template's start command must be `sh -c 'eval "$FORGE_AGENT_BOOT"'` (AGENT_BOOT_COMMAND): the pod's env
 * carries the agent and the trainer command. Cost = the pod's priceHr × time since it was created.
 * Not done: Prime Intellect's hosted RL runs (rl jobs run as pods like the others).
 */
import { z } from 'zod';
import type { PrimeIntellectBackendConfig } from '../../../common/config';
import type { TrainingJobSpec } from '../../../jobspec/schema';
import type { SignedSpec } from '../../../jobspec/signed-spec';
import { AgentClient, agentLogLines, collectFromAgent, decodeLineCursor, encodeLineCursor, failedStatus, statusFromAgent, type CollectProgress } from '../remote/remote-agent';
import { agentTls } from '../remote/agent-tls';
import { agentBootLine, agentEnv, agentToken } from '../remote/remote-agent-script';
import { ApiClient, backendErrorFor, HttpStatusError, isStatus, NetworkError } from '../remote/remote-http';
import { AttemptStore, costBetween, readSecret } from '../remote/remote-state';
import {
  agentUrl,
  availabilitySchema,
  ended,
  LIST_MAX_PAGES,
  LIST_PAGE,
  logSchema,
  parsePodName,
  PI_GPU_TYPES,
  podListSchema,
  podName,
  podSchema,
  priceOf,
  toLines,
  type Offer,
  type Pod,
} from './pi-api';
import {
  BackendError,
  MAX_LOG_LINES,
  type Backend,
  type DeploymentRef,
  type DeploymentStatus,
  type HealthReport,
  type LogChunk,
  type OpenDeployment,
  type Quote,
  type SubmitOptions,
} from '../types';
import { isOurs } from '../installation';


const recordSchema = z.object({
  podId: z.string(),
  name: z.string(),
  priceHr: z.number(),
  createdAt: z.string(),
  closed: z.boolean().default(false),
});
const refDataSchema = z.object({ pod_id: z.string(), name: z.string(), price_hr: z.number(), created_at: z.string() });
type RefData = z.output<typeof refDataSchema>;

export class PrimeIntellectBackend implements Backend {
  readonly kind = 'prime-intellect';
  private readonly api: ApiClient;
  private readonly store: AttemptStore<typeof recordSchema>;
  private key = '';

  constructor(
    readonly name: string,
    private readonly config: PrimeIntellectBackendConfig,
    private readonly home: string,
    /** This installation's tag (installation.ts): in each pod's name, and the only tagged pods reaped. */
    private readonly installation?: string,
    /** Tags of this installation's earlier orchestrator keys (config `reaper.earlier_tags`): their pods are reaped too. */
    private readonly earlierTags: readonly string[] = [],
  ) {
    this.store = new AttemptStore(home, name, recordSchema);
    this.api = new ApiClient({
      service: 'Prime Intellect',
      baseUrl: `${config.api_url.replace(/\/+$/, '')}/api/v1/`,
      timeoutMs: config.request_timeout_ms,
      headers: async () => ({ authorization: `Bearer ${(this.key = await this.apiKey())}` }),
      secrets: () => [this.key],
    });
  }

  private apiKey(): Promise<string> {
    return readSecret(this.config.api_key, this.config.api_key_file, `backends.${this.name}.api_key`);
  }

  async health(): Promise<HealthReport> {
    try {
      const list = await this.api.json('GET', 'pods/', podListSchema, { query: { offset: 0, limit: 1 } });
      const off = this.config.enabled ? '' : ' (disabled: admits no new jobs)';
      return { ok: true, detail: `${new URL(this.config.api_url).host} accepts the API key; ${list.total_count ?? list.data.length} pod(s); price cap $${this.config.hourly_usd}/h${off}` };
    } catch (err) {
      return { ok: false, detail: (backendErrorFor(err, `backend ${this.name}`) as Error).message };
    }
  }

  async quote(spec: TrainingJobSpec): Promise<Quote> {
    const cap = this.config.hourly_usd;
    if (!this.config.enabled) return { available: false, hourlyUsd: cap, detail: `backend "${this.name}" is disabled in the operator config` };
    this.templateFor(spec);
    const max = this.config.max_concurrent;
    if (max !== undefined) {
      const open = await this.store.countOpen(spec.job_id);
      if (open >= max) return { available: false, hourlyUsd: cap, detail: `${open} of max_concurrent ${max} pods open` };
    }
    let found: { offer?: Offer; seen: Offer[] };
    try {
      found = await this.bestOffer(spec, cap);
    } catch (err) {
      throw backendErrorFor(err, `Prime Intellect (${this.name}) availability`);
    }
    const { offer, seen } = found;
    if (!offer) return { available: false, hourlyUsd: cap, detail: this.noOffer(spec, cap, seen) };
    return { available: true, hourlyUsd: priceOf(offer), detail: `${offer.gpuType}×${offer.gpuCount} from ${offer.provider ?? offer.cloudId}` };
  }

  async submit(signed: SignedSpec, attempt: number, options: SubmitOptions = {}): Promise<DeploymentRef> {
    const { spec } = signed;
    if (!Number.isInteger(attempt) || attempt < 1) throw new BackendError('REJECTED', `attempt must be an integer >= 1, got ${attempt}`);
    const kept = await this.store.read(spec.job_id, attempt);
    if (kept) return this.refFor(spec.job_id, attempt, kept);
    const name = podName(spec.job_id, attempt, this.installation);
    try {
      // A pod created by a submit that died before writing its record.
      const adopted = (await this.api.json('GET', 'pods/', podListSchema, { query: { offset: 0, limit: 100 } })).data.find((p) => p.name === name && !ended(p.status));
      if (adopted) return this.remember(spec.job_id, attempt, adopted);
      if (!this.config.enabled) throw new BackendError('NO_CAPACITY', `backend "${this.name}" is disabled in the operator config`);
      const cap = Math.min(this.config.hourly_usd, options.maxHourlyUsd ?? Infinity);
      const template = this.templateFor(spec);
      const { offer, seen } = await this.bestOffer(spec, cap);
      if (!offer) throw new BackendError('NO_CAPACITY', this.noOffer(spec, cap, seen));
      const key = await this.apiKey();
      const token = agentToken(key, this.name, spec.job_id, attempt);
      const tls = this.config.agent_tls ? agentTls(key, this.name, spec.job_id, attempt) : undefined;
      const env = {
        ...agentEnv({
          signed,
          attempt,
          token,
          port: this.config.agent_port,
          operatorEnv: template.env,
          ...(tls && { tls }),
          ...(options.evalRun && { evalRun: options.evalRun }),
        }),
        FORGE_AGENT_BOOT: agentBootLine(template.command),
      };
      const r = spec.resources;
      const pod = await this.api.json('POST', 'pods/', podSchema, {
        json: {
          pod: {
            name,
            cloudId: offer.cloudId,
            gpuType: offer.gpuType,
            socket: this.config.socket ?? offer.socket ?? 'PCIe',
            gpuCount: offer.gpuCount,
            diskSize: Math.ceil(r.storage_gb),
            vcpus: Math.ceil(r.cpus),
            memory: Math.ceil(r.ram_gb),
            maxPrice: cap,
            customTemplateId: template.templateId,
            ...(offer.dataCenter && { dataCenterId: offer.dataCenter }),
            ...(offer.country && { country: offer.country }),
            ...((this.config.security ?? offer.security) && { security: this.config.security ?? offer.security }),
            envVars: Object.entries(env).map(([key, value]) => ({ key, value })),
          },
          provider: { type: offer.provider ?? 'unknown' },
        },
      });
      return this.remember(spec.job_id, attempt, { ...pod, priceHr: pod.priceHr ?? priceOf(offer) });
    } catch (err) {
      throw backendErrorFor(err, `Prime Intellect (${this.name}) create pod`);
    }
  }

  async status(ref: DeploymentRef): Promise<DeploymentStatus> {
    const d = this.refData(ref);
    try {
      return await this.statusOf(ref, d);
    } catch (err) {
      throw backendErrorFor(err, `Prime Intellect (${this.name}) pod ${d.pod_id}`);
    }
  }

  async logs(ref: DeploymentRef, cursor?: string): Promise<LogChunk> {
    const d = this.refData(ref);
    const skip = decodeLineCursor('pi', cursor);
    let text: z.output<typeof logSchema>;
    try {
      text = await this.api.json('GET', `pods/${d.pod_id}/log`, logSchema);
    } catch (err) {
      if (err instanceof NetworkError || err instanceof HttpStatusError) return { lines: [], cursor: encodeLineCursor('pi', skip) };
      throw err;
    }
    const all = toLines(text);
    const lines = all.slice(skip, skip + MAX_LOG_LINES);
    return { lines: await agentLogLines(lines, async () => agentToken(await this.apiKey(), this.name, ref.jobId, ref.attempt)), cursor: encodeLineCursor('pi', skip + lines.length) };
  }

  /** From the pod's agent (the pod stays open until the commit): any replica can run it. */
  async collectArtifacts(ref: DeploymentRef, dir: string, onProgress?: (p: CollectProgress) => void): Promise<string[]> {
    const d = this.refData(ref);
    try {
      const agent = async (): Promise<AgentClient | undefined> => {
        const pod = await this.api.json('GET', `pods/${d.pod_id}`, podSchema);
        return pod.status.toUpperCase() === 'ACTIVE' ? this.agentOf(ref, pod) : undefined;
      };
      return await collectFromAgent(agent, { home: this.home, ref, dir, ...(onProgress && { onProgress }) });
    } catch (err) {
      throw backendErrorFor(err, `Prime Intellect (${this.name}) outputs of pod ${d.pod_id}`);
    }
  }

  /** The pod's agent; with agent_tls over https, pinned to the attempt's derived certificate. */
  private async agentOf(ref: DeploymentRef, pod: Pod): Promise<AgentClient | undefined> {
    const tls = this.config.agent_tls;
    const url = agentUrl(pod, this.config.agent_port, tls);
    if (!url) return undefined;
    const key = await this.apiKey();
    const cert = tls ? agentTls(key, this.name, ref.jobId, ref.attempt).cert : undefined;
    return new AgentClient(url, agentToken(key, this.name, ref.jobId, ref.attempt), this.config.request_timeout_ms, cert);
  }

  async close(ref: DeploymentRef): Promise<void> {
    const d = this.refData(ref);
    const rec = await this.store.read(ref.jobId, ref.attempt);
    if (rec) await this.store.write(ref.jobId, ref.attempt, { ...rec, closed: true });
    try {
      await this.api.send('DELETE', `pods/${d.pod_id}`);
    } catch (err) {
      if (!isStatus(err, 404)) throw backendErrorFor(err, `Prime Intellect (${this.name}) delete pod ${d.pod_id}`);
    }
    await this.store.markClosed(ref.jobId, ref.attempt);
  }

  /** The reaper: the account's pods not ended whose name is this installation's forge attempt's (pi-api.ts podName). */
  async listOpen(): Promise<OpenDeployment[]> {
    const open: OpenDeployment[] = [];
    try {
      for (let offset = 0, page = 0; page < LIST_MAX_PAGES; page++) {
        const list = await this.api.json('GET', 'pods/', podListSchema, { query: { offset, limit: LIST_PAGE } });
        for (const pod of list.data) {
          const mark = pod.name ? parsePodName(pod.name) : undefined;
          // Another installation's pod on a shared account is its reaper's to close, never ours.
          if (!mark || ended(pod.status) || !isOurs(mark.tag, this.installation, this.earlierTags)) continue;
          const createdAt =
            pod.createdAt ?? (await this.store.read(mark.jobId, mark.attempt).catch(() => undefined))?.createdAt ?? new Date(0).toISOString();
          const rec = { podId: pod.id, name: pod.name ?? '', priceHr: pod.priceHr ?? 0, createdAt, closed: false };
          open.push({ ref: this.refFor(mark.jobId, mark.attempt, rec), jobId: mark.jobId, attempt: mark.attempt, createdAt });
        }
        offset += list.data.length;
        if (list.data.length < LIST_PAGE || (list.total_count !== undefined && offset >= list.total_count)) break;
      }
    } catch (err) {
      throw backendErrorFor(err, `Prime Intellect (${this.name}) list pods`);
    }
    return open;
  }

  // ---- internals --------------------------------------------------------------------------------------------------

  private templateFor(spec: TrainingJobSpec): { templateId: string; command: string[]; env: Record<string, string> } {
    const t = this.config.trainers[spec.trainer.image];
    if (!t?.template_id) {
      throw new BackendError(
        'REJECTED',
        `backend ${this.name}: no Prime Intellect template configured for trainer image "${spec.trainer.image}" (add backends.${this.name}.trainers["${spec.trainer.image}"].template_id)`,
      );
    }
    return { templateId: t.template_id, command: t.command, env: t.env };
  }

  gpuType(spec: TrainingJobSpec): string {
    const r = spec.resources;
    if (r.gpus === 0 || !r.gpu_type) return 'CPU_NODE';
    const configured = this.config.gpu_types[r.gpu_type];
    if (configured) return configured;
    const key = r.gpu_type.toLowerCase().replace(/^[a-z]+\//, '').replace(/[\s_]+/g, '');
    if (key === 'a100' && r.gpu_mem_gb !== undefined && r.gpu_mem_gb <= 40) return 'A100_40GB';
    return PI_GPU_TYPES[key] ?? r.gpu_type.toUpperCase();
  }

  /** The cheapest in-stock offer that fits the job's resources and the cap (and the spec's region unless "any"). */
  private async bestOffer(spec: TrainingJobSpec, cap: number): Promise<{ offer?: Offer; seen: Offer[] }> {
    const r = spec.resources;
    const region = spec.backend.region;
    const res = await this.api.json('GET', 'availability/gpus', availabilitySchema, {
      query: { gpu_type: this.gpuType(spec), gpu_count: Math.max(1, r.gpus), ...(region !== 'any' && { regions: region }), page: 1, page_size: 100 },
    });
    const fits = (o: Offer): boolean =>
      o.stockStatus !== 'Unavailable' &&
      o.gpuCount >= Math.max(1, r.gpus) &&
      (o.vcpu?.maxCount ?? Infinity) >= r.cpus &&
      (o.memory?.maxCount ?? Infinity) >= r.ram_gb &&
      (o.disk?.maxCount ?? Infinity) >= r.storage_gb;
    const candidates = res.items.filter(fits).sort((a, b) => priceOf(a) - priceOf(b) || a.cloudId.localeCompare(b.cloudId));
    const offer = candidates.find((o) => priceOf(o) <= cap);
    return { ...(offer && { offer }), seen: candidates };
  }

  private noOffer(spec: TrainingJobSpec, cap: number, seen: Offer[]): string {
    const what = `${this.gpuType(spec)}×${Math.max(1, spec.resources.gpus)}`;
    if (!seen.length) return `no ${what} offer in stock on Prime Intellect${spec.backend.region !== 'any' ? ` in ${spec.backend.region}` : ''}`;
    return `no ${what} offer at or under the cap $${cap}/h on Prime Intellect (cheapest $${priceOf(seen[0]!).toFixed(2)}/h)`;
  }

  private async remember(jobId: string, attempt: number, pod: Pod): Promise<DeploymentRef> {
    const rec = {
      podId: pod.id,
      name: pod.name ?? podName(jobId, attempt, this.installation),
      priceHr: pod.priceHr ?? 0,
      createdAt: pod.createdAt ?? new Date().toISOString(),
    };
    await this.store.write(jobId, attempt, rec);
    await this.store.markOpen(jobId, attempt);
    return this.refFor(jobId, attempt, recordSchema.parse(rec));
  }

  private refFor(jobId: string, attempt: number, rec: z.output<typeof recordSchema>): DeploymentRef {
    const data: RefData = { pod_id: rec.podId, name: rec.name, price_hr: rec.priceHr, created_at: rec.createdAt };
    return { backend: this.name, kind: this.kind, id: rec.podId, jobId, attempt, submittedAt: rec.createdAt, data: { ...data } };
  }

  private refData(ref: DeploymentRef): RefData {
    const parsed = refDataSchema.safeParse(ref.data);
    if (!parsed.success) throw new BackendError('REJECTED', `deployment ${ref.id} is not a Prime Intellect pod of this orchestrator`);
    return parsed.data;
  }

  private async statusOf(ref: DeploymentRef, d: RefData): Promise<DeploymentStatus> {
    let pod: Pod;
    const now = new Date();
    try {
      pod = await this.api.json('GET', `pods/${d.pod_id}`, podSchema);
    } catch (err) {
      if (isStatus(err, 404)) return failedStatus('LOST', `pod ${d.pod_id} vanished from Prime Intellect (404)`, costBetween(d.price_hr, d.created_at, now));
      throw err;
    }
    const costUsd = costBetween(pod.priceHr ?? d.price_hr, d.created_at, now);
    const status = pod.status.toUpperCase();
    if (status === 'ACTIVE') {
      const agent = await this.agentOf(ref, pod);
      if (!agent) return { state: 'RUNNING', costUsd, startedAt: d.created_at };
      return statusFromAgent(await agent.state(), { ready: true, base: { costUsd, startedAt: d.created_at }, platform: 'Prime Intellect' });
    }
    if (status === 'ERROR') return failedStatus('LOST', `pod ${d.pod_id} failed on Prime Intellect: ${pod.installationFailure ?? 'status ERROR'}`, costUsd);
    if (ended(status)) {
      const rec = await this.store.read(ref.jobId, ref.attempt);
      return failedStatus('LOST', `pod ${d.pod_id} is ${status}${rec?.closed ? ' (closed by the orchestrator)' : ' (not by the orchestrator)'}`, costUsd);
    }
    // PROVISIONING, PENDING, …: waiting for a machine, up to start_timeout_seconds.
    if (now.getTime() - Date.parse(d.created_at) > this.config.start_timeout_seconds * 1000) {
      await this.close(ref);
      return failedStatus('NO_CAPACITY', `pod ${d.pod_id} still ${status} after ${this.config.start_timeout_seconds} s; deleted`, costUsd);
    }
    return { state: 'PENDING', costUsd };
  }
}
