/**
 * The real OpenSSF Model Signing tool (PyPI `model-signing`, installed into .tools/venv by scripts/bootstrap.sh with
 * the trainer's [test] extra), and a small independent check of a DSSE envelope with node:crypto alone.
 */
import { spawnSync } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../common/paths';

export const MODEL_SIGNING_BIN = process.env.FORGE_TEST_MODEL_SIGNING ?? path.join(repoRoot(), '.tools', 'venv', 'bin', 'model_signing');

/** `model_signing verify key DIR --signature DIR/model.sig --public_key PEM` → exit status and output. */
export function modelSigningVerify(dir: string, publicKeyPem: string, scratch: string): { status: number | null; output: string } {
  if (!existsSync(MODEL_SIGNING_BIN)) throw new Error(`${MODEL_SIGNING_BIN} is missing: run scripts/bootstrap.sh (it installs model-signing with trainer[test])`);
  const pem = path.join(scratch, 'model-signing.pub.pem');
  writeFileSync(pem, publicKeyPem);
  const run = spawnSync(MODEL_SIGNING_BIN, ['verify', 'key', dir, '--signature', path.join(dir, 'model.sig'), '--public_key', pem], { encoding: 'utf8' });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** Flips the low bit of one byte of a file (in place). */
export function flipByte(file: string, at = 0): void {
  const bytes = readFileSync(file);
  bytes[at] = bytes[at]! ^ 1;
  writeFileSync(file, bytes);
}

/**
 * A DSSE envelope checked from first principles: PAE by hand, the Ed25519 public key taken from the did:key
 * (multibase z, multicodec 0xed01), node:crypto's verify. Returns the statement.
 */
export function independentDsseCheck(envelopeText: string, did: string): Record<string, unknown> {
  const env = JSON.parse(envelopeText) as { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] };
  const payload = Buffer.from(env.payload, 'base64');
  const pae = Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(env.payloadType)} ${env.payloadType} ${payload.length} `), payload]);
  const raw = base58btc(did.slice('did:key:z'.length));
  if (raw[0] !== 0xed || raw[1] !== 0x01) throw new Error(`${did} is not an Ed25519 did:key`);
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw.subarray(2)]);
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  const sig = env.signatures.find((s) => s.keyid === did);
  if (!sig || !verify(null, pae, key, Buffer.from(sig.sig, 'base64'))) throw new Error('the DSSE signature does not verify');
  return JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
}

function base58btc(text: string): Buffer {
  const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  let n = 0n;
  for (const c of text) n = n * 58n + BigInt(alphabet.indexOf(c));
  const hex = n.toString(16);
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
}
