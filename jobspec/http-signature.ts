/**
 * HTTP Message Signatures (RFC 9421) with Ed25519 (§3.3.6, alg "ed25519"), and Content-Digest (RFC 9530, sha-256):
 * the signature base (§2.5), signature parameters (§2.3), and the few Structured Field (RFC 8941) forms they use.
 * Pure: the API verifies with it, the cf-* CLIs sign with it. Owners sign with the did:key they sign specs with.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { base64, base64urlnopad } from '@scure/base';
import { signBytes, verifyBytes } from './signing';

export const ED25519_ALG = 'ed25519';
const encoder = new TextEncoder();

/** A request as the signature sees it: method, absolute URL, and header fields (names in any case). */
export interface SignedRequestParts {
  method: string;
  url: string;
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
}

export interface SignatureParams {
  created: number;
  keyid: string;
  alg?: string;
  nonce?: string;
  expires?: number;
}

export class HttpSignatureError extends Error {
  override name = 'HttpSignatureError';
}

// ---- Structured Fields (RFC 8941), the parts RFC 9421 needs -------------------------------------------------------

/** A string item is kept apart from a token so that re-serialization is exact. */
type ParamValue = { kind: 'string'; value: string } | { kind: 'token'; value: string } | { kind: 'integer'; value: number } | { kind: 'boolean'; value: boolean };
export interface InnerList {
  items: { value: string; params: [string, ParamValue][] }[];
  params: [string, ParamValue][];
}
type DictMember = { kind: 'inner'; list: InnerList } | { kind: 'bytes'; value: Uint8Array } | { kind: 'other' };

