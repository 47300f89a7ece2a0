/**
 * The gateway's signature rule (PROTOCOL.md §5.2): RFC 8032 Ed25519, cofactorless, as
 * OpenSSL implements it through node:crypto. Auditors re-verify with the same rule.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';

/** SubjectPublicKeyInfo DER prefix for a raw 32-byte Ed25519 key (RFC 8410). */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function ed25519KeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new TypeError(`Ed25519 public key must be 32 bytes, got ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** A bounded cache of KeyObjects by raw key (hex), so that each key is parsed once. */
export class KeyCache {
  private readonly keys = new Map<string, KeyObject>();
  constructor(private readonly max = 100_000) {}
  get(raw: Uint8Array): KeyObject {
    const hex = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('hex');
    let k = this.keys.get(hex);
    if (!k) {
      if (this.keys.size >= this.max) this.keys.delete(this.keys.keys().next().value as string);
      k = ed25519KeyObject(raw);
      this.keys.set(hex, k);
    }
    return k;
  }
}

/** Verifies sig over (prefix ‖ message); false for any malformed input, never throws. */
export function verifyEd25519(key: KeyObject, message: Uint8Array, sig: Uint8Array): boolean {
  if (sig.length !== 64) return false;
  try {
    return verify(null, message, key, sig);
  } catch {
    return false;
  }
}
