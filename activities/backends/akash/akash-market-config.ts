/**
 * Which Akash market the operator config names for an `akash` backend: the chain with the operator's own wallet
 * (mode "chain", akash-chain.ts) or the Akash Console's managed wallet (mode "console", akash-console.ts). Secrets are
 * read when first needed (remote-state.ts readSecret), never kept in a record. Split from akash.ts.
 */
import path from 'node:path';
import type { AkashBackendConfig } from '../../../common/config';
import { readSecret } from '../remote/remote-state';
import { BackendError } from '../types';
import { AkashChain } from './akash-chain';
import { ConsoleMarket } from './akash-console';
import { ChainMarket, type AkashMarket } from './akash-market';

export function marketFor(name: string, c: AkashBackendConfig, home: string): AkashMarket {
  const certDir = path.join(home, 'akash', name);
  if (c.mode === 'chain' && c.chain) {
    const chain = c.chain;
    return new ChainMarket(
      new AkashChain({
        restUrl: chain.rest_url,
        chainId: chain.chain_id,
        mnemonic: () => readSecret(chain.mnemonic, chain.mnemonic_file, `backends.${name}.chain.mnemonic`),
        gas: chain.gas,
        gasPriceUakt: chain.gas_price_uakt,
        timeoutMs: c.request_timeout_ms,
        inclusionTimeoutMs: Math.max(60_000, c.block_seconds * 10_000),
        certificateFile: chain.certificate_file ?? path.join(certDir, 'cert.json'),
      }),
      { verifyProviderCertificates: chain.verify_provider_certificates, timeoutMs: c.request_timeout_ms },
    );
  }
  const con = c.console;
  if (!con) throw new BackendError('REJECTED', `backend ${name}: mode ${c.mode} is not configured`);
  return new ConsoleMarket({
    url: con.url,
    apiKey: () => readSecret(con.api_key, con.api_key_file, `backends.${name}.console.api_key`),
    depositUsd: con.deposit_usd,
    timeoutMs: c.request_timeout_ms,
    certificateFile: path.join(certDir, 'console-cert.json'),
  });
}