function serializeString(s: string): string {
  if (!/^[\x20-\x7e]*$/.test(s)) throw new HttpSignatureError(`a structured-field string holds only printable ASCII: ${JSON.stringify(s)}`);
  return `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

function serializeParamValue(v: ParamValue): string {
  switch (v.kind) {
    case 'string':
      return `=${serializeString(v.value)}`;
    case 'token':
      return `=${v.value}`;
    case 'integer':
      return `=${v.value}`;
    case 'boolean':
      return v.value ? '' : '=?0';
  }
}

function serializeParams(params: readonly [string, ParamValue][]): string {
  return params.map(([k, v]) => `;${k}${serializeParamValue(v)}`).join('');
}

export function serializeInnerList(list: InnerList): string {
  return `(${list.items.map((i) => `${serializeString(i.value)}${serializeParams(i.params)}`).join(' ')})${serializeParams(list.params)}`;
}

class SfParser {
  private i = 0;
  constructor(private readonly s: string) {}
  private fail(what: string): never {
    throw new HttpSignatureError(`${what} at character ${this.i}`);
  }
  private peek(): string {
    return this.s[this.i] ?? '';
  }
  private ows(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.i++;
  }
  private sp(): void {
    while (this.peek() === ' ') this.i++;
  }
  private key(): string {
    const m = /^[a-z*][a-z0-9_\-.*]*/.exec(this.s.slice(this.i));
    if (!m) this.fail('expected a key');
    this.i += m[0].length;
    return m[0];
  }
  private string(): string {
    if (this.peek() !== '"') this.fail('expected a string');
    this.i++;
    let out = '';
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) this.fail('unterminated string');
      if (c === '\\') {
        const n = this.s[this.i++];
        if (n !== '"' && n !== '\\') this.fail('bad escape in string');
        out += n;
      } else if (c === '"') return out;
      else if (c < ' ' || c > '~') this.fail('non-printable character in string');
      else out += c;
    }
  }
  private bareItem(): ParamValue | { kind: 'bytes'; value: Uint8Array } {
    const c = this.peek();
    if (c === '"') return { kind: 'string', value: this.string() };
    if (c === '?') {
      const b = this.s[this.i + 1];
      if (b !== '0' && b !== '1') this.fail('bad boolean');
      this.i += 2;
      return { kind: 'boolean', value: b === '1' };
    }
    if (c === ':') {
      const end = this.s.indexOf(':', this.i + 1);
      if (end < 0) this.fail('unterminated byte sequence');
      const text = this.s.slice(this.i + 1, end);
      this.i = end + 1;
      try {
        return { kind: 'bytes', value: base64.decode(text) };
      } catch {
        this.fail('byte sequence is not base64');
      }
    }
    const int = /^-?[0-9]{1,15}(?![0-9.])/.exec(this.s.slice(this.i));
    if (int) {
      this.i += int[0].length;
      return { kind: 'integer', value: Number(int[0]) };
    }
    const token = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(this.s.slice(this.i));
    if (token) {
      this.i += token[0].length;
      return { kind: 'token', value: token[0] };
    }
    this.fail('expected an item');
  }
  private params(): [string, ParamValue][] {
    const out: [string, ParamValue][] = [];
    while (this.peek() === ';') {
      this.i++;
      this.sp();
      const k = this.key();
      let v: ParamValue = { kind: 'boolean', value: true };
      if (this.peek() === '=') {
        this.i++;
        const item = this.bareItem();
        if (item.kind === 'bytes') this.fail(`parameter ${k} cannot be a byte sequence here`);
        v = item;
      }
      const existing = out.findIndex(([name]) => name === k);
      if (existing >= 0) out[existing] = [k, v];
      else out.push([k, v]);
    }
    return out;
  }
  private innerList(): InnerList {
    this.i++; // (
    const items: InnerList['items'] = [];
    for (;;) {
      this.sp();
      if (this.peek() === ')') {
        this.i++;
        return { items, params: this.params() };
      }
      const item = this.bareItem();
      if (item.kind !== 'string') this.fail('covered components are strings');
      items.push({ value: item.value, params: this.params() });
      if (this.peek() !== ' ' && this.peek() !== ')') this.fail('expected a space or ")"');
    }
  }
  dictionary(): Map<string, DictMember> {
    const out = new Map<string, DictMember>();
    this.sp();
    while (this.i < this.s.length) {
      const k = this.key();
      let member: DictMember = { kind: 'other' };
      if (this.peek() === '=') {
        this.i++;
        if (this.peek() === '(') member = { kind: 'inner', list: this.innerList() };
        else {
          const item = this.bareItem();
          this.params();
          if (item.kind === 'bytes') member = { kind: 'bytes', value: item.value };
        }
      } else this.params();
      out.set(k, member);
      this.ows();
      if (this.i >= this.s.length) break;
      if (this.peek() !== ',') this.fail('expected ","');
      this.i++;
      this.ows();
      if (this.i >= this.s.length) this.fail('trailing comma');
    }
    return out;
  }
}

export function parseDictionary(header: string): Map<string, DictMember> {
  return new SfParser(header).dictionary();
}

// ---- components (§2.1, §2.2) and the signature base (§2.5) -------------------------------------------------------

function headerValue(req: SignedRequestParts, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.toLowerCase() !== lower || v === undefined) continue;
    // §2.1: each value trimmed of outer whitespace, several values joined by ", ".
    const values = typeof v === 'string' ? [v] : v;
    return values.map((x) => x.trim().replace(/\s*\r?\n\s*/g, ' ')).join(', ');
  }
  return undefined;
}

export function componentValue(req: SignedRequestParts, component: string): string {
  if (!component.startsWith('@')) {
    const v = headerValue(req, component);
    if (v === undefined) throw new HttpSignatureError(`covered header field "${component}" is not in the request`);
    return v;
  }
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    throw new HttpSignatureError(`not an absolute URL: ${req.url}`);
  }
  switch (component) {
    case '@method':
      return req.method.toUpperCase();
    case '@target-uri':
      return url.href;
    case '@authority':
      return url.host.toLowerCase();
    case '@scheme':
      return url.protocol.slice(0, -1).toLowerCase();
    case '@request-target':
      return `${url.pathname}${url.search}`;
    case '@path':
      return url.pathname || '/';
    case '@query':
      // §2.2.7: the query with its leading "?"; an absent or empty query is "?".
      return url.search === '' ? '?' : url.search;
    default:
      throw new HttpSignatureError(`derived component ${component} is not supported (use @method, @target-uri, @authority, @path, @query)`);
  }
}

function paramsList(p: SignatureParams): [string, ParamValue][] {
  const out: [string, ParamValue][] = [['created', { kind: 'integer', value: p.created }]];
  if (p.expires !== undefined) out.push(['expires', { kind: 'integer', value: p.expires }]);
  out.push(['keyid', { kind: 'string', value: p.keyid }]);
  if (p.alg !== undefined) out.push(['alg', { kind: 'string', value: p.alg }]);
  if (p.nonce !== undefined) out.push(['nonce', { kind: 'string', value: p.nonce }]);
  return out;
}

/** §2.5: one line per covered component, then the "@signature-params" line (no trailing newline). */
export function signatureBase(req: SignedRequestParts, list: InnerList): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const item of list.items) {
    if (item.params.length) throw new HttpSignatureError(`component parameters (on "${item.value}") are not supported`);
    const name = item.value.toLowerCase();
    if (name !== item.value) throw new HttpSignatureError(`component identifiers are lower case: "${item.value}"`);
    if (seen.has(name)) throw new HttpSignatureError(`component "${name}" is covered twice`);
    seen.add(name);
    if (name === '@signature-params') throw new HttpSignatureError('"@signature-params" cannot be a covered component');
    lines.push(`${serializeString(name)}: ${componentValue(req, name)}`);
  }
  lines.push(`"@signature-params": ${serializeInnerList(list)}`);
  return lines.join('\n');
}

/** RFC 9530 Content-Digest of a body, sha-256. */
export function contentDigest(body: Uint8Array | string): string {
  return `sha-256=:${base64.encode(sha256(typeof body === 'string' ? encoder.encode(body) : body))}:`;
}

/** Whether `header` (a Content-Digest field) holds a sha-256 digest equal to that of `body`. */
export function contentDigestMatches(header: string, body: Uint8Array): boolean {
  let dict;
  try {
    dict = parseDictionary(header);
  } catch {
    return false;
  }
  const member = dict.get('sha-256');
  if (member?.kind !== 'bytes') return false;
  const want = sha256(body);
  return member.value.length === want.length && member.value.every((b, i) => b === want[i]);
}

export interface SignOptions {
  secretKey: Uint8Array;
  keyid: string;
  created: number;
  /** Random per request, so that two identical requests in the same second differ (the API refuses replays). */
  nonce?: string;
  components: readonly string[];
  label?: string;
}

/** The Signature-Input and Signature fields for `req` (which must already carry every covered header). */
export function signRequest(req: SignedRequestParts, o: SignOptions): { 'signature-input': string; signature: string } {
  const label = o.label ?? 'sig1';
  const list: InnerList = {
    items: o.components.map((c) => ({ value: c, params: [] })),
    params: paramsList({ created: o.created, keyid: o.keyid, alg: ED25519_ALG, ...(o.nonce !== undefined ? { nonce: o.nonce } : {}) }),
  };
  const base = signatureBase(req, list);
  const sig = base64urlnopad.decode(signBytes(encoder.encode(base), o.secretKey));
  return { 'signature-input': `${label}=${serializeInnerList(list)}`, signature: `${label}=:${base64.encode(sig)}:` };
}

export interface VerifyOptions {
  nowSeconds: number;
  /** How far `created` may lie from now, either way. */
  maxSkewSeconds: number;
  /** The Ed25519 public key a keyid names; throw to refuse the keyid (the message is the reason). */
  publicKeyFor(keyid: string): Uint8Array;
  /** Components that must be covered; each entry is a set of alternatives (any one of them suffices). */
  required: readonly (readonly (readonly string[])[])[];
  /** Which label to check; default: the only one (several labels are refused). */
  label?: string;
}

export type VerifiedSignature =
  { ok: true; keyid: string; created: number; signature: Uint8Array; components: string[] } | { ok: false; reason: string };

const paramOf = (list: InnerList, name: string): ParamValue | undefined => list.params.find(([k]) => k === name)?.[1];

/** Checks the request's Signature-Input/Signature pair. Never throws; the reason says what to fix. */
export function verifyRequest(req: SignedRequestParts, o: VerifyOptions): VerifiedSignature {
  const input = headerValue(req, 'signature-input');
  const sigField = headerValue(req, 'signature');
  if (input === undefined || sigField === undefined) return { ok: false, reason: 'missing Signature-Input or Signature header' };
  try {
    const inputs = parseDictionary(input);
    const sigs = parseDictionary(sigField);
    const label = o.label ?? (inputs.size === 1 ? [...inputs.keys()][0]! : undefined);
    if (label === undefined) return { ok: false, reason: `send exactly one signature (Signature-Input has ${inputs.size} labels)` };
    const member = inputs.get(label);
    const sig = sigs.get(label);
    if (member?.kind !== 'inner') return { ok: false, reason: `Signature-Input has no inner list labelled "${label}"` };
    if (sig?.kind !== 'bytes') return { ok: false, reason: `Signature has no byte sequence labelled "${label}"` };
    const list = member.list;
    const created = paramOf(list, 'created');
    const keyid = paramOf(list, 'keyid');
    const alg = paramOf(list, 'alg');
    const expires = paramOf(list, 'expires');
    if (created?.kind !== 'integer') return { ok: false, reason: 'the "created" parameter is required (an integer, Unix seconds)' };
    if (keyid?.kind !== 'string') return { ok: false, reason: 'the "keyid" parameter is required (a string: your did:key)' };
    if (alg !== undefined && !(alg.kind === 'string' && alg.value === ED25519_ALG)) return { ok: false, reason: `alg must be "${ED25519_ALG}"` };
    if (Math.abs(o.nowSeconds - created.value) > o.maxSkewSeconds) {
      return { ok: false, reason: `"created" (${created.value}) is more than ${o.maxSkewSeconds} s from the server's clock (${o.nowSeconds}); sign with the current time` };
    }
    if (expires !== undefined && (expires.kind !== 'integer' || expires.value <= o.nowSeconds)) return { ok: false, reason: 'the signature has expired ("expires")' };
    const covered = list.items.map((i) => i.value);
    for (const alternatives of o.required) {
      if (!alternatives.some((set) => set.every((c) => covered.includes(c)))) {
        return { ok: false, reason: `the signature must cover ${alternatives.map((set) => set.map((c) => `"${c}"`).join(' ')).join(' or ')}` };
      }
    }
    let publicKey: Uint8Array;
    try {
      publicKey = o.publicKeyFor(keyid.value);
    } catch (err) {
      return { ok: false, reason: `keyid: ${(err as Error).message}` };
    }
    const base = signatureBase(req, list);
    if (!verifyBytes(base64urlnopad.encode(sig.value), encoder.encode(base), publicKey)) {
      return { ok: false, reason: `the signature does not verify against keyid ${keyid.value} over the signature base of this request` };
    }
    return { ok: true, keyid: keyid.value, created: created.value, signature: sig.value, components: covered };
  } catch (err) {
    if (err instanceof HttpSignatureError) return { ok: false, reason: err.message };
    throw err;
  }
}
