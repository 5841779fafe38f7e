/**
 * Signs an API request as its owner (RFC 9421 HTTP Message Signatures, Ed25519, keyid = the owner's did:key), the
 * way an API under FORGE_API_AUTH=owners checks it (client/api/auth.ts): @method, @authority, @path, @query, and
 * with a body its Content-Digest (RFC 9530 sha-256); a random nonce makes every signature unique (no replay).
 */
import { randomBytes } from 'node:crypto';
import { base64urlnopad } from '@scure/base';
import { contentDigest, signRequest } from '../../jobspec/http-signature';

export interface RequestSigner {
  did: string;
  secretKey: Uint8Array;
}

const COMPONENTS = ['@method', '@authority', '@path', '@query'] as const;

/** The headers to add to a request: Signature-Input, Signature and, with a body, Content-Digest. */
export function signedRequestHeaders(
  signer: RequestSigner,
  req: { method: string; url: string; body?: string | Uint8Array },
  nowSeconds: number = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const headers: Record<string, string> = {};
  const components: string[] = [...COMPONENTS];
  if (req.body !== undefined) {
    headers['content-digest'] = contentDigest(req.body);
    components.push('content-digest');
  }
  const sig = signRequest(
    { method: req.method, url: req.url, headers },
    { secretKey: signer.secretKey, keyid: signer.did, created: nowSeconds, nonce: base64urlnopad.encode(randomBytes(16)), components },
  );
  return { ...headers, ...sig };
}
