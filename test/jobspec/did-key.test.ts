import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { base58 } from '@scure/base';
import { DidKeyError, didKeyFromPublicKey, isEd25519DidKey, publicKeyFromDidKey } from '../../jobspec/did-key';
import { generateKeyPair } from '../../jobspec/signing';

// W3C did:key spec, Ed25519 example.
const W3C_DID = 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp';
const W3C_KEY_HEX = '3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29';

function didFromBytes(bytes: Uint8Array): string {
  return `did:key:z${base58.encode(bytes)}`;
}

describe('did:key (Ed25519)', () => {
  it('decodes the W3C example', () => {
    const key = publicKeyFromDidKey(W3C_DID);
    expect(bytesToHex(key)).toBe(W3C_KEY_HEX);
    expect(base58.encode(key)).toBe('4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS');
  });

  it('encodes the W3C example', () => {
    expect(didKeyFromPublicKey(hexToBytes(W3C_KEY_HEX))).toBe(W3C_DID);
  });

  it('round trips a fresh key, with the z6Mk prefix', () => {
    const { publicKey, did } = generateKeyPair();
    expect(did).toMatch(/^did:key:z6Mk/);
    expect(publicKeyFromDidKey(did)).toEqual(publicKey);
    expect(isEd25519DidKey(did)).toBe(true);
  });

  const ed = (key: Uint8Array) => Uint8Array.of(0xed, 0x01, ...key);
  const validKey = hexToBytes(W3C_KEY_HEX);
  it.each<[string, string, RegExp]>([
    ['another DID method', 'did:web:example.com', /not a did:key/],
    ['no prefix at all', 'z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp', /not a did:key/],
    ['a non-base58btc multibase', 'did:key:f' + W3C_KEY_HEX, /base58btc multibase/],
    ['characters outside base58', 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0', /not valid base58btc/],
    ['a secp256k1 key (multicodec 0xe7)', didFromBytes(Uint8Array.of(0xe7, 0x01, 2, ...validKey)), /multicodec must be 0xed01/],
    ['an X25519 key (multicodec 0xec)', didFromBytes(Uint8Array.of(0xec, 0x01, ...validKey)), /not an Ed25519 key/],
    ['an empty key', 'did:key:z', /not an Ed25519 key/],
    ['a 31-byte key', didFromBytes(ed(validKey.slice(1))), /31 key bytes/],
    ['a 33-byte key', didFromBytes(ed(Uint8Array.of(...validKey, 0))), /33 key bytes/],
    ['a non-canonical point encoding', didFromBytes(ed(new Uint8Array(32).fill(0xff))), /valid Ed25519 curve point/],
    ['the identity point (small order)', didFromBytes(ed(Uint8Array.of(1, ...new Uint8Array(31)))), /small-order/],
    ['a DID URL with a fragment', `${W3C_DID}#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp`, /base58btc/],
  ])('refuses %s with a DidKeyError', (_name, did, message) => {
    expect(() => publicKeyFromDidKey(did)).toThrow(DidKeyError);
    expect(() => publicKeyFromDidKey(did)).toThrow(message);
    expect(isEd25519DidKey(did)).toBe(false);
  });

  it('refuses to encode a key of the wrong length', () => {
    expect(() => didKeyFromPublicKey(new Uint8Array(31))).toThrow(DidKeyError);
  });
});
