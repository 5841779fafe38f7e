/**
 * Akash chain mode: transactions built and signed offline with cosmjs and Akash's registry, decoded back and their
 * signatures checked; then the whole flow against a local node REST API (which verifies every signature before
 * applying a message) and a provider that takes the manifest only over mTLS from the deployment's owner, its own
 * certificate pinned to the one it published on chain.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Secp256k1, Secp256k1Signature, sha256 } from '@cosmjs/crypto';
import { DirectSecp256k1HdWallet, makeSignBytes, makeSignDoc } from '@cosmjs/proto-signing';
import { PubKey } from 'cosmjs-types/cosmos/crypto/secp256k1/keys';
import { AuthInfo, TxRaw } from 'cosmjs-types/cosmos/tx/v1beta1/tx';
import { AkashBackend } from '../../activities/backends/akash/akash';
import {
  closeDeploymentMsg,
  createCertificateMsg,
  createDeploymentMsg,
  createLeaseMsg,
  decodeTx,
  feeFor,
  signTx,
  walletFromMnemonic,
} from '../../activities/backends/akash/akash-chain';
import { buildSdl } from '../../activities/backends/akash/akash-sdl';
import type { Backend, DeploymentRef, DeploymentStatus } from '../../activities/backends/types';
import { parseConfig, type AkashBackendConfig } from '../../common/config';
import { trainingJobSpecSchema } from '../../jobspec/schema';
import { FakeAkashChain } from '../fakes/akash-chain';
import { FakeAkashProvider } from '../fakes/akash-provider';
import { FAKE_TRAINER_SH } from '../fakes/container';
import { makeSignedSpec, signedOf } from '../jobspec/fixtures';

const CHAIN_ID = 'akashnet-test';
/** BIP-39's public test vector: a wallet funded nowhere but on the fake chain. */
const MNEMONIC = 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about';

