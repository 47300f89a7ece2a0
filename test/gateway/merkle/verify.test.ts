/**
 * verifyInclusion / rootFromInclusionProof / inclusionProofLength (gateway/merkle/verify.ts):
 * the verdict for every failure code with what was expected and found, the TypeError
 * boundary (wrong argument types throw; anything a proof can carry is a verdict), and
 * uint64 indexes and sizes beyond 2^53.
 */
import { describe, expect, it } from 'vitest';
import { HASH_SIZE, hashLeaf } from '../../../gateway/merkle/rfc6962.js';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { referencePath } from '../../../gateway/merkle/reference.js';
import { INCLUSION_FAILURES, inclusionProofLength, rootFromInclusionProof, verifyInclusion, type InclusionArgs } from '../../../gateway/merkle/verify.js';

const LEAVES = Array.from({ length: 7 }, (_, i) => Buffer.from(`entry ${i}`));
const TREE = Rfc6962Tree.fromLeafData(LEAVES);

function claim(i: number): InclusionArgs {
  return { leafIndex: i, treeSize: TREE.size, leafHash: TREE.leafHash(i), proof: TREE.inclusionProof(i), root: TREE.root() };
}

describe('verifyInclusion verdicts', () => {
  it('accepts a correct proof, with numbers or bigints', () => {
    for (let i = 0; i < TREE.size; i++) {
      expect(verifyInclusion(claim(i))).toEqual({ ok: true });
      expect(verifyInclusion({ ...claim(i), leafIndex: BigInt(i), treeSize: BigInt(TREE.size) })).toEqual({ ok: true });
    }
  });

  it('ROOT_MISMATCH carries the expected and the calculated root', () => {
    const other = Rfc6962Tree.fromLeafData(LEAVES.slice(0, 6)).root();
    const v = verifyInclusion({ ...claim(3), root: other });
    expect(v).toMatchObject({ ok: false, code: 'ROOT_MISMATCH', expected: other, calculated: TREE.root() });
    expect(v.ok ? '' : v.message).toContain(other.toString('hex'));
  });

  it('INDEX_OUT_OF_RANGE carries the index and the size', () => {
    expect(verifyInclusion({ ...claim(3), leafIndex: 7 })).toMatchObject({
      ok: false,
      code: 'INDEX_OUT_OF_RANGE',
      leafIndex: 7n,
      treeSize: 7n,
    });
    expect(verifyInclusion({ ...claim(0), treeSize: 0, proof: [] })).toMatchObject({ ok: false, code: 'INDEX_OUT_OF_RANGE' });
  });

  it('PROOF_TOO_LONG and PROOF_TOO_SHORT carry the expected and the actual number of hashes', () => {
    const c = claim(6); // leaf 6 of 7: proof [node(4,5), node(0..3)]
    expect(c.proof).toHaveLength(2);
    expect(verifyInclusion({ ...c, proof: [...c.proof, c.root] })).toMatchObject({
      ok: false,
      code: 'PROOF_TOO_LONG',
      expectedLength: 2,
      actualLength: 3,
    });
    expect(verifyInclusion({ ...c, proof: c.proof.slice(0, 1) })).toMatchObject({
      ok: false,
      code: 'PROOF_TOO_SHORT',
      expectedLength: 2,
      actualLength: 1,
    });
  });

  it('BAD_HASH_LENGTH names the field, for the leaf hash, the root and each proof element', () => {
    const c = claim(2);
    const short = Buffer.alloc(HASH_SIZE - 1);
    const long = Buffer.alloc(HASH_SIZE + 1);
    expect(verifyInclusion({ ...c, leafHash: short })).toMatchObject({
      ok: false,
      code: 'BAD_HASH_LENGTH',
      field: 'leafHash',
      expectedLength: 32,
      actualLength: 31,
    });
    expect(verifyInclusion({ ...c, root: new Uint8Array(0) })).toMatchObject({ ok: false, code: 'BAD_HASH_LENGTH', field: 'root', actualLength: 0 });
    expect(verifyInclusion({ ...c, proof: [c.proof[0] as Buffer, long, c.proof[2] as Buffer] })).toMatchObject({
      ok: false,
      code: 'BAD_HASH_LENGTH',
      field: 'proof[1]',
      actualLength: 33,
    });
    // Leaf data passed where its hash belongs is caught the same way (unless it is 32 bytes).
    expect(verifyInclusion({ ...c, leafHash: LEAVES[2] as Buffer })).toMatchObject({ ok: false, code: 'BAD_HASH_LENGTH' });
  });

  it('every verdict code is in the catalogue, with a message that starts with its text', () => {
    const verdicts = [
      verifyInclusion({ ...claim(3), leafIndex: 9 }),
      verifyInclusion({ ...claim(3), root: Buffer.alloc(1) }),
      verifyInclusion({ ...claim(3), proof: [] }),
      verifyInclusion({ ...claim(3), proof: [...claim(3).proof, Buffer.alloc(32)] }),
      verifyInclusion({ ...claim(3), root: Buffer.alloc(32) }),
    ];
    expect(verdicts.map((v) => (v.ok ? 'ok' : v.code)).sort()).toEqual(Object.keys(INCLUSION_FAILURES).sort());
    for (const v of verdicts) if (!v.ok) expect(v.message.startsWith(INCLUSION_FAILURES[v.code])).toBe(true);
  });

  it('does not change its arguments, and its results do not alias them', () => {
    const c = claim(4);
    const copy = { ...c, leafHash: Buffer.from(c.leafHash), proof: c.proof.map((p) => Buffer.from(p)), root: Buffer.from(c.root) };
    const r = rootFromInclusionProof(c);
    if (!r.ok) throw new Error(r.message);
    r.root.fill(0);
    const bad = verifyInclusion({ ...c, root: Buffer.alloc(32, 7) });
    if (bad.ok || bad.code !== 'ROOT_MISMATCH') throw new Error('expected a ROOT_MISMATCH');
    bad.expected.fill(1);
    bad.calculated.fill(1);
    expect(c).toEqual(copy);
    expect(verifyInclusion(c)).toEqual({ ok: true });
  });
});

