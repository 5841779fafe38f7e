/**
 * The few parts of `ws` (7.x, in node_modules through @cosmjs/socket; it ships no types) that remote-http.ts and the
 * tests use. Node 20 has no WebSocket client of its own without a flag.
 */
declare module 'ws' {
  import type { EventEmitter } from 'node:events';
  import type { IncomingMessage, Server as HttpServer } from 'node:http';
  import type { Server as HttpsServer } from 'node:https';
  import type { Duplex } from 'node:stream';

  interface ClientOptions {
    headers?: Record<string, string>;
    handshakeTimeout?: number;
    cert?: string;
    key?: string;
    ca?: string;
    rejectUnauthorized?: boolean;
  }

  class WebSocket extends EventEmitter {
    constructor(address: string, options?: ClientOptions);
    static readonly OPEN: number;
    readonly readyState: number;
    send(data: string, cb?: (err?: Error) => void): void;
    close(code?: number, reason?: string): void;
    terminate(): void;
    on(event: 'open', listener: () => void): this;
    on(event: 'message', listener: (data: string | Buffer) => void): this;
    on(event: 'close', listener: (code: number, reason: string) => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    on(event: 'upgrade', listener: (res: IncomingMessage) => void): this;
    on(event: 'unexpected-response', listener: (req: unknown, res: IncomingMessage) => void): this;
  }

  namespace WebSocket {
    interface ServerOptions {
      server?: HttpServer | HttpsServer;
      noServer?: boolean;
      path?: string;
    }
    class Server extends EventEmitter {
      constructor(options: ServerOptions);
      handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, cb: (ws: WebSocket) => void): void;
      close(cb?: () => void): void;
      on(event: 'connection', listener: (ws: WebSocket, req: IncomingMessage) => void): this;
    }
  }

  export = WebSocket;
}
