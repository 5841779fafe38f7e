/**
 * A local Akash node's REST (LCD) API: accounts, balances, latest block, transaction broadcast and lookup, and the
 * deployment, market, provider and cert modules' queries (gRPC-gateway JSON shapes). Broadcast transactions are
 * decoded with the Akash registry and their signatures checked as the chain does (SIGN_MODE_DIRECT over the sign
 * doc with the account number and sequence); only then are their messages applied.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { encodeSecp256k1Pubkey, pubkeyToAddress } from '@cosmjs/amino';
import { Secp256k1, Secp256k1Signature, sha256 } from '@cosmjs/crypto';
import { makeSignBytes, makeSignDoc } from '@cosmjs/proto-signing';
import { PubKey } from 'cosmjs-types/cosmos/crypto/secp256k1/keys';
import { AuthInfo, TxBody, TxRaw } from 'cosmjs-types/cosmos/tx/v1beta1/tx';
import { akashRegistry } from '../../activities/backends/akash/akash-chain';
import { endLeases, readBody, send, type FakeAkashProvider } from './akash-provider';
import { FaultyServer } from './faults';

export interface ChainScenario {
  chainId: string;
  /** Funded accounts: address → uakt. */
  balances: Record<string, number>;
  providers: FakeAkashProvider[];
  /** Bids each new deployment gets (price per block). */
  bids: { provider: string; amount: number }[];
  blockMs: number;
  /** Providers whose on-chain certificate is not the one they serve (for pinning tests). */
  wrongCertificate?: string[];
}

interface Deployment {
  owner: string;
  dseq: string;
  state: 'active' | 'closed';
  denom: string;
  version: string;
  /** Its groups' names (the SDL's placement names). */
  groups: string[];
  leases: { provider: string; gseq: number; oseq: number; state: string; amount: number; height: number }[];
}

/** Long-ish values from the generated types (dseq is a Long) as strings. */
function str(v: unknown): string {
  return typeof v === 'object' && v !== null && 'toString' in v ? String(v.toString()) : String(v);
}

export class FakeAkashChain extends FaultyServer {
  readonly txs = new Map<string, { code: number; height: number; log: string; messages: string[] }>();
  readonly deployments = new Map<string, Deployment>();
  readonly certificates = new Map<string, string[]>();
  private readonly accounts = new Map<string, { number: number; sequence: number }>();
  private server: http.Server | undefined;
  private readonly t0 = Date.now();
  url = '';

  constructor(readonly scenario: ChainScenario) {
    super();
    let n = 1;
    for (const addr of Object.keys(scenario.balances)) this.accounts.set(addr, { number: n++, sequence: 0 });
  }

  height(): number {
    return 1000 + Math.floor((Date.now() - this.t0) / this.scenario.blockMs);
  }

