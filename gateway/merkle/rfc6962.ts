/**
 * RFC 9162 (RFC 6962 v2) Merkle tree hashing with SHA-256, the hash of every tree this
 * library builds or checks. RFC 9162 §2.1.1 defines, for a list of n inputs D[n]:
 *
 *     MTH({})       = HASH()                                   (the empty tree)
 *     MTH({d(0)})   = HASH(0x00 || d(0))                       (a leaf)
 *     MTH(D[n])     = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))  (a node; k = largest power of two < n)
 *
 * with HASH = SHA-256 (the RFC 6962 hash). Nothing here knows what the leaves mean.
 */
import { hash } from 'node:crypto';
import { assertBytes } from './args.js';

/** SHA-256 output length in bytes; every leaf hash, node hash and root has this length. */
export const HASH_SIZE = 32;

/**
 * WARNING: domain-separation prefix of leaf hashes (RFC 9162 §2.1.1). Never change it and
 * never drop it. It is the only thing that distinguishes a leaf hash SHA-256(0x00 ‖ d)
 * from a node hash SHA-256(0x01 ‖ left ‖ right). Without it, the 64 bytes `left ‖ right`
 * of any interior node are themselves a valid "leaf" whose hash equals that node's hash:
 * anyone could then prove the inclusion of a leaf that was never logged (a second-preimage
 * attack on the tree). RFC 9162 §2.1.1: "this domain separation is required to give
 * second preimage resistance". Every root already anchored depends on this value too.
 */
export const LEAF_PREFIX = 0x00;

/**
 * WARNING: domain-separation prefix of interior node hashes (RFC 9162 §2.1.1). Never change
 * it and never make it equal to LEAF_PREFIX; see LEAF_PREFIX for the attack it prevents.
 */
export const NODE_PREFIX = 0x01;

/** SHA-256 of prefix ‖ parts. One-shot crypto.hash is ~30% faster than createHash here. */
function sha256Prefixed(prefix: number, ...parts: Uint8Array[]): Buffer {
  let length = 1;
  for (const p of parts) length += p.length;
  const input = Buffer.allocUnsafe(length);
  input[0] = prefix;
  let offset = 1;
  for (const p of parts) {
    input.set(p, offset);
    offset += p.length;
  }
  return hash('sha256', input, 'buffer');
}

/**
 * The hash of a leaf: SHA-256(0x00 ‖ data) (RFC 9162 §2.1.1, `MTH({d(0)})`).
 * `data` may have any length, including 0.
 * @throws TypeError if `data` is not a Uint8Array.
 * @example
 * hashLeaf(new Uint8Array(0)).toString('hex') // '6e340b9cffb37a98…' (the RFC 6962 test value)
 */
export function hashLeaf(data: Uint8Array): Buffer {
  assertBytes('data', data);
  return sha256Prefixed(LEAF_PREFIX, data);
}

/**
 * The hash of an interior node: SHA-256(0x01 ‖ left ‖ right) (RFC 9162 §2.1.1).
 * @throws TypeError unless both children are 32-byte Uint8Arrays. Children are always hashes;
 *   any other length here is a bug in the caller, not data to be judged.
 */
export function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  assertBytes('left', left, HASH_SIZE);
  assertBytes('right', right, HASH_SIZE);
  return sha256Prefixed(NODE_PREFIX, left, right);
}

/**
 * The root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1, `MTH({}) = HASH()`),
 * e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.
 * A fresh Buffer each call, so callers may keep or change it.
 */
export function emptyRoot(): Buffer {
  return hash('sha256', new Uint8Array(0), 'buffer');
}
