/**
 * The fast code against the slow reference (gateway/merkle/reference.ts, RFC 9162 §2.1.1
 * and §2.1.3.1 transcribed literally), for every tree size 1..300 over deterministic leaves
 * that include repeated leaves (also a repeated sibling pair):
 *   - the merkletreejs-based root equals the reference root, for every size;
 *   - every proof of every size verifies with verifyInclusion and has the length
 *     inclusionProofLength predicts;
 *   - each proof equals the reference path, for every index of sizes <= 64 and for the
 *     first, last, middle, split-adjacent and a few pseudo-random indexes above (the
 *     reference costs O(n) hashes per path, ~100 s for all 45,150 paths);
 *   - corrupted claims (wrong index, wrong size, a flipped bit, a truncated or extended
 *     proof) are rejected for a sample of sizes and indexes.
 */
import { prng } from '../../support/prng.js';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { largestPowerOfTwoBelow, referencePath, referenceRoot } from '../../../gateway/merkle/reference.js';
import { inclusionProofLength, verifyInclusion } from '../../../gateway/merkle/verify.js';

const MAX_SIZE = 300;
const ALL_INDEXES_UP_TO = 64;

/**
 * Leaf i: 0..40 bytes of SHA-256("leaf i"), except that every leaf 12 mod 13 repeats leaf 0
 * and every leaf 21 mod 32 repeats its left sibling (so two sibling leaves are equal).
 */
function makeLeaves(n: number): Buffer[] {
  const leaves: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 13 === 12) leaves.push(leaves[0] as Buffer);
    else if (i % 32 === 21) leaves.push(leaves[i - 1] as Buffer);
    else
      leaves.push(
        createHash('sha256')
          .update(`leaf ${i}`)
          .digest()
          .subarray(0, (i * 7) % 41),
      );
  }
  return leaves;
}

const LEAVES = makeLeaves(MAX_SIZE);
const SIZES = Array.from({ length: MAX_SIZE }, (_, i) => i + 1);
const TREES = new Map(SIZES.map((n) => [n, Rfc6962Tree.fromLeafData(LEAVES.slice(0, n))]));

function tree(n: number): Rfc6962Tree {
  const t = TREES.get(n);
  if (!t) throw new Error(`no tree of size ${n}`);
  return t;
}

/**
 * Every index for small trees; above, the first, last and middle leaf, the first leaf right
 * of the split (RFC 9162 §2.1.1's k) and one pseudo-random leaf.
 */
function sampledIndexes(n: number): number[] {
  if (n <= ALL_INDEXES_UP_TO) return Array.from({ length: n }, (_, i) => i);
  const picks = [0, n - 1, Math.floor(n / 2), largestPowerOfTwoBelow(n), prng(n).int(n)];
  return [...new Set(picks)].sort((a, b) => a - b);
}

function flipBit(b: Uint8Array, bit: number): Buffer {
  const c = Buffer.from(b);
  c[bit >> 3] = (c[bit >> 3] as number) ^ (1 << (bit & 7));
  return c;
}