  /** Messages (type names) of the transactions applied, in order. */
  get applied(): string[] {
    return [...this.txs.values()].filter((t) => t.code === 0).flatMap((t) => t.messages);
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => send(res, 500, { code: 2, message: (err as Error).message }));
    });
    this.url = await this.listenWith(this.server, '127.0.0.1');
  }

  /** The provider loses a deployment's leases now (closed on chain, its container gone). */
  loseLease(dseq: string): void {
    const d = this.deployments.get(dseq);
    if (d) endLeases(d.leases, dseq, this.scenario.providers);
  }

  async stop(): Promise<void> {
    this.faults.clear();
    await this.up();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }

  private provider(address: string): FakeAkashProvider | undefined {
    return this.scenario.providers.find((p) => p.address === address);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (await this.faults.gate(req, res)) return;
    const url = new URL(req.url ?? '/', 'http://node');
    const q = url.searchParams;
    const p = url.pathname;
    if (p === '/cosmos/tx/v1beta1/txs' && req.method === 'POST') return this.broadcast(JSON.parse(await readBody(req)) as { tx_bytes: string }, res);
    let m = /^\/cosmos\/tx\/v1beta1\/txs\/([0-9A-F]+)$/.exec(p);
    if (m) {
      const tx = this.txs.get(m[1]!);
      if (!tx) return send(res, 404, { code: 5, message: `tx not found: ${m[1]}` });
      return send(res, 200, { tx_response: { txhash: m[1], height: String(tx.height), code: tx.code, raw_log: tx.log } });
    }
    m = /^\/cosmos\/auth\/v1beta1\/accounts\/(akash1\w+)$/.exec(p);
    if (m) {
      const a = this.accounts.get(m[1]!);
      if (!a) return send(res, 404, { code: 5, message: `account ${m[1]} not found` });
      return send(res, 200, { account: { '@type': '/cosmos.auth.v1beta1.BaseAccount', address: m[1], pub_key: null, account_number: String(a.number), sequence: String(a.sequence) } });
    }
    m = /^\/cosmos\/bank\/v1beta1\/balances\/(akash1\w+)$/.exec(p);
    if (m) return send(res, 200, { balances: [{ denom: 'uakt', amount: String(this.scenario.balances[m[1]!] ?? 0) }], pagination: { next_key: null, total: '1' } });
    if (p === '/cosmos/base/tendermint/v1beta1/blocks/latest') return send(res, 200, { block_id: {}, block: { header: { chain_id: this.scenario.chainId, height: String(this.height()) } } });
    if (p === '/akash/deployment/v1beta3/deployments/info') {
      const d = this.deployments.get(q.get('id.dseq') ?? '');
      if (!d || d.owner !== q.get('id.owner')) return send(res, 404, { code: 5, message: 'deployment not found' });
      return send(res, 200, { deployment: { deployment_id: { owner: d.owner, dseq: d.dseq }, state: d.state, version: d.version, created_at: '1000' }, groups: [], escrow_account: {} });
    }
    if (p === '/akash/deployment/v1beta3/deployments/list') {
      const state = q.get('filters.state');
      const list = [...this.deployments.values()].filter((d) => d.owner === q.get('filters.owner') && (!state || d.state === state));
      const deployments = list.map((d) => ({
        deployment: { deployment_id: { owner: d.owner, dseq: d.dseq }, state: d.state, version: d.version, created_at: '1000' },
        groups: d.groups.map((name, i) => ({ group_id: { owner: d.owner, dseq: d.dseq, gseq: i + 1 }, state: d.state === 'active' ? 'open' : 'closed', group_spec: { name } })),
        escrow_account: {},
      }));
      return send(res, 200, { deployments, pagination: { next_key: null, total: String(deployments.length) } });
    }
    if (p === '/akash/market/v1beta4/bids/list') {
      const d = this.deployments.get(q.get('filters.dseq') ?? '');
      const open = d && d.state === 'active' && !d.leases.length;
      const bids = !d ? [] : this.scenario.bids.map((b) => ({
        bid: { bid_id: { owner: d.owner, dseq: d.dseq, gseq: 1, oseq: 1, provider: b.provider }, state: open ? 'open' : d.leases.some((l) => l.provider === b.provider) ? 'active' : 'closed', price: { denom: d.denom, amount: b.amount.toFixed(18) }, created_at: '1001' },
        escrow_account: {},
      }));
      return send(res, 200, { bids, pagination: { next_key: null, total: String(bids.length) } });
    }
    if (p === '/akash/market/v1beta4/leases/list') {
      const d = this.deployments.get(q.get('filters.dseq') ?? '');
      const leases = !d ? [] : d.leases.map((l) => ({
        lease: { lease_id: { owner: d.owner, dseq: d.dseq, gseq: l.gseq, oseq: l.oseq, provider: l.provider }, state: l.state, price: { denom: d.denom, amount: l.amount.toFixed(18) }, created_at: String(l.height), closed_on: '0' },
        escrow_payment: {},
      }));
      return send(res, 200, { leases, pagination: { next_key: null, total: String(leases.length) } });
    }
    m = /^\/akash\/provider\/v1beta3\/providers\/(akash1\w+)$/.exec(p);
    if (m) {
      const prov = this.provider(m[1]!);
      if (!prov) return send(res, 404, { code: 5, message: 'provider not found' });
      return send(res, 200, { provider: { owner: prov.address, host_uri: prov.url, attributes: [], info: { email: '', website: '' } } });
    }
    if (p === '/akash/cert/v1beta3/certificates/list') {
      const owner = q.get('filter.owner') ?? '';
      const prov = this.provider(owner);
      const pems = prov
        ? [
            this.scenario.wrongCertificate?.includes(owner)
              ? this.scenario.providers.find((x) => x !== prov)!.certificate.cert
              : prov.certificate.cert,
          ]
        : (this.certificates.get(owner) ?? []);
      return send(res, 200, { certificates: pems.map((pem, i) => ({ certificate: { state: 'valid', cert: Buffer.from(pem).toString('base64'), pubkey: '' }, serial: String(i + 1) })), pagination: {} });
    }
    return send(res, 404, { code: 12, message: `Not Implemented: ${req.method} ${p}` });
  }

  private broadcast(body: { tx_bytes: string }, res: ServerResponse): void {
    const bytes = Buffer.from(body.tx_bytes, 'base64');
    const hash = Buffer.from(sha256(bytes)).toString('hex').toUpperCase();
    const raw = TxRaw.decode(bytes);
    const auth = AuthInfo.decode(raw.authInfoBytes);
    const txBody = TxBody.decode(raw.bodyBytes);
    const signer = auth.signerInfos[0];
    const reject = (code: number, log: string): void => {
      this.txs.set(hash, { code, height: this.height(), log, messages: [] });
      send(res, 200, { tx_response: { txhash: hash, code, raw_log: log } });
    };
    if (!signer?.publicKey || raw.signatures.length !== 1) return reject(4, 'signature verification failed: no signer');
    const pubkey = PubKey.decode(signer.publicKey.value).key;
    const address = pubkeyToAddress(encodeSecp256k1Pubkey(pubkey), 'akash');
    const account = this.accounts.get(address);
    if (!account) return reject(9, `account ${address} not found`);
    if (Number(signer.sequence) !== account.sequence) return reject(32, `account sequence mismatch, expected ${account.sequence}, got ${signer.sequence}`);
    const signBytes = makeSignBytes(makeSignDoc(raw.bodyBytes, raw.authInfoBytes, this.scenario.chainId, account.number));
    // Synchronous verification through the async API is not possible here; verify in the microtask below.
    void Secp256k1.verifySignature(Secp256k1Signature.fromFixedLength(raw.signatures[0]!), sha256(signBytes), pubkey).then((ok) => {
      if (!ok) return reject(4, 'signature verification failed');
      const messages: string[] = [];
      try {
        for (const any of txBody.messages) {
          const msg = akashRegistry().decode(any) as Record<string, unknown>;
          this.apply(any.typeUrl, msg, address);
          messages.push(any.typeUrl.split('.').pop() ?? any.typeUrl);
        }
      } catch (err) {
        return reject(1, (err as Error).message);
      }
      account.sequence++;
      this.txs.set(hash, { code: 0, height: this.height(), log: '', messages });
      send(res, 200, { tx_response: { txhash: hash, code: 0, raw_log: '' } });
    });
  }

  private apply(typeUrl: string, msg: Record<string, unknown>, signer: string): void {
    const type = typeUrl.split('.').pop();
    if (type === 'MsgCreateCertificate') {
      if (msg.owner !== signer) throw new Error('certificate owner is not the signer');
      this.certificates.set(signer, [...(this.certificates.get(signer) ?? []), Buffer.from(msg.cert as Uint8Array).toString('utf8')]);
    } else if (type === 'MsgCreateDeployment') {
      const id = msg.id as { owner: string; dseq: unknown };
      const dseq = str(id.dseq);
      if (id.owner !== signer) throw new Error('deployment owner is not the signer');
      if (this.deployments.has(dseq)) throw new Error(`deployment ${dseq} exists`);
      const groups = msg.groups as { name: string; resources: { price: { denom: string } }[] }[];
      const deposit = msg.deposit as { denom: string; amount: string };
      if (Number(deposit.amount) < 500_000) throw new Error('deposit below the minimum');
      this.deployments.set(dseq, { owner: signer, dseq, state: 'active', denom: groups[0]!.resources[0]!.price.denom, version: Buffer.from(msg.version as Uint8Array).toString('base64'), groups: groups.map((g) => g.name), leases: [] });
    } else if (type === 'MsgCreateLease') {
      const bid = msg.bidId as { owner: string; dseq: unknown; gseq: number; oseq: number; provider: string };
      const d = this.deployments.get(str(bid.dseq));
      const offer = this.scenario.bids.find((b) => b.provider === bid.provider);
      if (!d || d.state !== 'active' || !offer) throw new Error('no open bid');
      d.leases.push({ provider: bid.provider, gseq: bid.gseq, oseq: bid.oseq, state: 'active', amount: offer.amount, height: this.height() });
      this.provider(bid.provider)?.expectLease({ owner: d.owner, dseq: d.dseq, gseq: bid.gseq, oseq: bid.oseq });
    } else if (type === 'MsgCloseDeployment') {
      const id = msg.id as { owner: string; dseq: unknown };
      const d = this.deployments.get(str(id.dseq));
      if (!d || d.owner !== signer) throw new Error('deployment not found');
      d.state = 'closed';
      for (const l of d.leases) {
        l.state = 'closed';
        this.provider(l.provider)?.dropLease(d.dseq);
      }
    } else {
      throw new Error(`unsupported message ${typeUrl}`);
    }
  }
}
