/**
 * Inclusion-proof verification, RFC 9162 §2.1.3.2, written here rather than taken from
 * merkletreejs: its verify() follows whatever left/right positions the proof claims and
 * never checks the leaf index or the tree size, so a proof for a different position, or
 * one padded or cut short, can pass it. Here the positions come only from the index and
 * the size, as the RFC prescribes.
 *
 * Verdicts, not exceptions, for anything a proof can carry: these functions judge
 * untrusted data (a proof bundle from anyone). Only arguments of the wrong type throw
 * (TypeError): a leafIndex that is not a uint64, a hash that is not a Uint8Array, a proof
 * that is not an array. A hash of the wrong length is data, so it is a verdict
 * (BAD_HASH_LENGTH), never a throw: a truncated or padded hash in a bundle must be
 * reported like any other corruption.
 */
import { assertBytes, describe, toUint64 } from './args.js';
import { HASH_SIZE, hashChildren } from './rfc6962.js';

/** The closed set of reasons an inclusion proof fails, with what each one means. */
export const INCLUSION_FAILURES = {
  INDEX_OUT_OF_RANGE: 'the leaf index is not below the tree size (RFC 9162 §2.1.3.2 step 1)',
  BAD_HASH_LENGTH: `a hash (leaf hash, root or proof element) is not ${HASH_SIZE} bytes`,
  PROOF_TOO_LONG: 'the proof has more hashes than this leaf index and tree size call for (RFC 9162 §2.1.3.2 step 4a)',
  PROOF_TOO_SHORT: 'the proof has fewer hashes than this leaf index and tree size call for (RFC 9162 §2.1.3.2 step 5)',
  ROOT_MISMATCH: 'the root recomputed from the leaf hash and the proof is not the expected root (RFC 9162 §2.1.3.2 step 5)',
} as const;

export type InclusionFailureCode = keyof typeof INCLUSION_FAILURES;

/** Either a number or a bigint: RFC 9162 indexes and sizes are uint64. */
export type Uint64 = number | bigint;

/** What a proof claims, without the root it leads to. */
export interface InclusionClaim {
  /** RFC 9162 `leaf_index`, 0-based. */
  leafIndex: Uint64;
  /** RFC 9162 `tree_size`, the number of leaves of the tree the root belongs to. */
  treeSize: Uint64;
  /** SHA-256(0x00 ‖ leaf data): the hash, not the data (see hashLeaf). */
  leafHash: Uint8Array;
  /** RFC 9162 `inclusion_path`, sibling hashes from the leaf's level upwards. */
  proof: readonly Uint8Array[];
}

export interface InclusionArgs extends InclusionClaim {
  /** The root the proof must lead to (RFC 9162 `root_hash`), e.g. an anchored one. */
  root: Uint8Array;
}

/** RFC 9162 §2.1.3.2 step 1 failed: the index is not below the size. */
export interface IndexOutOfRange {
  ok: false;
  code: 'INDEX_OUT_OF_RANGE';
  message: string;
  leafIndex: bigint;
  treeSize: bigint;
}

/** A leaf hash, root or proof element (`field`: 'leafHash', 'root', 'proof[3]') is not 32 bytes. */
export interface BadHashLength {
  ok: false;
  code: 'BAD_HASH_LENGTH';
  message: string;
  field: string;
  expectedLength: number;
  actualLength: number;
}

/** The proof does not have the number of hashes the index and size call for. */
export interface WrongProofLength {
  ok: false;
  code: 'PROOF_TOO_LONG' | 'PROOF_TOO_SHORT';
  message: string;
  expectedLength: number;
  actualLength: number;
}

/** The recomputed root differs; like transparency-dev/merkle's RootMismatchError{ExpectedRoot, CalculatedRoot}. */
export interface RootMismatch {
  ok: false;
  code: 'ROOT_MISMATCH';
  message: string;
  expected: Buffer;
  calculated: Buffer;
}

export type InclusionFailure = IndexOutOfRange | BadHashLength | WrongProofLength | RootMismatch;

export type InclusionVerdict = { ok: true } | InclusionFailure;

/** The root a proof leads to, or why it leads nowhere (any failure but ROOT_MISMATCH). */
export type RootFromProof = { ok: true; root: Buffer } | IndexOutOfRange | BadHashLength | WrongProofLength;

