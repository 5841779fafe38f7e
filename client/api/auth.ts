/**
 * Who is calling. Two modes (FORGE_API_AUTH):
 *  - `owners`: an owner signs each request (RFC 9421 HTTP Message Signatures, Ed25519, keyid = the did:key they sign
 *    specs with) and sees only their own jobs; the operator's FORGE_API_TOKEN (bearer) sees everything. The default
 *    whenever the API listens beyond loopback.
 *  - `token`: what a loopback `npm start` has always done: FORGE_API_TOKEN when set, else open to local callers.
 * Signed requests must cover @method, the target (@target-uri, or @authority @path @query), `created` (within
 * ±5 min) and, with a body, `content-digest` (RFC 9530 sha-256, checked against the bytes received). A signature
 * seen before within the window is refused (replay). Keys of signatures are kept per process.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { publicKeyFromDidKey } from '../../jobspec/did-key';
import { contentDigestMatches, ED25519_ALG, verifyRequest } from '../../jobspec/http-signature';
import type { ZodApp } from './context';
import { fieldError, ProblemError } from './problem';

export const API_AUTH_MODES = ['owners', 'token'] as const;
export type ApiAuthMode = (typeof API_AUTH_MODES)[number];
export const SIGNATURE_MAX_SKEW_SECONDS = 300;
/** About 30 MB of keys at most: 660 signed requests a second, sustained over the 5-minute window. */
const MAX_REMEMBERED_SIGNATURES = 200_000;

export type Principal = { kind: 'operator' } | { kind: 'owner'; did: string } | { kind: 'open' } | { kind: 'anonymous' };

/** Set by the auth hook before any handler runs. */
const principals = new WeakMap<FastifyRequest, Principal>();

export function principalOf(req: FastifyRequest): Principal {
  const p = principals.get(req);
  if (!p) throw new Error('a route ran before the auth hook set its principal');
  return p;
}

/** Components a signed request must cover (each entry: alternatives). */
const REQUIRED_COMPONENTS = [[['@method']], [['@target-uri'], ['@authority', '@path', '@query']]] as const;
const REQUIRED_WITH_BODY = [...REQUIRED_COMPONENTS, [['content-digest']]] as const;

export const HOW_TO_SIGN =
  'sign each request with your owner key (HTTP Message Signatures, RFC 9421): Signature-Input: sig1=("@method" "@authority" "@path" "@query" ' +
  `["content-digest"]);created=<unix seconds>;keyid="<your did:key>";alg="${ED25519_ALG}";nonce="<random>", Signature: sig1=:<base64 Ed25519 signature>:, ` +
  'and Content-Digest: sha-256=:<base64>: for a body; the cf-* commands do this with --key (default $FORGE_HOME/keys/owner.json)';

/** The default mode: owners whenever the API listens on anything but loopback. */
export function defaultAuthMode(listenHost: string): ApiAuthMode {
  const h = listenHost.trim().toLowerCase();
  return h === 'localhost' || h === '::1' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h) ? 'token' : 'owners';
}

/** Signatures seen within the window: (keyid, created, signature bytes) twice is a replay. */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  private pruneAt = 1024;
  constructor(
    private readonly windowSeconds: number,
    private readonly capacity = MAX_REMEMBERED_SIGNATURES,
  ) {}

  /** True the first time a signature is presented, false for a replay. */
  remember(keyid: string, created: number, signature: Uint8Array, nowSeconds: number): boolean {
    // A digest keeps each entry small, whatever the keyid's length.
    const key = createHash('sha256').update(`${keyid} ${created} `).update(signature).digest('base64');
    const until = this.seen.get(key);
    if (until !== undefined && until >= nowSeconds) return false;
    if (this.seen.size >= Math.min(this.pruneAt, this.capacity)) {
      for (const [k, t] of this.seen) if (t < nowSeconds) this.seen.delete(k);
      this.pruneAt = Math.max(1024, this.seen.size * 2);
    }
    if (this.seen.size >= this.capacity) {
      throw new ProblemError('replay-cache-full', `more than ${this.capacity} signed requests within ${this.windowSeconds * 2} s; retry shortly`);
    }
    // A signature stays acceptable while created is within the window of now: remember it that long.
    this.seen.set(key, created + this.windowSeconds);
    return true;
  }
}

