/**
 * Host allow-list and origin policy: what stops a web page (DNS rebinding, cross-site requests) from driving the
 * API, even the loopback one of `npm start`. A request whose Host is not an allowed name gets 421; a browser's
 * cross-origin request (an Origin other than the API's own) gets 403, and a CORS preflight is never granted: the API
 * sends no Access-Control-Allow-* header at all.
 */
import type { ZodApp } from './context';
import { fieldError, ProblemError } from './problem';

/** Names every API accepts: the loopback ones. */
export const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'] as const;
const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::', '[::]']);

/** The host name of a Host header or URL authority: lower case, port dropped, IPv6 kept in brackets. */
export function hostName(authority: string): string | undefined {
  const a = authority.trim().toLowerCase();
  if (a === '') return undefined;
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    return end > 0 ? a.slice(0, end + 1) : undefined;
  }
  const name = a.replace(/:\d*$/, '');
  return /^[a-z0-9._-]+$/.test(name) ? name : undefined;
}

/** A configured name as a Host comparison expects it (bare IPv6 gets its brackets). */
function normalizeName(name: string): string | undefined {
  const n = name.trim().toLowerCase();
  if (n === '') return undefined;
  if (n.includes(':') && !n.startsWith('[')) return `[${n}]`;
  return hostName(n);
}

/** Loopback names, the listen host (unless it is a wildcard address) and the operator's extra names. */
export function allowedHostSet(listenHost: string | undefined, extra: readonly string[]): Set<string> {
  const out = new Set<string>(LOOPBACK_HOSTS);
  if (listenHost && !WILDCARD_ADDRESSES.has(listenHost.trim())) {
    const n = normalizeName(listenHost);
    if (n) out.add(n);
  }
  for (const e of extra) {
    const n = normalizeName(e);
    if (n) out.add(n);
  }
  return out;
}

/** Registers the Host and Origin checks; they run before authentication, on every route. */
export function registerHostCheck(app: ZodApp, allowed: ReadonlySet<string>): void {
  const list = [...allowed].join(', ');
  app.addHook('onRequest', async (req) => {
    const host = typeof req.headers.host === 'string' ? req.headers.host : '';
    const name = hostName(host);
    if (!name || !allowed.has(name)) {
      throw new ProblemError(
        'misdirected',
        `this API does not serve the host ${JSON.stringify(host)}; it answers to: ${list}. An operator adds names with FORGE_API_ALLOWED_HOSTS`,
        [fieldError('header', 'host', 'not an allowed host name')],
      );
    }
    const origin = req.headers.origin;
    if (req.method === 'OPTIONS') {
      throw new ProblemError('cors-refused', 'this API grants no cross-origin access (no CORS); call it from a CLI or a server, not from a web page', [
        fieldError('header', 'origin', 'cross-origin requests are not served'),
      ]);
    }
    if (typeof origin === 'string' && origin !== 'null') {
      let originHost: string | undefined;
      try {
        originHost = new URL(origin).host.toLowerCase();
      } catch {
        originHost = undefined;
      }
      if (originHost !== host.toLowerCase()) {
        throw new ProblemError('cors-refused', `requests from the web origin ${origin} are refused: this API serves no browser pages and grants no CORS`, [
          fieldError('header', 'origin', 'not this API’s own origin'),
        ]);
      }
    } else if (origin === 'null') {
      throw new ProblemError('cors-refused', 'requests from an opaque ("null") web origin are refused', [fieldError('header', 'origin', 'opaque origin')]);
    }
  });
}
