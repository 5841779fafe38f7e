/**
 * Akash "chain" mode: the operator's own wallet (mnemonic from the operator config) signs Akash transactions with
 * cosmjs' SigningStargateClient and Akash's type registry, offline; they are broadcast, and the chain queried,
 * through the node's REST (LCD) endpoint. Certificate → MsgCreateDeployment with a deposit → bids → MsgCreateLease
 * for the cheapest under the cap → manifest to the provider over mTLS → MsgCloseDeployment.
 *
 * Deep imports only: the akashjs index loads keytar.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CertificateManager } from '@akashnetwork/akashjs/build/certificates/certificate-manager/CertificateManager';
import { getAkashTypeRegistry, Message } from '@akashnetwork/akashjs/build/stargate';
import type { SDL } from '@akashnetwork/akashjs/build/sdl/SDL/SDL';
import { MsgCreateCertificate } from '@akashnetwork/akash-api/akash/cert/v1beta3';
import { MsgCloseDeployment, MsgCreateDeployment } from '@akashnetwork/akash-api/akash/deployment/v1beta3';
import { MsgCreateLease } from '@akashnetwork/akash-api/akash/market/v1beta4';
import { DirectSecp256k1HdWallet, Registry, decodeTxRaw, type EncodeObject, type GeneratedType } from '@cosmjs/proto-signing';
import { SigningStargateClient, type StdFee } from '@cosmjs/stargate';
import { TxRaw } from 'cosmjs-types/cosmos/tx/v1beta1/tx';
import { z } from 'zod';
import { writeFileAtomic } from '../../../common/files';
import { ApiClient, isStatus } from '../remote/remote-http';
import { BackendError } from '../types';

// ---- transactions (pure: built and signed offline) -----------------------------------------------------------------

let registry: Registry | undefined;
/** cosmjs Registry with every Akash message type. */
export function akashRegistry(): Registry {
  // akash-api's generated types name the protobufjs Writer of its own nested copy of protobufjs, cosmjs that of the
  // top-level copy: the same class at run time, two types to the compiler.
  return (registry ??= new Registry(getAkashTypeRegistry() as unknown as Iterable<[string, GeneratedType]>));
}

export interface Coin {
  denom: string;
  amount: string;
}

export interface BidId {
  owner: string;
  dseq: string;
  gseq: number;
  oseq: number;
  provider: string;
}

export function createCertificateMsg(owner: string, certPem: string, publicKeyPem: string): EncodeObject {
  return {
    typeUrl: Message.MsgCreateCertificate,
    value: MsgCreateCertificate.fromPartial({ owner, cert: Buffer.from(certPem), pubkey: Buffer.from(publicKeyPem) }),
  };
}

/** `groups` is `sdl.groups()`; `version` the manifest version (sha256 of the sorted manifest). */
export function createDeploymentMsg(owner: string, dseq: string, sdl: SDL, version: Uint8Array, deposit: Coin): EncodeObject {
  return {
    typeUrl: Message.MsgCreateDeployment,
    value: MsgCreateDeployment.fromPartial({
      id: { owner, dseq },
      groups: sdl.groups(),
      version,
      deposit,
      depositor: owner,
    }),
  };
}

export function createLeaseMsg(bid: BidId): EncodeObject {
  return { typeUrl: Message.MsgCreateLease, value: MsgCreateLease.fromPartial({ bidId: bid }) };
}

export function closeDeploymentMsg(owner: string, dseq: string): EncodeObject {
  return { typeUrl: Message.MsgCloseDeployment, value: MsgCloseDeployment.fromPartial({ id: { owner, dseq } }) };
}

export interface SignerData {
  accountNumber: number;
  sequence: number;
  chainId: string;
}

export function feeFor(gas: number, gasPriceUakt: number): StdFee {
  return { amount: [{ denom: 'uakt', amount: String(Math.ceil(gas * gasPriceUakt)) }], gas: String(gas) };
}

export async function walletFromMnemonic(mnemonic: string): Promise<DirectSecp256k1HdWallet> {
  try {
    return await DirectSecp256k1HdWallet.fromMnemonic(mnemonic, { prefix: 'akash' });
  } catch (err) {
    // The message of a bad mnemonic never repeats it.
    throw new BackendError('REJECTED', `Akash mnemonic from the operator config is not valid (${(err as Error).message.split(':')[0]})`);
  }
}

