/**
 * WebSocket reads of the remote backends (an Akash provider's container logs), with the HTTP client's mutual TLS and
 * certificate pinning (remote-http.ts).
 */
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { HttpStatusError, NetworkError, pinProblem, type TlsOptions } from './remote-http';

export interface WsCollectOptions {
  headers?: Record<string, string>;
  tls?: TlsOptions;
  /** Stop after this long whatever the server does (it may follow forever). */
  timeoutMs: number;
  /** Stop once this many messages arrived. */
  maxMessages: number;
}

/**
 * Connects, gathers text messages until the server closes, `maxMessages` arrived or `timeoutMs` passed, then closes.
 * Rejects only when the connection cannot be made.
 */
export function wsCollect(url: string, o: WsCollectOptions): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const messages: string[] = [];
    let opened = false;
    let settled = false;
    const tls = o.tls;
    const ws = new WebSocket(url, {
      handshakeTimeout: o.timeoutMs,
      ...(o.headers ? { headers: o.headers } : {}),
      ...(tls ? { cert: tls.cert, key: tls.key, ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized ?? true } : {}),
    });
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        ws.terminate();
      } catch {
        // already gone
      }
      if (err && !opened) reject(err);
      else resolve(messages);
    };
    const timer = setTimeout(() => finish(opened ? undefined : new NetworkError('TIMEOUT', `WebSocket ${new URL(url).pathname}: no connection within ${o.timeoutMs} ms`)), o.timeoutMs);
    ws.on('unexpected-response', (_req, res) => finish(new HttpStatusError(res.statusCode ?? 0, `WebSocket ${new URL(url).pathname}: HTTP ${res.statusCode ?? 0}`)));
    ws.on('upgrade', (res) => {
      const problem = tls?.pinned ? pinProblem((res.socket as TLSSocket).getPeerCertificate(true), tls.pinned) : undefined;
      if (problem) finish(new NetworkError('ECERTPIN', `WebSocket ${new URL(url).pathname}: ${problem}`));
    });
    ws.on('open', () => {
      opened = !settled;
    });
    ws.on('message', (data) => {
      messages.push(typeof data === 'string' ? data : data.toString('utf8'));
      if (messages.length >= o.maxMessages) finish();
    });
    ws.on('close', () => finish());
    ws.on('error', (err) => finish(new NetworkError('ERROR', `WebSocket ${new URL(url).pathname}: ${err.message}`)));
  });
}
