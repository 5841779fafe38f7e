/**
 * Scans a workflow history (the JSON of `temporal workflow show -o json`, or a fetched history turned into it) for
 * secrets: any of the `known` values anywhere (payloads decoded), and, inside every payload, token-shaped values
 * (32+ characters of hex / base64 / base64url) under field names that say token, secret, password, credential or key.
 */
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { temporal } from '@temporalio/proto';

const SECRET_NAME = /token|secret|passw|passphrase|credential|api_?key|private_?key|(^|_)key$|[a-z]Key$|^key$/i;
/** Names that hold keys that are not secret. */
const NOT_SECRET_NAME = /public|idempoten|dedup|cache_?key|sort_?key|^keyid$/i;
const TOKEN_SHAPED = /^[A-Za-z0-9+/_=-]{32,}$/;

export interface Finding {
  /** Where: the payload's JSON path inside the history. */
  at: string;
  why: string;
}

function decodePayload(data: string): unknown {
  const text = Buffer.from(data, 'base64').toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function walkPayload(value: unknown, at: string, out: Finding[]): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => walkPayload(v, `${at}[${i}]`, out));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v === 'string' && SECRET_NAME.test(k) && !NOT_SECRET_NAME.test(k) && TOKEN_SHAPED.test(v)) {
      out.push({ at: `${at}.${k}`, why: `a token-shaped value (${v.length} characters) under "${k}"` });
    }
    walkPayload(v, `${at}.${k}`, out);
  }
}

function walk(value: unknown, at: string, out: Finding[], decoded: string[]): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => walk(v, `${at}[${i}]`, out, decoded));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const o = value as Record<string, unknown>;
  if (typeof o.data === 'string' && o.metadata && typeof o.metadata === 'object') {
    const payload = decodePayload(o.data);
    decoded.push(typeof payload === 'string' ? payload : JSON.stringify(payload));
    walkPayload(payload, at, out);
    return;
  }
  for (const [k, v] of Object.entries(o)) walk(v, `${at}.${k}`, out, decoded);
}

/** The decoded payloads of a history (JSON text), in order. */
export function payloadsOf(history: string): unknown[] {
  const out: unknown[] = [];
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(visit);
    if (value === null || typeof value !== 'object') return;
    const o = value as Record<string, unknown>;
    if (typeof o.data === 'string' && o.metadata && typeof o.metadata === 'object') out.push(decodePayload(o.data));
    else Object.values(o).forEach(visit);
  };
  visit(JSON.parse(history) as unknown);
  return out;
}

/** Findings in one history (JSON text or parsed); `known`: secret values the test configured (each 8+ characters). */
export function scanHistory(history: string | unknown, known: readonly string[] = []): Finding[] {
  const text = typeof history === 'string' ? history : JSON.stringify(history);
  const out: Finding[] = [];
  const decoded: string[] = [];
  walk(JSON.parse(text) as unknown, '$', out, decoded);
  const haystack = [text, ...decoded].join('\n');
  for (const secret of known) {
    if (secret.length >= 8 && haystack.includes(secret)) out.push({ at: '$', why: `a configured secret (${secret.slice(0, 4)}…, ${secret.length} characters)` });
  }
  return out;
}

/** A fetched history as the CLI's JSON. */
export function historyJson(history: temporal.api.history.v1.IHistory): string {
  return historyToJSON(history);
}

/** The committed replay histories. */
export function committedHistories(): { file: string; text: string }[] {
  const dir = path.resolve(__dirname, '..', 'histories');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: f, text: readFileSync(path.join(dir, f), 'utf8') }));
}

function secretsFile(): string | undefined {
  const dir = process.env.FORGE_TEST_DIR;
  return dir ? path.join(dir, 'known-secrets.txt') : undefined;
}

/** A secret a test configured: the global teardown fails the run if any recorded history holds it. */
export function registerTestSecret(value: string): void {
  const file = secretsFile();
  if (file && value.length >= 8) appendFileSync(file, `${value}\n`, { mode: 0o600 });
}

export function knownTestSecrets(): string[] {
  const file = secretsFile();
  if (!file || !existsSync(file)) return [];
  return [...new Set(readFileSync(file, 'utf8').split('\n').filter((l) => l.length >= 8))];
}