/** Signs `msgs` offline (SIGN_MODE_DIRECT); returns the TxRaw bytes to broadcast. */
export async function signTx(
  wallet: DirectSecp256k1HdWallet,
  msgs: readonly EncodeObject[],
  fee: StdFee,
  memo: string,
  signer: SignerData,
): Promise<Uint8Array> {
  const [account] = await wallet.getAccounts();
  if (!account) throw new Error('the wallet has no account');
  const client = await SigningStargateClient.offline(wallet, { registry: akashRegistry() });
  const raw = await client.sign(account.address, msgs, fee, memo, signer);
  return TxRaw.encode(raw).finish();
}

/** The messages of a signed transaction, decoded with the Akash registry (for tests and diagnostics). */
export function decodeTx(bytes: Uint8Array): { memo: string; messages: { typeUrl: string; value: unknown }[]; fee: unknown; signatures: number } {
  const tx = decodeTxRaw(bytes);
  return {
    memo: tx.body.memo,
    messages: tx.body.messages.map((m) => ({ typeUrl: m.typeUrl, value: akashRegistry().decode(m) as unknown })),
    fee: tx.authInfo.fee,
    signatures: tx.signatures.length,
  };
}

// ---- the node's REST API ------------------------------------------------------------------------------------------

const uint = z.union([z.string(), z.number()]).transform((v) => String(v));
const small = z.union([z.string(), z.number()]).transform((v) => Number(v));
const coinSchema = z.object({ denom: z.string(), amount: z.string() });
const idSchema = z.object({ owner: z.string(), dseq: uint, gseq: small, oseq: small, provider: z.string() });

const accountSchema = z.object({
  account: z.looseObject({
    account_number: uint.optional(),
    sequence: uint.optional(),
    base_account: z.looseObject({ account_number: uint, sequence: uint }).optional(),
  }),
});
const broadcastSchema = z.object({ tx_response: z.object({ txhash: z.string(), code: z.number(), raw_log: z.string().default('') }) });
const txSchema = z.object({ tx_response: z.object({ code: z.number(), height: uint, raw_log: z.string().default('') }) });
const latestBlockSchema = z.object({ block: z.object({ header: z.object({ height: uint }) }) });
const bidsSchema = z.object({
  bids: z.array(z.object({ bid: z.object({ bid_id: idSchema, state: z.string(), price: coinSchema, created_at: uint.optional() }) })),
});
const leasesSchema = z.object({
  leases: z.array(z.object({ lease: z.object({ lease_id: idSchema, state: z.string(), price: coinSchema, created_at: uint.optional() }) })),
});
const deploymentSchema = z.object({ deployment: z.object({ deployment_id: z.object({ owner: z.string(), dseq: uint }), state: z.string() }) });
const providerSchema = z.object({ provider: z.object({ owner: z.string(), host_uri: z.string() }) });
const deploymentListSchema = z.object({
  deployments: z.array(
    z.object({
      deployment: z.object({ deployment_id: z.object({ owner: z.string(), dseq: uint }), state: z.string(), version: z.string().default('') }),
      groups: z.array(z.object({ group_spec: z.object({ name: z.string() }) })).default([]),
    }),
  ),
  pagination: z.object({ next_key: z.string().nullish() }).nullish(),
});
/** The deployment list is read in pages of this many, at most this many pages. */
const LIST_PAGE = 100;
const LIST_MAX_PAGES = 50;
const certificatesSchema = z.object({
  certificates: z.array(
    z.object({ certificate: z.object({ state: z.string(), cert: z.string(), pubkey: z.string().optional() }), serial: z.string().optional() }),
  ),
});
const balancesSchema = z.object({ balances: z.array(coinSchema) });

export interface ChainBid {
  id: BidId;
  state: string;
  /** Per block, in `denom`. */
  price: { denom: string; amount: number };
}

export interface ChainLease {
  id: BidId;
  state: string;
  price: { denom: string; amount: number };
  createdHeight?: number;
}

export interface ClientCertificate {
  cert: string;
  publicKey: string;
  privateKey: string;
}

const certFileSchema = z.object({ cert: z.string(), publicKey: z.string(), privateKey: z.string() });

export interface ChainOptions {
  restUrl: string;
  chainId: string;
  mnemonic: () => Promise<string>;
  gas: number;
  gasPriceUakt: number;
  timeoutMs: number;
  /** How long to wait for a broadcast transaction to be included. */
  inclusionTimeoutMs: number;
  certificateFile: string;
}

