/**
 * The embedded stack's inference server, started on first use: a loopback HTTP front that a rollout worker takes as
 * its FORGE_INFERENCE_URL. The first request starts the reference trainer's `forge-trainer serve
 * --allow-weight-updates` (the model it starts with only fixes the architecture and tokenizer: every rollout loads
 * its policy's weights), every request is relayed to it, and after `idleMs` without a request it is stopped, so an
 * idle stack holds no model in memory. A server started again gets the weights it last loaded before anything else
 * (the rollout worker believes that version is still loaded).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import http from 'node:http';
import { createInterface } from 'node:readline';

export interface LazyInferenceOptions {
  /** argv of the server up to its options, e.g. [".tools/venv/bin/forge-trainer", "serve"]. */
  command: string[];
  /** The model folder the server starts with (made on first use when the function makes it). */
  model: () => Promise<string>;
  /** Bearer token of the server's weight loading (FORGE_INFERENCE_ADMIN_TOKEN). */
  adminToken: string;
  idleMs: number;
  /** The server's stderr goes here. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
  /** Runs after an idle server was stopped. */
  onIdleStop?: () => void;
}

export class InferenceStartError extends Error {
  override name = 'InferenceStartError';
}

interface Backend {
  url: string;
  proc: ChildProcess;
}

const LOAD_PATH = '/update_weights_from_disk';

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

export class LazyInference {
  private server: http.Server | undefined;
  private backend: Promise<Backend> | undefined;
  private inFlight = 0;
  private lastUse = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  /** The body of the last weight load the server accepted: replayed into a server started again. */
  private lastLoad: { body: Buffer; authorization: string | undefined } | undefined;
  /** How many times a server was started (tests, logs). */
  starts = 0;
  url = '';

  constructor(private readonly o: LazyInferenceOptions) {}

  async listen(): Promise<string> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    const address = server.address();
    this.url = `http://127.0.0.1:${address && typeof address === 'object' ? address.port : 0}`;
    this.idleTimer = setInterval(() => void this.stopIfIdle(), Math.max(250, Math.min(this.o.idleMs / 4, 30_000)));
    this.idleTimer.unref();
    return this.url;
  }

  /** The running server's pid, if one runs. */
  async pid(): Promise<number | undefined> {
    if (!this.backend) return undefined;
    try {
      return (await this.backend).proc.pid;
    } catch {
      return undefined;
    }
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.inFlight++;
    this.lastUse = Date.now();
    try {
      const body = await readBody(req);
      const backend = await this.ensure();
      const authorization = req.headers.authorization;
      const answer = await fetch(`${backend.url}${req.url ?? '/'}`, {
        method: req.method ?? 'GET',
        headers: { 'content-type': req.headers['content-type'] ?? 'application/json', ...(authorization ? { authorization } : {}) },
        ...(body.length > 0 ? { body } : {}),
      });
      const text = Buffer.from(await answer.arrayBuffer());
      if (req.url === LOAD_PATH && answer.ok) this.lastLoad = { body, authorization };
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' });
      res.end(text);
    } catch (err) {
      // 503: the rollout activity treats it as retryable (the server may be starting or was stopped under it).
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `the embedded inference server is not available: ${(err as Error).message}` } }));
    } finally {
      this.inFlight--;
      this.lastUse = Date.now();
    }
  }

  private ensure(): Promise<Backend> {
    this.backend ??= this.start().catch((err: unknown) => {
      this.backend = undefined;
      throw err;
    });
    return this.backend;
  }

  private async start(): Promise<Backend> {
    const model = await this.o.model();
    const [cmd, ...args] = this.o.command;
    const logFd = openSync(this.o.logFile, 'a');
    const proc = spawn(cmd!, [...args, '--model', model, '--host', '127.0.0.1', '--port', '0', '--allow-weight-updates'], {
      env: { ...(this.o.env ?? process.env), FORGE_INFERENCE_ADMIN_TOKEN: this.o.adminToken },
      stdio: ['ignore', 'pipe', logFd],
    });
    closeSync(logFd);
    this.starts++;
    const url = await new Promise<string>((resolve, reject) => {
      proc.once('error', (err) => reject(new InferenceStartError(`cannot run ${cmd}: ${err.message}; run \`npm run bootstrap\` (it installs the trainer)`)));
      proc.once('exit', (code, signal) =>
        reject(new InferenceStartError(`the inference server exited while starting (code ${code}, signal ${signal}); see ${this.o.logFile}`)),
      );
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        try {
          const ev = JSON.parse(line) as { event?: string; url?: string };
          if (ev.event === 'serving' && ev.url) resolve(ev.url.replace(/\/+$/, ''));
        } catch {
          // not an event line
        }
      });
    });
    proc.once('exit', () => {
      if (this.backend && this.current === proc) this.backend = undefined;
    });
    this.current = proc;
    this.o.log?.(`inference server started (pid ${proc.pid}, model ${model})`);
    if (this.lastLoad) {
      const { body, authorization } = this.lastLoad;
      const res = await fetch(`${url}${LOAD_PATH}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body,
      });
      if (!res.ok) {
        proc.kill('SIGTERM');
        throw new InferenceStartError(`the restarted inference server refused the weights it held before (HTTP ${res.status})`);
      }
    }
    return { url, proc };
  }

  private current: ChildProcess | undefined;

  private async stopIfIdle(): Promise<void> {
    if (!this.backend || this.inFlight > 0 || Date.now() - this.lastUse < this.o.idleMs) return;
    this.o.log?.(`inference server idle for ${Math.round(this.o.idleMs / 1000)} s: stopping it (the next rollout starts it again)`);
    await this.stopBackend();
    this.o.onIdleStop?.();
  }

  private async stopBackend(): Promise<void> {
    const pending = this.backend;
    this.backend = undefined;
    this.current = undefined;
    if (!pending) return;
    let proc: ChildProcess;
    try {
      ({ proc } = await pending);
    } catch {
      return;
    }
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    await exited;
  }

  async close(): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    const server = this.server;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
    }
    await this.stopBackend();
  }
}
