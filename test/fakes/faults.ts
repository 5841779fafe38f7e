/**
 * Fault injection for the fakes of remote APIs (Prime Intellect, Akash Console, provider gateway, chain REST): one
 * `Faults` switch per fake, asked by the fake's request handler before it answers.
 * - `down()` / `up()`: the listening socket is closed (connections refused, open ones dropped), then opened again on
 *   the same port (`ListenSwitch`);
 * - `storm(status, rate, rand)`: that share of requests (drawn from the caller's seeded PRNG) answers 503 or 429;
 * - `delay(ms)`: every answer comes this much later (beyond the backend's request_timeout_ms: a slow API);
 * - `holdCreate(onCreate)`: the fake's create call (a pod, a deployment) is carried out, then `onCreate` runs and the
 *   answer is held back until `release()` (a worker killed between creating a deployment and recording it).
 */
import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StormPlan {
  status: 429 | 503;
  /** Share of requests answered with `status`, 0..1. */
  rate: number;
  /** The seeded PRNG of the chaos run (test/chaos/harness.ts rng). */
  rand: () => number;
  /** 429's Retry-After, seconds (default 1). */
  retryAfterSeconds?: number;
}

export class Faults {
  private stormPlan: StormPlan | undefined;
  private delayMs = 0;
  private onCreate: (() => void) | undefined;
  private held: (() => void)[] = [];
  /** What the faults did, for the chaos report. */
  readonly counts = { storm: 0, delayed: 0, held: 0 };

  storm(plan: StormPlan | undefined): void {
    this.stormPlan = plan;
  }

  delay(ms: number): void {
    this.delayMs = ms;
  }

  holdCreate(onCreate: (() => void) | undefined): void {
    this.onCreate = onCreate;
  }

  /** Sends every held create answer (to whoever is still connected). */
  release(): void {
    const held = this.held;
    this.held = [];
    for (const go of held) go();
  }

  /** Every fault off, held answers released. */
  clear(): void {
    this.stormPlan = undefined;
    this.delayMs = 0;
    this.onCreate = undefined;
    this.release();
  }

  /**
   * Before a fake answers: true when the fault answered the request itself (a storm), after waiting out any delay.
   * `retryHeader` is how the fake's API names Retry-After.
   */
  async gate(_req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (this.delayMs > 0) {
      this.counts.delayed++;
      await new Promise((r) => setTimeout(r, this.delayMs));
    }
    const s = this.stormPlan;
    if (s && s.rand() < s.rate) {
      this.counts.storm++;
      const text = JSON.stringify({ detail: s.status === 429 ? 'Too Many Requests' : 'Service Unavailable', message: 'injected by the chaos suite' });
      const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) };
      if (s.status === 429) headers['retry-after'] = String(s.retryAfterSeconds ?? 1);
      if (!res.headersSent) res.writeHead(s.status, headers).end(text);
      return true;
    }
    return false;
  }

  /** After the fake made a deployment, before it answers: held (and `onCreate` told) while a create hold is set. */
  async created(): Promise<void> {
    const onCreate = this.onCreate;
    if (!onCreate) return;
    this.counts.held++;
    const answered = new Promise<void>((resolve) => this.held.push(resolve));
    onCreate();
    await answered;
  }
}

/** A fake's listening socket that can go away and come back on the same port. */
export class ListenSwitch {
  private port = 0;
  private up_ = true;

  constructor(
    private readonly server: http.Server,
    private readonly host: string,
  ) {}

  /** Listens on `port` (0: any free one); the port it got. */
  async listen(port = 0): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    this.up_ = true;
    return this.port;
  }

  get isUp(): boolean {
    return this.up_;
  }

  /** The API goes away: new connections are refused, open ones cut. */
  async down(): Promise<void> {
    if (!this.up_) return;
    this.up_ = false;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  /** Back on the same port. */
  async up(): Promise<void> {
    if (this.up_) return;
    await this.listen(this.port);
  }
}

/** A fake API whose listening socket can go away and come back (`down()` / `up()`), with its fault switch. */
export abstract class FaultyServer {
  /** Fault injection: storms, slow answers, a held create. */
  readonly faults = new Faults();
  private listener: ListenSwitch | undefined;

  /** Listens with `server` on host:port (0: any); the base URL. */
  protected async listenWith(server: http.Server, host: string, port = 0): Promise<string> {
    this.listener = new ListenSwitch(server, host);
    return `http://${host}:${await this.listener.listen(port)}`;
  }

  /** The API goes away (its socket closed, what it runs keeps running), until `up()`. */
  down(): Promise<void> {
    return this.listener?.down() ?? Promise.resolve();
  }

  up(): Promise<void> {
    return this.listener?.up() ?? Promise.resolve();
  }
}