/** The chain as seen by one wallet. Broadcasts are serialized (one account sequence). */
export class AkashChain {
  readonly rest: ApiClient;
  private wallet: { key: string; wallet: DirectSecp256k1HdWallet; address: string } | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ChainOptions) {
    this.rest = new ApiClient({ service: 'Akash node', baseUrl: o.restUrl, timeoutMs: o.timeoutMs });
  }

  async account(): Promise<{ wallet: DirectSecp256k1HdWallet; address: string }> {
    const mnemonic = await this.o.mnemonic();
    if (this.wallet?.key !== mnemonic) {
      const wallet = await walletFromMnemonic(mnemonic);
      const [acc] = await wallet.getAccounts();
      if (!acc) throw new BackendError('REJECTED', 'Akash wallet has no account');
      this.wallet = { key: mnemonic, wallet, address: acc.address };
    }
    return { wallet: this.wallet.wallet, address: this.wallet.address };
  }

  async address(): Promise<string> {
    return (await this.account()).address;
  }

  async height(): Promise<number> {
    const b = await this.rest.json('GET', 'cosmos/base/tendermint/v1beta1/blocks/latest', latestBlockSchema);
    return Number(b.block.header.height);
  }

  async balance(denom: string): Promise<number> {
    const b = await this.rest.json('GET', `cosmos/bank/v1beta1/balances/${await this.address()}`, balancesSchema);
    return Number(b.balances.find((c) => c.denom === denom)?.amount ?? 0);
  }

  /** Signs and broadcasts, then waits until the transaction is in a block; a failed transaction throws. */
  broadcast(msgs: readonly EncodeObject[], memo: string): Promise<string> {
    const run = this.queue.then(() => this.broadcastNow(msgs, memo));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async broadcastNow(msgs: readonly EncodeObject[], memo: string): Promise<string> {
    const { wallet, address } = await this.account();
    let hash = '';
    for (let tries = 1; ; tries++) {
      const acc = await this.rest.json('GET', `cosmos/auth/v1beta1/accounts/${address}`, accountSchema).catch((err: unknown) => {
        if (isStatus(err, 404)) throw new BackendError('NO_CAPACITY', `Akash account ${address} does not exist on chain (never funded)`);
        throw err;
      });
      const a = acc.account.base_account ?? acc.account;
      const signer = { accountNumber: Number(a.account_number ?? 0), sequence: Number(a.sequence ?? 0), chainId: this.o.chainId };
      const bytes = await signTx(wallet, msgs, feeFor(this.o.gas, this.o.gasPriceUakt), memo, signer);
      const res = await this.rest.json('POST', 'cosmos/tx/v1beta1/txs', broadcastSchema, {
        json: { tx_bytes: Buffer.from(bytes).toString('base64'), mode: 'BROADCAST_MODE_SYNC' },
      });
      // 32: account sequence mismatch (another transaction of this wallet got in first): sign again.
      if (res.tx_response.code === 32 && tries < 3) continue;
      if (res.tx_response.code !== 0) throw txError(res.tx_response.code, res.tx_response.raw_log, msgs);
      hash = res.tx_response.txhash;
      break;
    }
    const deadline = Date.now() + this.o.inclusionTimeoutMs;
    for (;;) {
      try {
        const tx = await this.rest.json('GET', `cosmos/tx/v1beta1/txs/${hash}`, txSchema);
        if (tx.tx_response.code !== 0) throw txError(tx.tx_response.code, tx.tx_response.raw_log, msgs);
        return hash;
      } catch (err) {
        if (!isStatus(err, 404)) throw err;
      }
      if (Date.now() > deadline) throw new Error(`Akash transaction ${hash} not in a block after ${this.o.inclusionTimeoutMs} ms`);
      await sleep(500);
    }
  }

  async deploymentState(owner: string, dseq: string): Promise<string | 'missing'> {
    try {
      const d = await this.rest.json('GET', 'akash/deployment/v1beta3/deployments/info', deploymentSchema, { query: { 'id.owner': owner, 'id.dseq': dseq } });
      return d.deployment.state;
    } catch (err) {
      if (isStatus(err, 404)) return 'missing';
      throw err;
    }
  }

  /** `owner`'s active deployments with their on-chain manifest version (hex). */
  async activeDeployments(owner: string): Promise<{ dseq: string; owner: string; version: string; groups: string[] }[]> {
    const found: { dseq: string; owner: string; version: string; groups: string[] }[] = [];
    let key: string | undefined;
    for (let page = 0; page < LIST_MAX_PAGES; page++) {
      const query = { 'filters.owner': owner, 'filters.state': 'active', 'pagination.limit': LIST_PAGE, ...(key && { 'pagination.key': key }) };
      const r = await this.rest.json('GET', 'akash/deployment/v1beta3/deployments/list', deploymentListSchema, { query });
      for (const { deployment: d, groups } of r.deployments) {
        if (d.state === 'active') {
          found.push({ dseq: d.deployment_id.dseq, owner: d.deployment_id.owner, version: Buffer.from(d.version, 'base64').toString('hex'), groups: groups.map((g) => g.group_spec.name) });
        }
      }
      key = r.pagination?.next_key ?? undefined;
      if (!key) break;
    }
    return found;
  }

  async bids(owner: string, dseq: string): Promise<ChainBid[]> {
    const r = await this.rest.json('GET', 'akash/market/v1beta4/bids/list', bidsSchema, { query: { 'filters.owner': owner, 'filters.dseq': dseq } });
    return r.bids.map(({ bid }) => ({ id: bid.bid_id, state: bid.state, price: { denom: bid.price.denom, amount: Number(bid.price.amount) } }));
  }

  async leases(owner: string, dseq: string): Promise<ChainLease[]> {
    const r = await this.rest.json('GET', 'akash/market/v1beta4/leases/list', leasesSchema, { query: { 'filters.owner': owner, 'filters.dseq': dseq } });
    return r.leases.map(({ lease }) => ({
      id: lease.lease_id,
      state: lease.state,
      price: { denom: lease.price.denom, amount: Number(lease.price.amount) },
      ...(lease.created_at !== undefined && { createdHeight: Number(lease.created_at) }),
    }));
  }

  async providerHostUri(provider: string): Promise<string> {
    const p = await this.rest.json('GET', `akash/provider/v1beta3/providers/${provider}`, providerSchema);
    return p.provider.host_uri;
  }

  /** Valid certificates (PEM) an address published on chain. */
  async certificates(owner: string): Promise<string[]> {
    const r = await this.rest.json('GET', 'akash/cert/v1beta3/certificates/list', certificatesSchema, { query: { 'filter.owner': owner, 'filter.state': 'valid' } });
    return r.certificates.filter((c) => c.certificate.state === 'valid').map((c) => Buffer.from(c.certificate.cert, 'base64').toString('utf8'));
  }

  /**
   * The client certificate for provider mTLS: the one kept in certificateFile when it is still valid on chain, else a
   * new one, published with MsgCreateCertificate and kept (mode 0600).
   */
  async clientCertificate(): Promise<ClientCertificate> {
    const owner = await this.address();
    const kept = await readCertFile(this.o.certificateFile);
    if (kept && (await this.certificates(owner)).some((c) => c.trim() === kept.cert.trim())) return kept;
    const pem = new CertificateManager().generatePEM(owner);
    await this.broadcast([createCertificateMsg(owner, pem.cert, pem.publicKey)], 'chrysalis-forge: client certificate');
    const cert = { cert: pem.cert, publicKey: pem.publicKey, privateKey: pem.privateKey };
    await writeCertFile(this.o.certificateFile, cert);
    return cert;
  }
}

export async function readCertFile(file: string): Promise<ClientCertificate | undefined> {
  try {
    const parsed = certFileSchema.safeParse(JSON.parse(await fs.readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export async function writeCertFile(file: string, cert: ClientCertificate): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, `${JSON.stringify(cert)}\n`);
  await fs.chmod(file, 0o600);
}

function txError(code: number, rawLog: string, msgs: readonly EncodeObject[]): Error {
  const what = msgs.map((m) => m.typeUrl.split('.').pop()).join(', ');
  // 5: insufficient funds; 13: insufficient fee — the operator's wallet cannot pay: another backend may.
  if (code === 5 || code === 13) return new BackendError('NO_CAPACITY', `Akash ${what} failed: wallet cannot pay (code ${code}: ${rawLog.slice(0, 300)})`);
  return new Error(`Akash ${what} failed (code ${code}: ${rawLog.slice(0, 300)})`);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