function tmp(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

async function verify(bytes: Uint8Array, accountNumber: number): Promise<boolean> {
  const raw = TxRaw.decode(bytes);
  const pubkey = PubKey.decode(AuthInfo.decode(raw.authInfoBytes).signerInfos[0]!.publicKey!.value).key;
  const signBytes = makeSignBytes(makeSignDoc(raw.bodyBytes, raw.authInfoBytes, CHAIN_ID, accountNumber));
  return Secp256k1.verifySignature(Secp256k1Signature.fromFixedLength(raw.signatures[0]!), sha256(signBytes), pubkey);
}

describe('transactions, offline', () => {
  test('certificate, deployment (groups, manifest version, deposit), lease and close: signed, decoded back, signature valid', async () => {
    const wallet = await DirectSecp256k1HdWallet.fromMnemonic(MNEMONIC, { prefix: 'akash' });
    const [account] = await wallet.getAccounts();
    const owner = account!.address;
    const spec = trainingJobSpecSchema.parse(makeSignedSpec({ resources: { gpus: 1, gpu_type: 'a100', gpu_mem_gb: 80, cpus: 8, ram_gb: 64, storage_gb: 100, max_hours: 8 } }));
    const built = await buildSdl(spec, { image: 'chrysalis/trainer:latest', env: { JOB_ID: spec.job_id }, service: 'trainer', placement: 'dcloud', pricing: { denom: 'uakt', amount: 1000 }, exposePort: 8080 });
    const msgs = [
      createCertificateMsg(owner, '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n', '-----BEGIN EC PUBLIC KEY-----\ny\n-----END EC PUBLIC KEY-----\n'),
      createDeploymentMsg(owner, '123456', built.sdl, Buffer.from(built.manifestVersion, 'hex'), { denom: 'uakt', amount: '5000000' }),
      createLeaseMsg({ owner, dseq: '123456', gseq: 1, oseq: 1, provider: 'akash1provider' }),
      closeDeploymentMsg(owner, '123456'),
    ];
    const bytes = await signTx(wallet, msgs, feeFor(800_000, 0.025), 'chrysalis-forge', { accountNumber: 42, sequence: 7, chainId: CHAIN_ID });
    const tx = decodeTx(bytes);
    expect(tx.memo).toBe('chrysalis-forge');
    expect(tx.signatures).toBe(1);
    expect(tx.fee).toMatchObject({ amount: [{ denom: 'uakt', amount: '20000' }], gasLimit: 800_000n });
    expect(tx.messages.map((m) => m.typeUrl)).toEqual([
      '/akash.cert.v1beta3.MsgCreateCertificate',
      '/akash.deployment.v1beta3.MsgCreateDeployment',
      '/akash.market.v1beta4.MsgCreateLease',
      '/akash.deployment.v1beta3.MsgCloseDeployment',
    ]);
    const [cert, deployment, lease, close] = tx.messages.map((m) => m.value as Record<string, never>);
    expect(cert).toMatchObject({ owner });
    expect(Buffer.from(cert!.cert).toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const dep = deployment as unknown as {
      id: { owner: string; dseq: { toString(): string } };
      version: Uint8Array;
      deposit: object;
      depositor: string;
      groups: { name: string; resources: { price: object; count: number; resource: { gpu: { attributes: { key: string }[] } } }[] }[];
    };
    expect(dep.id.owner).toBe(owner);
    expect(dep.id.dseq.toString()).toBe('123456');
    expect(Buffer.from(dep.version).toString('hex')).toBe(built.manifestVersion);
    expect(dep.deposit).toMatchObject({ denom: 'uakt', amount: '5000000' });
    expect(dep.depositor).toBe(owner);
    expect(dep.groups).toHaveLength(1);
    expect(dep.groups[0]).toMatchObject({ name: 'dcloud', resources: [{ count: 1, price: { denom: 'uakt' } }] });
    expect(dep.groups[0]!.resources[0]!.resource.gpu.attributes.map((a) => a.key)).toEqual(['vendor/nvidia/model/a100/ram/80Gi']);
    const bid = (lease as unknown as { bidId: { provider: string; dseq: { toString(): string }; gseq: number } }).bidId;
    expect([bid.provider, bid.dseq.toString(), bid.gseq]).toEqual(['akash1provider', '123456', 1]);
    expect((close as unknown as { id: { dseq: { toString(): string } } }).id.dseq.toString()).toBe('123456');
    // The chain's check: the signature over the sign doc with this account number and chain id.
    expect(await verify(bytes, 42)).toBe(true);
    expect(await verify(bytes, 43)).toBe(false);
  });

  test('a bad mnemonic is REJECTED without repeating it', async () => {
    await expect(walletFromMnemonic('these are not the twelve words you are looking for at all ok')).rejects.toMatchObject({ failureClass: 'REJECTED' });
    await expect(walletFromMnemonic('these are not the twelve words you are looking for at all ok')).rejects.not.toThrow(/looking/);
  });
});

describe('chain mode against a local node and provider', () => {
  const IMAGES = { 'forge/trainer': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', '0.3'] } } };
  const good = new FakeAkashProvider('akash1good000000000000000000000000000000000', IMAGES);
  const other = new FakeAkashProvider('akash1other00000000000000000000000000000000', IMAGES);
  let chain: FakeAkashChain;
  let address = '';
  const mnemonicFile = path.join(tmp('akash-mnemonic-'), 'mnemonic');
  writeFileSync(mnemonicFile, `${MNEMONIC}\n`, { mode: 0o600 });

  beforeAll(async () => {
    address = (await (await DirectSecp256k1HdWallet.fromMnemonic(MNEMONIC, { prefix: 'akash' })).getAccounts())[0]!.address;
    await Promise.all([good.start(), other.start()]);
    chain = new FakeAkashChain({
      chainId: CHAIN_ID,
      balances: { [address]: 50_000_000 },
      providers: [good, other],
      bids: [{ provider: good.address, amount: 700 }],
      blockMs: 100,
    });
    await chain.start();
  });
  afterAll(async () => {
    await chain.stop();
    await Promise.all([good.stop(), other.stop()]);
  });

  function config(): AkashBackendConfig {
    const c = parseConfig({
      backends: {
        akash: {
          kind: 'akash',
          mode: 'chain',
          hourly_usd: 2,
          akt_usd: 3,
          block_seconds: 6,
          poll_interval_ms: 50,
          request_timeout_ms: 5000,
          bid_timeout_seconds: 5,
          chain: { rest_url: chain.url, chain_id: CHAIN_ID, mnemonic_file: mnemonicFile },
          trainers: { 'chrysalis/trainer:latest': { image: 'forge/trainer' } },
        },
      },
    }).backends.akash;
    if (c?.kind !== 'akash') throw new Error('not akash');
    return c;
  }

  async function until(backend: Backend, ref: DeploymentRef, done: (s: DeploymentStatus) => boolean): Promise<DeploymentStatus> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const s = await backend.status(ref);
      if (done(s)) return s;
      if (Date.now() > deadline) throw new Error(`status never matched; last ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  test('certificate → deployment → lease → manifest over mTLS → SUCCEEDED → close, every transaction signed by the wallet', async () => {
    const home = tmp('akash-chain-home-');
    const backend = new AkashBackend('akash', config(), home);
    expect(await backend.health()).toMatchObject({ ok: true, detail: expect.stringMatching(new RegExp(`^chain mode, wallet ${address}: 50000000 uakt`)) });

    const raw = makeSignedSpec({ backend: { provider: 'akash', max_cost_usd: 10 } });
    const ref = await backend.submit(signedOf(raw), 1);
    expect(ref.data).toMatchObject({ mode: 'chain', owner: address, denom: 'uakt' });
    expect(Number(ref.data.dseq)).toBeGreaterThanOrEqual(1000);
    expect(await backend.submit(signedOf(raw), 1)).toEqual(ref); // the same dseq: no second deployment
    expect(chain.applied).toEqual(['MsgCreateCertificate', 'MsgCreateDeployment']);
    expect(chain.deployments.get(String(ref.data.dseq))?.version).toBe(Buffer.from(String(ref.data.manifest_version), 'hex').toString('base64'));

    const done = await until(backend, ref, (s) => s.state === 'SUCCEEDED' || s.state === 'FAILED');
    expect(done).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    // Cost: 700 uakt per block × blocks since the lease, at $3 per AKT.
    const blocks = done.costUsd / (700 * 3e-6);
    expect(blocks).toBeGreaterThanOrEqual(1);
    expect(Number.isInteger(Math.round(blocks * 1e6) / 1e6)).toBe(true);
    expect(good.manifests).toHaveLength(1);
    expect(good.clientNames.every((cn) => cn === address)).toBe(true);
    expect((await backend.logs(ref)).lines.map((l) => l.line)).toContain('{"event":"forge-agent","exit_code":0}');
    expect(await backend.collectArtifacts(ref, tmp('akash-chain-out-'))).toEqual(['metrics.json']);

    await backend.close(ref);
    await backend.close(ref);
    expect(chain.applied).toEqual(['MsgCreateCertificate', 'MsgCreateDeployment', 'MsgCreateLease', 'MsgCloseDeployment']);
    expect(chain.deployments.get(String(ref.data.dseq))?.state).toBe('closed');
    expect(good.running).toBe(0);
    // The client certificate is kept (owner-only) and reused: a second job publishes no other.
    const certFile = path.join(home, 'akash', 'akash', 'cert.json');
    expect((JSON.parse(readFileSync(certFile, 'utf8')) as { cert: string }).cert).toBe(chain.certificates.get(address)?.[0]);
    const raw2 = makeSignedSpec({ backend: { provider: 'akash', max_cost_usd: 10 } });
    const ref2 = await backend.submit(signedOf(raw2), 1);
    expect(chain.certificates.get(address)).toHaveLength(1);
    await backend.close(ref2);
  });

  test('a provider serving another certificate than the one it published on chain gets no manifest', async () => {
    chain.scenario.wrongCertificate = [good.address];
    try {
      const backend = new AkashBackend('akash', config(), tmp('akash-chain-home-'));
      const raw = makeSignedSpec({ backend: { provider: 'akash', max_cost_usd: 10 } });
      const ref = await backend.submit(signedOf(raw), 1);
      const before = good.manifests.length;
      await expect(backend.status(ref)).rejects.toThrow(/the server certificate is not the one published for it/);
      expect(good.manifests).toHaveLength(before);
      await backend.close(ref);
    } finally {
      delete chain.scenario.wrongCertificate;
    }
  });

  test("the reaper's listing: the wallet's active deployments that are forge attempts, by the mark on their group, from any replica", async () => {
    const home = tmp('akash-chain-home-');
    const backend = new AkashBackend('akash', config(), home);
    const raw = makeSignedSpec({ backend: { provider: 'akash', max_cost_usd: 10 } });
    const ref = await backend.submit(signedOf(raw), 1);
    const listed = await backend.listOpen();
    expect(listed).toEqual([{ ref, jobId: raw.job_id, attempt: 1, createdAt: ref.submittedAt }]);
    // The same wallet seen from a replica that recorded no attempt (its own FORGE_HOME): found from the chain alone.
    const elsewhere = await new AkashBackend('akash', config(), tmp('akash-chain-home-')).listOpen();
    const sameDeployment = expect.objectContaining({ id: ref.id, data: expect.objectContaining({ dseq: ref.data.dseq, owner: ref.data.owner }) });
    expect(elsewhere).toEqual([expect.objectContaining({ jobId: raw.job_id, attempt: 1, ref: sameDeployment })]);
    await backend.close(listed[0]!.ref);
    expect(chain.deployments.get(String(ref.data.dseq))?.state).toBe('closed');
    expect(await backend.listOpen()).toEqual([]);
  });
});
