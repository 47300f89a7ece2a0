/**
 * A slow, obviously-correct reference: the recursive definitions of RFC 9162 §2.1.1
 * (Merkle Tree Hash) and §2.1.3.1 (inclusion path) transcribed literally, over the leaf
 * inputs themselves. It exists to check the fast code (tree.ts, built on merkletreejs;
 * verify.ts) against; nothing in production should call it. Computing one path costs
 * O(n) hashes, since every sibling subtree is rehashed from its leaves.
 */
import { emptyRoot, hashChildren, hashLeaf } from './rfc6962.js';

/** The largest power of two smaller than n (the split point k of RFC 9162 §2.1.1), n >= 2. */
export function largestPowerOfTwoBelow(n: number): number {
  if (!Number.isSafeInteger(n) || n < 2) throw new RangeError(`n must be an integer >= 2, got ${n}`);
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * MTH(D[n]), RFC 9162 §2.1.1:
 *   MTH({})     = HASH()
 *   MTH({d(0)}) = HASH(0x00 || d(0))
 *   MTH(D[n])   = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n
 */
export function referenceRoot(entries: readonly Uint8Array[]): Buffer {
  const n = entries.length;
  if (n === 0) return emptyRoot();
  if (n === 1) return hashLeaf(entries[0] as Uint8Array);
  const k = largestPowerOfTwoBelow(n);
  return hashChildren(referenceRoot(entries.slice(0, k)), referenceRoot(entries.slice(k)));
}

/**
 * PATH(m, D[n]), RFC 9162 §2.1.3.1, for 0 <= m < n:
 *   PATH(0, {d(0)}) = {}
 *   PATH(m, D[n])   = PATH(m, D[0:k]) : MTH(D[k:n])       for m < k
 *   PATH(m, D[n])   = PATH(m - k, D[k:n]) : MTH(D[0:k])   for m >= k
 * where `:` appends a hash to the list; the path lists siblings from the leaf up.
 * @throws RangeError unless 0 <= m < n (the path is undefined there).
 */
export function referencePath(m: number, entries: readonly Uint8Array[]): Buffer[] {
  const n = entries.length;
  if (!Number.isSafeInteger(m) || m < 0 || m >= n) throw new RangeError(`leaf index ${m} is not in [0, ${n})`);
  if (n === 1) return [];
  const k = largestPowerOfTwoBelow(n);
  if (m < k) return [...referencePath(m, entries.slice(0, k)), referenceRoot(entries.slice(k))];
  return [...referencePath(m - k, entries.slice(k)), referenceRoot(entries.slice(0, k))];
}