describe('Rfc6962Tree (merkletreejs) against the RFC 9162 reference, sizes 1..300', () => {
  // Loops collect failures and assert once: 45,150 expect() calls would cost seconds.

  it('the root equals the reference MTH for every size', () => {
    const failures = SIZES.filter(
      (n) =>
        !tree(n)
          .root()
          .equals(referenceRoot(LEAVES.slice(0, n))),
    );
    expect(failures).toEqual([]);
  });

  it('every proof of every size verifies and has the predicted length', () => {
    const failures: string[] = [];
    let count = 0;
    for (const n of SIZES) {
      const t = tree(n);
      const root = t.root();
      for (let i = 0; i < n; i++) {
        const proof = t.inclusionProof(i);
        if (proof.length !== inclusionProofLength(i, n)) failures.push(`size ${n} index ${i}: length ${proof.length}`);
        const verdict = verifyInclusion({ leafIndex: i, treeSize: n, leafHash: t.leafHash(i), proof, root });
        if (!verdict.ok) failures.push(`size ${n} index ${i}: ${verdict.message}`);
        count++;
      }
    }
    expect(failures).toEqual([]);
    expect(count).toBe((MAX_SIZE * (MAX_SIZE + 1)) / 2);
  });

  it(`proofs equal the reference path (all indexes up to size ${ALL_INDEXES_UP_TO}, a sample above)`, () => {
    const failures: string[] = [];
    let count = 0;
    for (const n of SIZES) {
      const t = tree(n);
      const entries = LEAVES.slice(0, n);
      for (const i of sampledIndexes(n)) {
        const got = Buffer.concat(t.inclusionProof(i));
        const want = Buffer.concat(referencePath(i, entries));
        if (!got.equals(want)) failures.push(`size ${n} index ${i}`);
        count++;
      }
    }
    expect(failures).toEqual([]);
    // Sizes 1..64 in full (2,080 paths), then 4 or 5 indexes for each of the 236 larger sizes.
    expect(count).toBeGreaterThanOrEqual(2080 + 236 * 4);
  });

  it('repeated leaves get their own, different proofs (proofs are taken by index)', () => {
    const t = tree(40);
    expect(LEAVES[12]).toBe(LEAVES[0]);
    expect(t.leafHash(12)).toEqual(t.leafHash(0));
    expect(t.inclusionProof(12)).not.toEqual(t.inclusionProof(0));
    expect(t.inclusionProof(12)).toEqual(referencePath(12, LEAVES.slice(0, 40)));
  });
});

