/**
 * Test doubles that are real servers and real repositories: bare git repositories in temp dirs, a local Nostr relay
 * (NIP-01 over WebSocket) that checks every event's signature, and an HTTPS webhook receiver (self-signed certificate
 * made with openssl) that checks the HMAC header.
 */
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { verifyEvent, type Event } from 'nostr-tools';
import WebSocket from 'ws';
import { z } from 'zod';
import { ARTIFACT_MANIFEST_VERSION, signArtifactManifest, type ArtifactManifest } from '../../common/artifact-manifest';
import type { KeyPair } from '../../jobspec/signing';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8', stdio: 'pipe' });
}

/** git that returns the raw bytes of stdout (blobs). */
export function gitBytes(cwd: string, ...args: string[]): Buffer {
  return execFileSync('git', args, { cwd, env: GIT_ENV, stdio: 'pipe', maxBuffer: 1 << 30 });
}

/** A bare repository at `dir` (default branch main); with `files`, one commit holding them on main. Its file:// URL. */
export function makeBareRepo(dir: string, files?: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  git(dir, 'init', '--quiet', '--bare', '--initial-branch=main');
  if (files) {
    const work = mkdtempSync(path.join(os.tmpdir(), 'forge-seed-'));
    try {
      git(work, 'init', '--quiet', '--initial-branch=main');
      for (const [rel, text] of Object.entries(files)) {
        mkdirSync(path.dirname(path.join(work, rel)), { recursive: true });
        writeFileSync(path.join(work, rel), text);
      }
      git(work, 'add', '--all');
      git(work, 'commit', '--quiet', '-m', 'init');
      git(work, 'push', '--quiet', dir, 'main');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  return `file://${path.resolve(dir)}`;
}

// ---- a Nostr relay -------------------------------------------------------------------------------------------------

export interface TestRelay {
  url: string;
  /** Events accepted (signature verified). */
  events: Event[];
  /** Events refused for a bad signature or shape. */
  refused: unknown[];
  close(): Promise<void>;
}

const eventMessage = z.tuple([z.literal('EVENT'), z.looseObject({ id: z.string() })]);

/** NIP-01, the part a publisher uses: ["EVENT", ev] → ["OK", id, accepted, message]; stores each event id once. */
export async function startRelay(): Promise<TestRelay> {
  const server = http.createServer();
  const wss = new WebSocket.Server({ server });
  const events: Event[] = [];
  const refused: unknown[] = [];
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString());
      } catch {
        ws.send(JSON.stringify(['NOTICE', 'invalid: not JSON']));
        return;
      }
      const parsed = eventMessage.safeParse(msg);
      if (!parsed.success) {
        ws.send(JSON.stringify(['NOTICE', 'only EVENT is supported here']));
        return;
      }
      const ev = parsed.data[1] as Event;
      if (!verifyEvent(ev)) {
        refused.push(ev);
        ws.send(JSON.stringify(['OK', ev.id, false, 'invalid: bad signature']));
        return;
      }
      const duplicate = events.some((e) => e.id === ev.id);
      if (!duplicate) events.push(ev);
      ws.send(JSON.stringify(['OK', ev.id, true, duplicate ? 'duplicate: already have this event' : '']));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    events,
    refused,
    close: () => new Promise<void>((resolve) => wss.close(() => server.close(() => resolve()))),
  };
}

// ---- an HTTPS webhook receiver -------------------------------------------------------------------------------------

export interface Delivery {
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The X-Forge-Signature-256 header is the HMAC-SHA256 of the body with the shared secret. */
  signed: boolean;
}

export interface WebhookReceiver {
  url: string;
  /** PEM of its self-signed certificate (the orchestrator's webhook.ca_file). */
  caFile: string;
  deliveries: Delivery[];
  close(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1 (openssl). */
export function selfSignedCert(dir: string): { key: string; cert: string; certFile: string } {
  mkdirSync(dir, { recursive: true });
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'pipe' });
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), certFile };
}

export async function startWebhookReceiver(dir: string, secret: string): Promise<WebhookReceiver> {
  const { key, cert, certFile } = selfSignedCert(dir);
  const deliveries: Delivery[] = [];
  const server = https.createServer({ key, cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
      const given = Buffer.from(String(req.headers['x-forge-signature-256'] ?? ''));
      const signed = given.length === expected.length && timingSafeEqual(given, expected);
      deliveries.push({ headers: req.headers, body, signed });
      res.writeHead(signed ? 204 : 401).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    caFile: certFile,
    deliveries,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// ---- artifact folders as the API serves them -----------------------------------------------------------------------

/**
 * Lays out `<root>/<jobId>/` as in an output repo: the files and manifest.json + manifest.sig signed by `signer`
 * (DirectoryArtifactSource serves it). `lie` names a file whose bytes then differ from what the manifest says.
 */
export function publishArtifacts(root: string, jobId: string, files: Record<string, Buffer>, signer: KeyPair, lie?: string): ArtifactManifest {
  const dir = path.join(root, jobId);
  for (const [name, bytes] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), name === lie ? Buffer.concat([bytes.subarray(1), Buffer.from('!')]) : bytes);
  }
  const signed = signArtifactManifest(
    {
      version: ARTIFACT_MANIFEST_VERSION,
      job_id: jobId,
      job_type: 'finetune',
      owner_did: signer.did,
      spec_sha256: 'a'.repeat(64),
      spec_signature_ed25519: 'c2lnbmF0dXJl',
      base_model: { name: 'tiny', source: 'local', revision: 'main' },
      backend: 'local',
      attempt: 1,
      deployment_id: `${jobId}/attempt-1`,
      output: { repo: 'file:///tmp/models.git', branch: `jobs/${jobId}`, path: `models/job-${jobId}` },
      training: { started_at: null, finished_at: null },
      files: Object.entries(files).map(([p, b]) => ({ path: p, sha256: createHash('sha256').update(b).digest('hex'), size: b.length })),
      signer_did: signer.did,
    },
    signer.secretKey,
  );
  writeFileSync(path.join(dir, 'manifest.json'), signed.json);
  writeFileSync(path.join(dir, 'manifest.sig'), signed.sig);
  return signed.signed;
}