/**
 * The number of hashes in the inclusion proof of `leafIndex` in a tree of `treeSize`:
 * one per level where the leaf's subtree has a sibling. Levels below the point where the
 * paths to leafIndex and to the last leaf split each have a sibling (the `inner` part);
 * above it, the leaf's path runs along the tree's right border, where a level has a left
 * sibling exactly when the corresponding bit of the index is set.
 * @throws TypeError if either is not a uint64; RangeError unless leafIndex < treeSize.
 */
export function inclusionProofLength(leafIndex: Uint64, treeSize: Uint64): number {
  const index = toUint64('leafIndex', leafIndex);
  const size = toUint64('treeSize', treeSize);
  if (index >= size) throw new RangeError(`leafIndex ${index} is not below treeSize ${size}`);
  return expectedLength(index, size);
}

function bitLength(x: bigint): number {
  return x === 0n ? 0 : x.toString(2).length;
}

function expectedLength(index: bigint, size: bigint): number {
  const inner = bitLength(index ^ (size - 1n));
  let border = 0;
  for (let rest = index >> BigInt(inner); rest > 0n; rest >>= 1n) border += Number(rest & 1n);
  return inner + border;
}

/**
 * Recomputes the root that an inclusion proof leads to, RFC 9162 §2.1.3.2 steps 1-5
 * without the final comparison with a known root.
 * @returns `{ ok: true, root }`, or a failure verdict (INDEX_OUT_OF_RANGE, BAD_HASH_LENGTH,
 *   PROOF_TOO_LONG, PROOF_TOO_SHORT).
 * @throws TypeError for arguments of the wrong type (see the module comment).
 */
export function rootFromInclusionProof(claim: InclusionClaim): RootFromProof {
  return computeRoot(readClaim(claim));
}

interface Claim {
  leafIndex: bigint;
  treeSize: bigint;
  leafHash: Uint8Array;
  proof: readonly Uint8Array[];
}

/** Type checks only (TypeError); lengths and values are judged by verdicts later. */
function readClaim(claim: InclusionClaim): Claim {
  if (typeof claim !== 'object' || claim === null) throw new TypeError(`expected an object, got ${describe(claim)}`);
  const leafIndex = toUint64('leafIndex', claim.leafIndex);
  const treeSize = toUint64('treeSize', claim.treeSize);
  assertBytes('leafHash', claim.leafHash);
  const proof: unknown = claim.proof;
  if (!Array.isArray(proof)) throw new TypeError(`proof must be an array of Uint8Array, got ${describe(proof)}`);
  proof.forEach((p: unknown, i) => assertBytes(`proof[${i}]`, p));
  return { leafIndex, treeSize, leafHash: claim.leafHash, proof: proof as Uint8Array[] };
}

function computeRoot({ leafIndex, treeSize, leafHash, proof }: Claim): RootFromProof {
  // Every hash must be a SHA-256 output before it is hashed into anything.
  const badLength = hashLengthFailure('leafHash', leafHash) ?? firstBadProofHash(proof);
  if (badLength) return badLength;

  // Step 1: "Compare leaf_index from the inclusion_proof_v2 structure against tree_size.
  // If leaf_index is greater than or equal to tree_size, then fail the proof verification."
  if (leafIndex >= treeSize) {
    return {
      ok: false,
      code: 'INDEX_OUT_OF_RANGE',
      message: `${INCLUSION_FAILURES.INDEX_OUT_OF_RANGE}: leafIndex ${leafIndex}, treeSize ${treeSize}`,
      leafIndex,
      treeSize,
    };
  }

  // Step 2: "Set fn to leaf_index and sn to tree_size - 1."
  let fn = leafIndex;
  let sn = treeSize - 1n;
  // Step 3: "Set r to hash."
  let r: Buffer = Buffer.from(leafHash);
  // Step 4: "For each value p in the inclusion_path array:"
  for (const p of proof) {
    // Step 4a: "If sn is 0, then stop the iteration and fail the proof verification."
    if (sn === 0n) return lengthFailure('PROOF_TOO_LONG', leafIndex, treeSize, proof.length);
    // Step 4b: "If LSB(fn) is set, or if fn is equal to sn, then:"
    if ((fn & 1n) === 1n || fn === sn) {
      // Step 4b.i: "Set r to HASH(0x01 || p || r)." (p is the left sibling.)
      r = hashChildren(p, r);
      // Step 4b.ii: "If LSB(fn) is not set, then right-shift both fn and sn equally until
      // either LSB(fn) is set or fn is 0." (Skips the levels where this node, the last
      // of its level, was promoted without a sibling.)
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      // Step 4b, otherwise: "Set r to HASH(0x01 || r || p)." (p is the right sibling.)
      r = hashChildren(r, p);
    }
    // Step 4c: "Finally, right-shift both fn and sn one time."
    fn >>= 1n;
    sn >>= 1n;
  }
  // Step 5, first half: "Compare sn to 0." Anything else means hashes are missing.
  if (sn !== 0n) return lengthFailure('PROOF_TOO_SHORT', leafIndex, treeSize, proof.length);
  return { ok: true, root: r };
}

