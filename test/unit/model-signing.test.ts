/**
 * OpenSSF Model Signing made in Node (common/model-signing.ts), checked by the real `model_signing` tool from PyPI;
 * the DSSE envelope (common/dsse.ts) checked by an independent node:crypto verifier.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { signDsse, verifyDsse } from '../../common/dsse';
import { MODEL_SIG_FILE, modelSigningKeyFrom, reuseModelSignature, signModel, verifyModelSignature } from '../../common/model-signing';
import { generateKeyPair } from '../../jobspec/signing';
import { flipByte, independentDsseCheck, modelSigningVerify } from '../helpers/model-signing';

const sha = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');

function modelFolder(): { dir: string; files: { path: string; sha256: string }[] } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'forge-msig-'));
  const dir = path.join(root, 'job-abc');
  mkdirSync(path.join(dir, 'checkpoints', 'step-1'), { recursive: true });
  const contents: Record<string, string> = {
    'model.safetensors': 'weights'.repeat(100),
    'config.json': '{"a":1}\n',
    'checkpoints/step-1/model.safetensors': 'ckpt',
    'a.txt': 'sorts before a/ as a string, after it as path parts',
  };
  for (const [rel, text] of Object.entries(contents)) writeFileSync(path.join(dir, rel), text);
  return { dir, files: Object.entries(contents).map(([p, t]) => ({ path: p, sha256: sha(t) })) };
}

test('the model signing key is P-256, derived from the Ed25519 identity: the same for the same identity, another for another', () => {
  const id = generateKeyPair();
  const a = modelSigningKeyFrom(id.secretKey);
  expect(a.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  expect(a.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
  expect(modelSigningKeyFrom(id.secretKey).publicKeyPem).toBe(a.publicKeyPem);
  expect(modelSigningKeyFrom(generateKeyPair().secretKey).publicKeyPem).not.toBe(a.publicKeyPem);
});

test('model_signing verify key accepts the signature; a flipped byte, an extra file or another key fails it', () => {
  const { dir, files } = modelFolder();
  const key = modelSigningKeyFrom(generateKeyPair().secretKey);
  writeFileSync(path.join(dir, MODEL_SIG_FILE), signModel('job-abc', files, key));
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'forge-msig-key-'));

  const ok = modelSigningVerify(dir, key.publicKeyPem, scratch);
  expect(ok.output).toContain('Verification succeeded');
  expect(ok.status).toBe(0);
  const own = verifyModelSignature(readFileSync(path.join(dir, MODEL_SIG_FILE), 'utf8'), key.publicKeyPem);
  expect(own.ok && own.files.length).toBe(files.length);

  const other = modelSigningKeyFrom(generateKeyPair().secretKey);
  expect(modelSigningVerify(dir, other.publicKeyPem, scratch).status).not.toBe(0);
  expect(verifyModelSignature(readFileSync(path.join(dir, MODEL_SIG_FILE), 'utf8'), other.publicKeyPem).ok).toBe(false);

  flipByte(path.join(dir, 'model.safetensors'), 10);
  const bad = modelSigningVerify(dir, key.publicKeyPem, scratch);
  expect(bad.status).not.toBe(0);
  expect(bad.output).toMatch(/Hash mismatch for 'model.safetensors'/);
  flipByte(path.join(dir, 'model.safetensors'), 10);
  expect(modelSigningVerify(dir, key.publicKeyPem, scratch).status).toBe(0);

  writeFileSync(path.join(dir, 'smuggled.bin'), 'x');
  expect(modelSigningVerify(dir, key.publicKeyPem, scratch).output).toMatch(/Extra files found/);
});

test('a DSSE envelope signed with the orchestrator key verifies independently (PAE by hand, key from the did:key); a changed payload does not', () => {
  const id = generateKeyPair();
  const env = signDsse({ _type: 'https://in-toto.io/Statement/v1', hello: 'world' }, id);
  expect(env.signatures[0]!.keyid).toBe(id.did);
  expect(independentDsseCheck(JSON.stringify(env), id.did)).toMatchObject({ hello: 'world' });
  expect(verifyDsse(env, id.did)).toMatchObject({ ok: true });
  const forged = { ...env, payload: Buffer.from(JSON.stringify({ hello: 'mallory' })).toString('base64') };
  expect(() => independentDsseCheck(JSON.stringify(forged), id.did)).toThrow(/does not verify/);
  expect(verifyDsse(forged, id.did).ok).toBe(false);
  expect(verifyDsse(env, generateKeyPair().did).ok).toBe(false);
});

test('a retry keeps the model.sig its earlier try pushed for the same files (ECDSA differs each time), and only then', () => {
  const key = modelSigningKeyFrom(generateKeyPair().secretKey);
  const files = [{ path: 'model.safetensors', sha256: sha('w') }];
  const first = signModel('job-abc', files, key);
  const second = signModel('job-abc', files, key);
  expect(second).not.toBe(first);
  expect(reuseModelSignature(first, second, key.publicKeyPem)).toBe(first);
  expect(reuseModelSignature(undefined, second, key.publicKeyPem)).toBe(second);
  const otherFiles = signModel('job-abc', [{ path: 'model.safetensors', sha256: sha('v') }], key);
  expect(reuseModelSignature(first, otherFiles, key.publicKeyPem)).toBe(otherFiles);
  const foreign = signModel('job-abc', files, modelSigningKeyFrom(generateKeyPair().secretKey));
  expect(reuseModelSignature(foreign, second, key.publicKeyPem)).toBe(second);
  expect(reuseModelSignature('not json', second, key.publicKeyPem)).toBe(second);
});
