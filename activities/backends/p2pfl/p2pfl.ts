/**
 * The `p2pfl` backend (docs/architecture.md §5): a federated finetune of the spec's base model as a P2PFL
 * experiment of N nodes, each finetuning it on its own share of the job's data with the spec's hyperparameters,
 * models gossiped and averaged (FedAvg) every round; the aggregated model, a Hugging Face model directory, is the
 * job's output (trainer/src/forge_trainer/p2pfl_experiment.py). In-memory protocol with every node in one process,
 * or gRPC, where the nodes also join `peers` (nodes of the same experiment on other hosts).
 *
 * The experiment is a process on this host under the trainer contract, so it runs exactly like the local backend's
 * trainers (detached, survives the worker, exit status, logs, artifacts, close): this backend is a LocalBackend whose
 * trainer command is the experiment runner, plus the federation settings in its env and a health check of the
 * P2PFL venv. Cost = hourly_usd × wall time, as on `local`. With `web_logger_url`, P2PFL's own web logger sends the
 * nodes' logs and metrics to the orchestrator API (client/api/routes/p2pfl.ts).
 */
import { execFile } from 'node:child_process';
import type { LocalBackendConfig, P2pflBackendConfig } from '../../../common/config';
import { p2pflWebKey } from '../../../common/p2pfl-web-key';
import type { TrainingJobSpec } from '../../../jobspec/schema';
import type { SignedSpec } from '../../../jobspec/signed-spec';
import { LocalBackend, type LocalBackendOptions } from '../local/local';
import { BackendError, type Backend, type DeploymentRef, type DeploymentStatus, type HealthReport, type LogChunk, type OpenDeployment, type Quote, type SubmitOptions } from '../types';

/** The experiment's settings, as its env (forge_trainer.p2pfl_experiment reads them). */
export function federationEnv(config: P2pflBackendConfig): Record<string, string> {
  return {
    P2PFL_NODES: String(config.nodes),
    P2PFL_ROUNDS: String(config.rounds),
    P2PFL_EPOCHS: String(config.epochs),
    P2PFL_PROTOCOL: config.protocol,
    P2PFL_PEERS: config.peers.join(','),
    PYTHONUNBUFFERED: '1',
  };
}

/**
 * P2PFL's own web-logger variables (read by its WebP2PFLogger at import): the API's endpoints for this job, and a key
 * they accept for this job and attempt only (common/p2pfl-web-key.ts). Env only: never in the ref, logs or history.
 */
export function webLoggerEnv(config: P2pflBackendConfig, home: string, jobId: string, attempt: number): Record<string, string> {
  if (!config.web_logger_url) return {};
  return {
    P2PFL_WEB_LOGGER_URL: `${config.web_logger_url.replace(/\/+$/, '')}/jobs/${jobId}/p2pfl`,
    P2PFL_WEB_LOGGER_KEY: p2pflWebKey(home, jobId, attempt),
  };
}

/** This backend's config as the local backend's: same caps, the experiment runner as every trainer's command. */
export function asLocalConfig(config: P2pflBackendConfig): LocalBackendConfig {
  const env = federationEnv(config);
  return {
    kind: 'local',
    enabled: config.enabled,
    hourly_usd: config.hourly_usd,
    poll_interval_ms: config.poll_interval_ms,
    ...(config.max_concurrent !== undefined && { max_concurrent: config.max_concurrent }),
    trainers: Object.fromEntries(Object.entries(config.trainers).map(([image, t]) => [image, { command: t.command, env: { ...env, ...t.env } }])),
  };
}

const HEALTH_TTL_MS = 10 * 60_000;

export class P2pflBackend implements Backend {
  readonly kind = 'p2pfl';
  private readonly local: LocalBackend;
  private probe: { at: number; report: HealthReport } | undefined;

  constructor(
    readonly name: string,
    private readonly config: P2pflBackendConfig,
    home: string,
    options: LocalBackendOptions = {},
  ) {
    this.local = new LocalBackend(name, asLocalConfig(config), home, {
      ...options,
      attemptEnv: (spec, attempt) => webLoggerEnv(config, home, spec.job_id, attempt),
    });
  }

  /** The workspace is writable and the experiment's Python can import p2pfl (checked at most every 10 minutes). */
  async health(): Promise<HealthReport> {
    const local = await this.local.health();
    if (!local.ok) return local;
    if (!this.probe || Date.now() - this.probe.at > HEALTH_TTL_MS || !this.probe.report.ok) {
      this.probe = { at: Date.now(), report: await this.probeP2pfl() };
    }
    const p = this.probe.report;
    const fed = `${this.config.nodes} nodes, ${this.config.rounds} rounds, ${this.config.protocol}`;
    return { ok: p.ok, detail: `${p.detail}; ${fed}` };
  }

  private probeP2pfl(): Promise<HealthReport> {
    const commands = Object.values(this.config.trainers).map((t) => t.command);
    const [python] = commands[0] ?? [];
    if (!python) return Promise.resolve({ ok: false, detail: 'no experiment command configured' });
    return new Promise((resolve) => {
      execFile(python, ['-c', 'import importlib.metadata as m, p2pfl, torch, transformers, forge_trainer.p2pfl_experiment; print(m.version("p2pfl"), torch.__version__)'], { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) {
          const why = (stderr || err.message).trim().split('\n').at(-1) ?? '';
          resolve({ ok: false, detail: `the P2PFL experiment (p2pfl, transformers, forge_trainer) is not importable with ${python} (${why}); run the bootstrap (npm run bootstrap) or see its P2PFL section` });
        } else {
          const [p2pfl = '?', torch = '?'] = stdout.trim().split(/\s+/);
          resolve({ ok: true, detail: `p2pfl ${p2pfl} (torch ${torch}) in ${python}` });
        }
      });
    });
  }

  quote(spec: TrainingJobSpec): Promise<Quote> {
    return this.local.quote(spec);
  }

  async submit(signed: SignedSpec, attempt: number, options: SubmitOptions = {}): Promise<DeploymentRef> {
    // Its command is the federated experiment, not `forge-trainer run`: it has no eval mode to hand an eval attempt to.
    if (options.evalRun) throw new BackendError('REJECTED', `backend "${this.name}" (p2pfl) cannot run evaluation attempts: set results.evaluation.backends.${this.name} to "orchestrator"`);
    return { ...(await this.local.submit(signed, attempt)), kind: this.kind };
  }

  status(deployment: DeploymentRef): Promise<DeploymentStatus> {
    return this.local.status(deployment);
  }

  logs(deployment: DeploymentRef, cursor?: string): Promise<LogChunk> {
    return this.local.logs(deployment, cursor);
  }

  collectArtifacts(deployment: DeploymentRef, dir: string): Promise<string[]> {
    return this.local.collectArtifacts(deployment, dir);
  }

  close(deployment: DeploymentRef): Promise<void> {
    return this.local.close(deployment);
  }

  waitForChange(deployment: DeploymentRef, timeoutMs: number): Promise<void> {
    return this.local.waitForChange(deployment, timeoutMs);
  }

  async listOpen(): Promise<OpenDeployment[]> {
    return (await this.local.listOpen()).map((o) => ({ ...o, ref: { ...o.ref, kind: this.kind } }));
  }
}
