/**
 * did:key for Ed25519 (docs/architecture.md §9): `did:key:z` + base58btc(multicodec varint 0xed 0x01 + 32-byte public key).
 */
import { Point } from '@noble/ed25519';
import { base58 } from '@scure/base';

const DID_KEY_PREFIX = 'did:key:';
const BASE58BTC_MULTIBASE = 'z';
/** The unsigned-varint encoding of multicodec 0xed (ed25519-pub). */
const ED25519_MULTICODEC = Uint8Array.of(0xed, 0x01);
const ED25519_KEY_BYTES = 32;

export class DidKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DidKeyError';
  }
}

export function didKeyFromPublicKey(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_KEY_BYTES) {
    throw new DidKeyError(`an Ed25519 public key has ${ED25519_KEY_BYTES} bytes`);
  }
  const bytes = new Uint8Array(ED25519_MULTICODEC.length + ED25519_KEY_BYTES);
  bytes.set(ED25519_MULTICODEC, 0);
  bytes.set(publicKey, ED25519_MULTICODEC.length);
  return `${DID_KEY_PREFIX}${BASE58BTC_MULTIBASE}${base58.encode(bytes)}`;
}

export function publicKeyFromDidKey(did: string): Uint8Array {
  if (typeof did !== 'string' || !did.startsWith(DID_KEY_PREFIX)) {
    throw new DidKeyError('not a did:key (expected "did:key:z6Mk…")');
  }
  const multibase = did.slice(DID_KEY_PREFIX.length);
  if (!multibase.startsWith(BASE58BTC_MULTIBASE)) {
    throw new DidKeyError('did:key must use base58btc multibase (the part after "did:key:" starts with "z")');
  }
  let bytes: Uint8Array;
  try {
    bytes = base58.decode(multibase.slice(BASE58BTC_MULTIBASE.length));
  } catch {
    throw new DidKeyError('did:key is not valid base58btc');
  }
  if (bytes.length < 2 || bytes[0] !== ED25519_MULTICODEC[0] || bytes[1] !== ED25519_MULTICODEC[1]) {
    throw new DidKeyError('did:key is not an Ed25519 key (multicodec must be 0xed01, "z6Mk…")');
  }
  const publicKey = bytes.slice(ED25519_MULTICODEC.length);
  if (publicKey.length !== ED25519_KEY_BYTES) {
    throw new DidKeyError(`did:key holds ${publicKey.length} key bytes, an Ed25519 key has ${ED25519_KEY_BYTES}`);
  }
  assertUsablePoint(publicKey);
  return publicKey;
}

export function isEd25519DidKey(did: string): boolean {
  try {
    publicKeyFromDidKey(did);
    return true;
  } catch {
    return false;
  }
}

/** A key that is not a canonical curve point, or has small order, could never sign (or signs too much). */
function assertUsablePoint(publicKey: Uint8Array): void {
  let point: Point;
  try {
    point = Point.fromBytes(publicKey, false);
  } catch {
    throw new DidKeyError('did:key does not hold a valid Ed25519 curve point');
  }
  if (point.isSmallOrder()) throw new DidKeyError('did:key holds a small-order Ed25519 point');
}
