/**
 * Keys and signatures as the device sees them (PROTOCOL.md §2, §5). Devices sign with
 * @noble/ed25519, which is portable like firmware; receivers verify with RFC 8032
 * cofactorless verification (the gateway uses node:crypto / OpenSSL).
 */
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { createHash } from 'node:crypto';

ed.hashes.sha512 = (m) => sha512(m);

/**
 * Domain-separation tags. WARNING: a signature made under one tag must never verify
 * under another; every signed message of the protocol starts with its own tag.
 */
export const FRAME_TAG = new TextEncoder().encode('VitalProof/frame/v1\0');
export const CONNECT_TAG = new TextEncoder().encode('VitalProof/connect/v1\0');

export interface DeviceKeys {
  /** 32-byte RFC 8032 secret seed; never leaves the device. */
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

/** Fresh keys, or deterministic ones from a 32-byte seed (the simulator's --seed). */
export function generateKeys(seed?: Uint8Array): DeviceKeys {
  const { secretKey, publicKey } = ed.keygen(seed);
  return { secretKey, publicKey };
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Ed25519 signature over FRAME_TAG ‖ body (§5.1). */
export function signBody(body: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return ed.sign(concat(FRAME_TAG, body), secretKey);
}

/** The exact bytes a frame signature covers. */
export function frameSigningMessage(body: Uint8Array): Uint8Array {
  return concat(FRAME_TAG, body);
}

export type KeyProblem = 'WRONG_LENGTH' | 'NON_CANONICAL' | 'NOT_ON_CURVE' | 'SMALL_ORDER' | 'MIXED_ORDER';

/**
 * The enrolment rule for public keys (§2.2): exactly 32 bytes, a canonical encoding of a
 * point on the curve, of prime order. Small-order and mixed-order keys are refused,
 * because verification rules disagree on them (cofactored vs. cofactorless) and an honest
 * key generator never produces one.
 * @returns the problem, or null for an acceptable key.
 */
export function checkPublicKey(pub: Uint8Array): KeyProblem | null {
  if (pub.length !== 32) return 'WRONG_LENGTH';
  let p: ed.Point;
  try {
    // zip215 mode accepts non-canonical encodings (y ≥ p, x = 0 with the sign bit set), so
    // that the re-encoding check below can name them instead of calling them off-curve.
    p = ed.Point.fromBytes(pub, true);
  } catch {
    return 'NOT_ON_CURVE';
  }
  if (Buffer.compare(Buffer.from(p.toBytes()), Buffer.from(pub)) !== 0) return 'NON_CANONICAL';
  if (p.isSmallOrder()) return 'SMALL_ORDER';
  if (!p.isTorsionFree()) return 'MIXED_ORDER';
  return null;
}

/** Short, stable fingerprint of a public key: first 8 bytes of SHA-256, hex. */
export function keyFingerprint(pub: Uint8Array): string {
  return createHash('sha256').update(pub).digest('hex').slice(0, 16);
}

/** Device id derived from a public key: first 8 bytes of SHA-256("VitalProof/device-id/v1" ‖ key). */
export function deviceIdFromKey(pub: Uint8Array): string {
  return createHash('sha256').update('VitalProof/device-id/v1').update(pub).digest('hex').slice(0, 16);
}