export interface AuthOptions {
  mode: ApiAuthMode;
  /** The operator's bearer token (FORGE_API_TOKEN). */
  token?: string;
  nowSeconds?: () => number;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

function hasBody(req: FastifyRequest): boolean {
  const length = req.headers['content-length'];
  return (typeof length === 'string' && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** The raw body bytes of a request, kept by the JSON parser for the content-digest check. */
export const rawBodies = new WeakMap<FastifyRequest, Buffer>();

/**
 * Authenticates every request (routes with `config.auth`: 'public' needs nothing, 'operator' needs the token,
 * 'p2pfl-web-key' checks its own key) and records its principal (principalOf).
 */
export function registerAuth(app: ZodApp, o: AuthOptions): void {
  const now = o.nowSeconds ?? ((): number => Math.floor(Date.now() / 1000));
  const expectedToken = o.token ? sha256(o.token) : undefined;
  const replay = new ReplayGuard(SIGNATURE_MAX_SKEW_SECONDS);
  const signed = new WeakSet<FastifyRequest>();

  const bearerOf = (req: FastifyRequest): string | undefined => {
    const header = req.headers.authorization;
    return typeof header === 'string' && header.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
  };
  const tokenProblem = (given: string | undefined): ProblemError =>
    new ProblemError('unauthorized', 'this API needs "Authorization: Bearer <FORGE_API_TOKEN>"', [fieldError('header', 'authorization', given === undefined ? 'missing' : 'wrong token')], {}, {
      'www-authenticate': 'Bearer realm="chrysalis-forge"',
    });
  // Compare digests: constant time, whatever the lengths.
  const tokenMatches = (given: string): boolean => expectedToken !== undefined && timingSafeEqual(sha256(given), expectedToken);

  app.addHook('onRequest', async (req) => {
    const auth = req.routeOptions.config.auth;
    if (auth === 'p2pfl-web-key') {
      principals.set(req, { kind: 'anonymous' });
      return;
    }
    const bearer = bearerOf(req);
    if (o.mode === 'token') {
      if (!expectedToken) principals.set(req, { kind: 'open' });
      else if (bearer !== undefined && tokenMatches(bearer)) principals.set(req, { kind: 'operator' });
      else throw tokenProblem(bearer);
      return;
    }
    if (bearer !== undefined) {
      if (!tokenMatches(bearer)) throw tokenProblem(bearer);
      principals.set(req, { kind: 'operator' });
      return;
    }
    if (auth === 'public') {
      principals.set(req, { kind: 'anonymous' });
      return;
    }
    if (auth === 'operator') {
      throw new ProblemError('operator-only', 'this route is for the operator: send "Authorization: Bearer <FORGE_API_TOKEN>"', [fieldError('header', 'authorization', 'missing')]);
    }
    if (req.headers['signature-input'] === undefined && req.headers.signature === undefined) {
      throw new ProblemError('unauthenticated', `this API serves owners their own jobs: ${HOW_TO_SIGN}`, [fieldError('header', 'signature-input', 'missing')], {}, {
        'www-authenticate': 'Bearer realm="chrysalis-forge"',
      });
    }
    const nowSeconds = now();
    const result = verifyRequest(
      { method: req.method, url: `${req.protocol}://${req.host}${req.url}`, headers: req.headers },
      {
        nowSeconds,
        maxSkewSeconds: SIGNATURE_MAX_SKEW_SECONDS,
        publicKeyFor: (keyid) => publicKeyFromDidKey(keyid),
        required: hasBody(req) ? REQUIRED_WITH_BODY : REQUIRED_COMPONENTS,
      },
    );
    if (!result.ok) throw new ProblemError('request-signature', `${result.reason}; ${HOW_TO_SIGN}`, [fieldError('header', 'signature-input', result.reason)]);
    if (!replay.remember(result.keyid, result.created, result.signature, nowSeconds)) {
      throw new ProblemError('request-signature', 'this signature was used before (replay); sign every request anew, with a fresh nonce', [
        fieldError('header', 'signature', 'replayed'),
      ]);
    }
    if (hasBody(req)) signed.add(req);
    principals.set(req, { kind: 'owner', did: result.keyid });
  });

  // The signature covers Content-Digest; this checks that the digest is the body's (before validation reads it).
  app.addHook('preValidation', async (req) => {
    if (!signed.has(req)) return;
    const digest = req.headers['content-digest'];
    const raw = rawBodies.get(req) ?? Buffer.alloc(0);
    if (typeof digest !== 'string' || !contentDigestMatches(digest, raw)) {
      throw new ProblemError('request-signature', 'Content-Digest is not the sha-256 of the body received (was the body changed after signing?)', [
        fieldError('header', 'content-digest', 'does not match the body'),
      ]);
    }
  });
}

/** Registers the JSON parser that keeps each body's raw bytes (for the content-digest check). */
export function keepRawJsonBodies(app: ZodApp): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    const raw = body as Buffer;
    rawBodies.set(req, raw);
    parse(req, raw.toString('utf8'), done);
  });
}

/** The did a request's reads are limited to; null for the operator and for open loopback callers (everything). */
export function ownerScope(req: FastifyRequest): string | null {
  const p = principalOf(req);
  switch (p.kind) {
    case 'owner':
      return p.did;
    case 'operator':
    case 'open':
      return null;
    case 'anonymous':
      // A public or key-checked route never reads jobs; refuse rather than show everything.
      throw new ProblemError('unauthenticated', `this route needs an owner signature or the operator token: ${HOW_TO_SIGN}`);
  }
}

/**
 * An owner reaches only their own jobs: every /jobs/:id… route (status, logs, artifacts, p2pfl, cancel) first checks
 * the job's owner, and another owner's job is "not found", exactly as a job that does not exist (no existence leak).
 */
export function registerOwnerScope(app: ZodApp, ownerOf: (jobId: string) => Promise<string | null>): void {
  app.addHook('preHandler', async (req) => {
    if (req.routeOptions.config.auth === 'p2pfl-web-key' || !req.routeOptions.url?.startsWith('/jobs/:id')) return;
    const id = (req.params as { id?: unknown }).id;
    if (typeof id !== 'string') return;
    const scope = ownerScope(req);
    if (scope === null) return;
    if ((await ownerOf(id)) !== scope) throw new ProblemError('not-found', `no job ${id}`, [fieldError('path', 'id', 'no such job')]);
  });
}