describe('corrupted claims are rejected (sampled sizes and indexes)', () => {
  const SAMPLE_SIZES = [...SIZES.filter((n) => n <= 20), 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 299, 300];

  function* cases(): Generator<{ n: number; i: number }> {
    for (const n of SAMPLE_SIZES) {
      const idx = n <= 20 ? Array.from({ length: n }, (_, i) => i) : sampledIndexes(n);
      for (const i of idx) yield { n, i };
    }
  }

  it('a wrong leaf index fails, unless it is a true claim (an equal leaf with the same proof)', () => {
    for (const { n, i } of cases()) {
      const t = tree(n);
      const leafHash = t.leafHash(i);
      const proof = t.inclusionProof(i);
      const root = t.root();
      for (const j of [i - 1, i + 1, i ^ 1, i ^ 2, n, n + 1, 2 * n]) {
        if (j < 0 || j === i) continue;
        const verdict = verifyInclusion({ leafIndex: j, treeSize: n, leafHash, proof, root });
        if (j >= n) {
          expect(verdict, `size ${n} index ${i} claimed as ${j}`).toMatchObject({ ok: false, code: 'INDEX_OUT_OF_RANGE' });
          continue;
        }
        const trueClaim = t.leafHash(j).equals(leafHash) && Buffer.concat(t.inclusionProof(j)).equals(Buffer.concat(proof));
        expect(verdict.ok, `size ${n} index ${i} claimed as ${j}`).toBe(trueClaim);
      }
    }
  });

  it("a wrong tree size fails exactly when it changes the proof's length", () => {
    // The left/right sequence of a proof is fixed by the index bits and the proof length
    // (RFC 9162 §2.1.3.2: levels below the split of leafIndex and treeSize - 1 follow the
    // index bits, levels above are left siblings), so another size that keeps the length
    // keeps the sequence, recomputes the same root and verifies. Only the length check can
    // catch a wrong size; the rest is up to whoever binds the size to the root (see below).
    const seen = { outOfRange: 0, wrongLength: 0, sameLength: 0 };
    for (const { n, i } of cases()) {
      const t = tree(n);
      const args = { leafIndex: i, leafHash: t.leafHash(i), proof: t.inclusionProof(i), root: t.root() };
      for (const m of [n - 1, n + 1, 2 * n, Math.floor(n / 2)]) {
        if (m === n || m < 0) continue;
        const verdict = verifyInclusion({ ...args, treeSize: m });
        const where = `size ${n} index ${i} claimed in size ${m}`;
        if (i >= m) {
          seen.outOfRange++;
          expect(verdict, where).toMatchObject({ ok: false, code: 'INDEX_OUT_OF_RANGE' });
        } else if (inclusionProofLength(i, m) !== args.proof.length) {
          seen.wrongLength++;
          expect(verdict.ok ? 'ok' : verdict.code, where).toMatch(/^PROOF_TOO_(LONG|SHORT)$/);
        } else {
          seen.sameLength++;
          expect(verdict.ok, where).toBe(true);
        }
      }
    }
    // Every branch above is exercised.
    expect(
      Object.values(seen).every((c) => c > 0),
      JSON.stringify(seen),
    ).toBe(true);
  });

  it("WARNING: a tree size that keeps the proof's shape is not detected by the proof alone", () => {
    // Leaf 0 of 5 has three right-hand siblings, and so has leaf 0 of 6, 7 or 8 (RFC 9162
    // §2.1.3.2 step 4b takes the same branch each time), so the size-5 proof also
    // "verifies" as a proof in a tree of 6, 7 or 8 leaves against the size-5 root. An
    // inclusion proof does not authenticate the tree size: verifiers must take tree_size
    // from the same trusted source as the root (the anchor), never from a proof bundle.
    const t = tree(5);
    const claim = { leafIndex: 0, leafHash: t.leafHash(0), proof: t.inclusionProof(0), root: t.root() };
    expect(verifyInclusion({ ...claim, treeSize: 5 }).ok).toBe(true);
    for (const size of [6, 7, 8]) expect(verifyInclusion({ ...claim, treeSize: size }).ok).toBe(true);
    expect(verifyInclusion({ ...claim, treeSize: 4 })).toMatchObject({ ok: false, code: 'PROOF_TOO_LONG' });
    expect(verifyInclusion({ ...claim, treeSize: 9 })).toMatchObject({ ok: false, code: 'PROOF_TOO_SHORT' });
  });

  it('a flipped bit in any proof hash, the leaf hash or the root fails with ROOT_MISMATCH', () => {
    for (const { n, i } of cases()) {
      const t = tree(n);
      const base = { leafIndex: i, treeSize: n, leafHash: t.leafHash(i), proof: t.inclusionProof(i), root: t.root() };
      const bit = (i * 37 + n) % 256;
      const variants = [
        { ...base, leafHash: flipBit(base.leafHash, bit) },
        { ...base, root: flipBit(base.root, bit) },
        ...base.proof.map((_, k) => ({ ...base, proof: base.proof.map((p, q) => (q === k ? flipBit(p, bit) : p)) })),
      ];
      for (const v of variants) {
        const verdict = verifyInclusion(v);
        expect(verdict, `size ${n} index ${i}`).toMatchObject({ ok: false, code: 'ROOT_MISMATCH' });
      }
    }
  });

  it('a truncated proof fails with PROOF_TOO_SHORT, an extended one with PROOF_TOO_LONG', () => {
    for (const { n, i } of cases()) {
      const t = tree(n);
      const base = { leafIndex: i, treeSize: n, leafHash: t.leafHash(i), proof: t.inclusionProof(i), root: t.root() };
      const k = base.proof.length;
      if (k > 0) {
        for (const proof of [base.proof.slice(0, -1), base.proof.slice(1)]) {
          expect(verifyInclusion({ ...base, proof }), `size ${n} index ${i}`).toMatchObject({
            ok: false,
            code: 'PROOF_TOO_SHORT',
            expectedLength: k,
            actualLength: k - 1,
          });
        }
      }
      for (const proof of [
        [...base.proof, base.root],
        [base.leafHash, ...base.proof],
        [...base.proof, ...base.proof],
      ]) {
        if (proof.length === k) continue;
        expect(verifyInclusion({ ...base, proof }), `size ${n} index ${i}`).toMatchObject({
          ok: false,
          code: 'PROOF_TOO_LONG',
          expectedLength: k,
          actualLength: proof.length,
        });
      }
    }
  });
});
