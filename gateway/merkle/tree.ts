/**
 * An immutable RFC 9162 Merkle tree over a list of leaves, built with merkletreejs.
 *
 * merkletreejs is a general Merkle library; it builds the RFC 9162 §2.1.1 tree only when
 * fed exactly as below (checked against reference.ts for every size 1..300 in
 * test/gateway/merkle/reference.test.ts):
 *   - leaves go in already hashed with hashLeaf (SHA-256(0x00 ‖ data)), `hashLeaves: false`;
 *   - its hash function receives the concatenation left ‖ right of two children (64 bytes)
 *     and must return SHA-256(0x01 ‖ left ‖ right), so the node prefix is added here;
 *   - no sorting, no duplication of odd nodes: with `duplicateOdd: false` merkletreejs
 *     promotes the last node of an odd-sized level unchanged, and pairing level by level
 *     from the left while promoting the odd node yields exactly the RFC's split at the
 *     largest power of two below n;
 *   - proofs are requested by leaf index, never by value (leaves may repeat).
 * Not used from merkletreejs: its verify(), which checks neither the tree size nor the
 * leaf index (see verify.ts), and its empty tree, whose root is a 0-byte Buffer instead of
 * RFC 9162's SHA-256("").
 */
import { MerkleTree } from 'merkletreejs';
import { assertBytes, describe } from './args.js';
import { HASH_SIZE, emptyRoot, hashChildren, hashLeaf } from './rfc6962.js';

type MerkleTreeOptions = NonNullable<ConstructorParameters<typeof MerkleTree>[2]>;

/**
 * WARNING: the only merkletreejs options under which its tree is the RFC 9162 tree. Each
 * of `sort`, `sortLeaves`, `sortPairs`, `duplicateOdd`, `isBitcoinTree`, `complete`,
 * `fillDefaultHash` or `hashLeaves: true` silently changes the root and every proof: the
 * trees still "work" with merkletreejs' own verify(), but no RFC 9162 verifier (ours, or
 * an auditor's) would accept them, and every anchored root would become unverifiable.
 * Leave `concatenator` unset too (the default, Buffer.concat, is what nodeHashOfPair expects).
 */
const RFC6962_OPTIONS: MerkleTreeOptions = Object.freeze({
  hashLeaves: false,
  sort: false,
  sortLeaves: false,
  sortPairs: false,
  duplicateOdd: false,
  isBitcoinTree: false,
  complete: false,
});

/**
 * The node hash in the shape merkletreejs calls it: one argument, the concatenation of
 * the two children. Returns SHA-256(0x01 ‖ left ‖ right) (RFC 9162 §2.1.1).
 */
function nodeHashOfPair(pair: Buffer): Buffer {
  // merkletreejs only ever hashes two 32-byte children here; anything else would mean the
  // options above were changed (e.g. leaf hashing turned on) and the tree is not RFC 9162.
  if (!(pair instanceof Uint8Array) || pair.length !== 2 * HASH_SIZE) {
    throw new Error(
      `merkletreejs asked to hash ${describe(pair)} of length ${String((pair as { length?: unknown }).length)}, expected two ${HASH_SIZE}-byte children`,
    );
  }
  return hashChildren(pair.subarray(0, HASH_SIZE), pair.subarray(HASH_SIZE));
}

/**
 * An immutable RFC 9162 Merkle tree. Every hash it returns is a fresh copy, so callers
 * may keep or change them without touching the tree.
 *
 * @example
 * const tree = Rfc6962Tree.fromLeafData([a, b, c]);
 * const ok = verifyInclusion({ leafIndex: 2, treeSize: tree.size, leafHash: tree.leafHash(2),
 *                              proof: tree.inclusionProof(2), root: tree.root() }).ok; // true
 */
export class Rfc6962Tree {
  /** Number of leaves (RFC 9162 `tree_size`). */
  readonly size: number;
  readonly #leafHashes: readonly Buffer[];
  readonly #tree: MerkleTree | undefined;
  readonly #root: Buffer;

  private constructor(leafHashes: Buffer[]) {
    this.size = leafHashes.length;
    this.#leafHashes = leafHashes;
    if (leafHashes.length === 0) {
      // RFC 9162 §2.1.1: MTH({}) = HASH(); merkletreejs would answer a 0-byte root.
      this.#tree = undefined;
      this.#root = emptyRoot();
    } else {
      this.#tree = new MerkleTree(leafHashes, nodeHashOfPair, RFC6962_OPTIONS);
      this.#root = this.#tree.getRoot();
    }
  }

  /**
   * The tree over these leaf inputs; each is hashed with hashLeaf (SHA-256(0x00 ‖ data)).
   * @throws TypeError if `data` is not an array of Uint8Array.
   */
  static fromLeafData(data: readonly Uint8Array[]): Rfc6962Tree {
    if (!Array.isArray(data)) throw new TypeError(`data must be an array of Uint8Array, got ${describe(data)}`);
    return new Rfc6962Tree(
      data.map((d, i) => {
        assertBytes(`data[${i}]`, d);
        return hashLeaf(d);
      }),
    );
  }

  /**
   * The tree over leaves already hashed with hashLeaf (they are copied, not re-hashed).
   * @throws TypeError if `leafHashes` is not an array of 32-byte Uint8Array.
   */
  static fromLeafHashes(leafHashes: readonly Uint8Array[]): Rfc6962Tree {
    if (!Array.isArray(leafHashes)) {
      throw new TypeError(`leafHashes must be an array of Uint8Array, got ${describe(leafHashes)}`);
    }
    return new Rfc6962Tree(
      leafHashes.map((h, i) => {
        assertBytes(`leafHashes[${i}]`, h, HASH_SIZE);
        return Buffer.from(h);
      }),
    );
  }

  /** The root hash, MTH(D[n]) of RFC 9162 §2.1.1 (SHA-256("") for the empty tree). */
  root(): Buffer {
    return Buffer.from(this.#root);
  }

  /**
   * The hash of leaf `index`, SHA-256(0x00 ‖ data).
   * @throws TypeError if `index` is not an integer; RangeError unless 0 <= index < size.
   */
  leafHash(index: number): Buffer {
    this.#checkIndex(index);
    return Buffer.from(this.#leafHashes[index] as Buffer);
  }

  /**
   * The inclusion path of leaf `index` (RFC 9162 §2.1.3.1 PATH(m, D[n])): sibling hashes
   * from the leaf's level up to just below the root; empty for a one-leaf tree.
   * @throws TypeError if `index` is not an integer; RangeError unless 0 <= index < size.
   */
  inclusionProof(index: number): Buffer[] {
    this.#checkIndex(index);
    const tree = this.#tree as MerkleTree; // size >= 1 here, so the tree exists
    const leaf = this.#leafHashes[index] as Buffer;
    // Always by index: without one, merkletreejs looks the leaf up by value (and takes the
    // last equal leaf), which picks the wrong path for a repeated leaf.
    // Positions ('left'/'right') are dropped: an RFC 9162 verifier derives them from the
    // index and the tree size, so the proof cannot lie about them.
    return tree.getProof(leaf, index).map((step) => Buffer.from(step.data));
  }

  #checkIndex(index: number): void {
    if (!Number.isSafeInteger(index)) throw new TypeError(`leaf index must be an integer, got ${describe(index)}`);
    if (index < 0 || index >= this.size) throw new RangeError(`leaf index ${index} is not in [0, ${this.size})`);
  }
}
