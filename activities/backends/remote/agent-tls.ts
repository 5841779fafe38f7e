/**
 * TLS to the forge agent without any state: the agent's certificate is derived, like its path token, from the
 * backend's credential, the job and the attempt. The orchestrator makes the Ed25519 key and a self-signed X.509
 * certificate for it (fixed fields, deterministic signature), hands both to the container in its env, and on any
 * replica derives the same certificate again to pin it: the agent must present exactly that one. Nothing to keep in
 * a record, nothing learnt from the network (no trust on first use), no tool needed in the image beyond python3's ssl.
 */
import { createHmac, createPrivateKey, createPublicKey, sign } from 'node:crypto';

/** DER: one tag-length-value. */
function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, content]);
}

const seq = (...parts: Buffer[]): Buffer => tlv(0x30, Buffer.concat(parts));
const ED25519_ALG = seq(Buffer.from('06032b6570', 'hex')); // AlgorithmIdentifier { 1.3.101.112 }
const CN_OID = Buffer.from('0603550403', 'hex'); // 2.5.4.3
/** PKCS#8 wrapping of a raw 32-byte Ed25519 seed. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function name(cn: string): Buffer {
  return seq(tlv(0x31, seq(CN_OID, tlv(0x0c, Buffer.from(cn, 'utf8')))));
}

export interface AgentTls {
  /** PEM of the self-signed certificate: what the agent presents and the orchestrator pins. */
  cert: string;
  /** PEM (PKCS#8) of its Ed25519 key: for the container's env only, never stored or logged. */
  key: string;
}

/** The agent certificate of one attempt (the same on every replica for the same credential, backend, job, attempt). */
export function agentTls(credential: string, backend: string, jobId: string, attempt: number): AgentTls {
  const seed = createHmac('sha256', credential).update(`forge-agent-tls\n${backend}\n${jobId}\n${attempt}`).digest();
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const serial = Buffer.concat([Buffer.from([0x01]), seed.subarray(0, 15)]); // positive, 16 bytes
  const subject = name('forge-agent');
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([0x02]))), // version v3
    tlv(0x02, serial),
    ED25519_ALG,
    subject,
    // Fixed validity, so the certificate is the same whenever it is derived; the pin, not the dates, is what counts.
    seq(tlv(0x17, Buffer.from('250101000000Z')), tlv(0x18, Buffer.from('99991231235959Z'))),
    subject,
    spki,
  );
  const signature = sign(null, tbs, privateKey);
  const der = seq(tbs, ED25519_ALG, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  return { cert: pem('CERTIFICATE', der), key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}