describe('argument errors throw TypeError', () => {
  const c = claim(1);
  const cases: [string, unknown][] = [
    ['no object', null],
    ['leafIndex negative', { ...c, leafIndex: -1 }],
    ['leafIndex fractional', { ...c, leafIndex: 1.5 }],
    ['leafIndex NaN', { ...c, leafIndex: Number.NaN }],
    ['leafIndex above 2^53 as a number', { ...c, leafIndex: 2 ** 53 }],
    ['leafIndex a string', { ...c, leafIndex: '1' }],
    ['leafIndex a negative bigint', { ...c, leafIndex: -1n }],
    ['treeSize 2^64', { ...c, treeSize: 2n ** 64n }],
    ['treeSize missing', { ...c, treeSize: undefined }],
    ['leafHash a hex string', { ...c, leafHash: Buffer.from(c.leafHash).toString('hex') }],
    ['proof not an array', { ...c, proof: Buffer.concat(c.proof) }],
    ['proof null', { ...c, proof: null }],
    ['a proof element a string', { ...c, proof: [Buffer.from(c.proof[0] as Uint8Array).toString('hex'), ...c.proof.slice(1)] }],
    ['root an array of numbers', { ...c, root: [...c.root] }],
  ];
  for (const [name, args] of cases) {
    it(name, () => {
      expect(() => verifyInclusion(args as InclusionArgs)).toThrow(TypeError);
    });
  }

  it('rootFromInclusionProof throws the same way, and ignores a root', () => {
    expect(() => rootFromInclusionProof({ ...c, leafIndex: -1 })).toThrow(TypeError);
    expect(rootFromInclusionProof(c)).toEqual({ ok: true, root: TREE.root() });
  });
});

describe('uint64 indexes and sizes', () => {
  const MAX = 2n ** 64n - 1n;

  it('verifies the arithmetic of trees too large for numbers (verdict, no throw)', () => {
    // The last leaf of a tree of 2^64 - 1 leaves has 63 left siblings (every bit of the index but the last).
    expect(inclusionProofLength(MAX - 1n, MAX)).toBe(63);
    expect(inclusionProofLength(0n, MAX)).toBe(64);
    const proof = Array.from({ length: 63 }, (_, i) => hashLeaf(Uint8Array.of(i)));
    const leafHash = hashLeaf(Uint8Array.of(255));
    const r = rootFromInclusionProof({ leafIndex: MAX - 1n, treeSize: MAX, leafHash, proof });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(verifyInclusion({ leafIndex: MAX - 1n, treeSize: MAX, leafHash, proof, root: r.root })).toEqual({ ok: true });
    expect(verifyInclusion({ leafIndex: MAX - 1n, treeSize: MAX, leafHash, proof: proof.slice(1), root: r.root })).toMatchObject({
      ok: false,
      code: 'PROOF_TOO_SHORT',
      expectedLength: 63,
      actualLength: 62,
    });
    expect(verifyInclusion({ leafIndex: MAX, treeSize: MAX, leafHash, proof, root: r.root })).toMatchObject({
      ok: false,
      code: 'INDEX_OUT_OF_RANGE',
      leafIndex: MAX,
    });
  });

  it('inclusionProofLength matches the reference path length for every index of sizes 1..64', () => {
    for (let n = 1; n <= 64; n++) {
      const entries = LEAVES.slice(0, 1).concat(Array.from({ length: n - 1 }, (_, i) => Buffer.from([i])));
      for (let i = 0; i < n; i++) expect(inclusionProofLength(i, n), `${i} of ${n}`).toBe(referencePath(i, entries).length);
    }
    expect(() => inclusionProofLength(3, 3)).toThrow(RangeError);
    expect(() => inclusionProofLength(-1, 3)).toThrow(TypeError);
  });
});