/**
 * Verifies that `leafHash` is the leaf at `leafIndex` of the tree of `treeSize` leaves
 * whose root is `root`, by RFC 9162 §2.1.3.2.
 * @returns `{ ok: true }`, or `{ ok: false, code, message, ... }` with a code from
 *   INCLUSION_FAILURES and what was expected and found (ROOT_MISMATCH carries both roots).
 * @throws TypeError only for arguments of the wrong type; every property of the proof
 *   itself, hash lengths included, is judged by the verdict.
 *
 * WARNING: take `treeSize` from the same trusted source as `root` (the anchor), never from
 * the proof bundle alone. A proof authenticates the tree size only through its length:
 * any other size giving the same proof length also gives the same left/right sequence
 * and so the same root (leaf 0 of 5 leaves verifies as leaf 0 of 6, 7 or 8).
 * @example
 * const v = verifyInclusion({ leafIndex: 5, treeSize: 8, leafHash, proof, root });
 * if (!v.ok) log.warn({ code: v.code }, v.message);
 */
export function verifyInclusion(args: InclusionArgs): InclusionVerdict {
  const claim = readClaim(args);
  assertBytes('root', args.root);
  const badRoot = hashLengthFailure('root', args.root);
  if (badRoot) return badRoot;
  const computed = computeRoot(claim);
  if (!computed.ok) return computed;
  // Step 5, second half: "Compare r against the root_hash. If sn is equal to 0 and r and
  // the root_hash are equal, then the log has proven the inclusion of hash."
  if (!computed.root.equals(args.root)) {
    const expected = Buffer.from(args.root);
    return {
      ok: false,
      code: 'ROOT_MISMATCH',
      message: `${INCLUSION_FAILURES.ROOT_MISMATCH}: expected ${expected.toString('hex')}, calculated ${computed.root.toString('hex')}`,
      expected,
      calculated: computed.root,
    };
  }
  return { ok: true };
}

function hashLengthFailure(field: string, h: Uint8Array): BadHashLength | undefined {
  if (h.length === HASH_SIZE) return undefined;
  return {
    ok: false,
    code: 'BAD_HASH_LENGTH',
    message: `${INCLUSION_FAILURES.BAD_HASH_LENGTH}: ${field} has ${h.length}`,
    field,
    expectedLength: HASH_SIZE,
    actualLength: h.length,
  };
}

function firstBadProofHash(proof: readonly Uint8Array[]): BadHashLength | undefined {
  for (let i = 0; i < proof.length; i++) {
    const failure = hashLengthFailure(`proof[${i}]`, proof[i] as Uint8Array);
    if (failure) return failure;
  }
  return undefined;
}

function lengthFailure(code: 'PROOF_TOO_LONG' | 'PROOF_TOO_SHORT', leafIndex: bigint, treeSize: bigint, actualLength: number): WrongProofLength {
  const expected = expectedLength(leafIndex, treeSize);
  return {
    ok: false,
    code,
    message: `${INCLUSION_FAILURES[code]}: expected ${expected} hashes for leafIndex ${leafIndex} in treeSize ${treeSize}, got ${actualLength}`,
    expectedLength: expected,
    actualLength,
  };
}
