/**
 * The statements of PROTOCOL.md §5.2 on how A, R and S are read, held against the gateway's
 * verifier (node:crypto, OpenSSL): R is compared as bytes with the canonical encoding of
 * R' = [S]B − [k]A and never decoded; S ≥ L is refused; A is not checked by the verification
 * itself, which is why every key must pass the key rule of §2.2 first.
 */
import { createHash } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { describe, expect, it } from 'vitest';
import { checkPublicKey, generateKeys } from '../../../firmware-proto/signing.js';
import { ed25519KeyObject, verifyEd25519 } from '../../../gateway/verify/ed25519.js';

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const le = (b: Uint8Array): bigint => b.reduceRight((x, byte) => (x << 8n) | BigInt(byte), 0n);
const toLe = (x: bigint): Buffer => {
  const o = Buffer.alloc(32);
  for (let i = 0; i < 32; i++, x >>= 8n) o[i] = Number(x & 255n);
  return o;
};
const hex = (h: string): Buffer => Buffer.from(h, 'hex');

const seed = new Uint8Array(32).fill(7);
const { publicKey: A } = generateKeys(seed);
/** The secret scalar a of RFC 8032 §5.1.5: the clamped first half of SHA-512(seed). */
const h = createHash('sha512').update(seed).digest();
h[0]! &= 248;
h[31]! &= 127;
h[31]! |= 64;
const a = le(h.subarray(0, 32)) % L;
const msg = Buffer.from('VitalProof §5.2');
const key = ed25519KeyObject(A);

/** A signature whose R is the given 32 bytes and whose S makes [S]B − [k]A the identity. */
function sigMakingIdentity(R: Uint8Array): Buffer {
  const k = le(createHash('sha512').update(R).update(A).update(msg).digest()) % L;
  return Buffer.concat([R, toLe((k * a) % L)]);
}

const IDENTITY = `01${'00'.repeat(31)}`;
const IDENTITY_SIGN_BIT = `01${'00'.repeat(30)}80`; // x = 0 with the sign bit set
const IDENTITY_Y_P_PLUS_1 = `ee${'ff'.repeat(30)}7f`; // y = p + 1 ≥ p

describe('PROTOCOL.md §5.2 against the gateway verifier', () => {
  it('verifies an honest signature', () => {
    expect(verifyEd25519(key, msg, ed.sign(msg, seed))).toBe(true);
  });

  it('compares R as bytes: the identity is accepted when the equation holds, its non-canonical encodings are not', () => {
    expect(verifyEd25519(key, msg, sigMakingIdentity(hex(IDENTITY)))).toBe(true);
    expect(verifyEd25519(key, msg, sigMakingIdentity(hex(IDENTITY_SIGN_BIT)))).toBe(false);
    expect(verifyEd25519(key, msg, sigMakingIdentity(hex(IDENTITY_Y_P_PLUS_1)))).toBe(false);
  });

  it('refuses S ≥ L instead of reducing it', () => {
    const good = Buffer.from(ed.sign(msg, seed));
    expect(verifyEd25519(key, msg, Buffer.concat([good.subarray(0, 32), toLe(le(good.subarray(32)) + L)]))).toBe(false);
  });

  it('does not refuse a small-order or non-canonical A itself: under the identity, R = [s]B, S = s verifies any message; §2.2 refuses those keys', () => {
    const s = 12345n;
    const sig = Buffer.concat([ed.Point.BASE.multiply(s).toBytes(), toLe(s)]);
    for (const [encoding, problem] of [
      [IDENTITY, 'SMALL_ORDER'],
      [IDENTITY_SIGN_BIT, 'NON_CANONICAL'],
      [IDENTITY_Y_P_PLUS_1, 'NON_CANONICAL'],
    ] as const) {
      expect(verifyEd25519(ed25519KeyObject(hex(encoding)), msg, sig)).toBe(true);
      expect(verifyEd25519(ed25519KeyObject(hex(encoding)), Buffer.from('any other message'), sig)).toBe(true);
      expect(checkPublicKey(hex(encoding))).toBe(problem);
    }
  });
});
