/**
 * Rfc6962Tree and the RFC 9162 hashing (gateway/merkle/tree.ts, rfc6962.ts): known hashes,
 * domain separation, argument errors, the empty tree, repeated leaves, copies. The last
 * block pins the merkletreejs behaviours that tree.ts works around, so that an upgrade
 * that changes them is noticed.
 */
import { createHash } from 'node:crypto';
import { MerkleTree } from 'merkletreejs';
import { describe, expect, it } from 'vitest';
import { HASH_SIZE, LEAF_PREFIX, NODE_PREFIX, emptyRoot, hashChildren, hashLeaf } from '../../../gateway/merkle/rfc6962.js';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { verifyInclusion } from '../../../gateway/merkle/verify.js';

const hex = (s: string) => Buffer.from(s, 'hex');
const sha256 = (...parts: Uint8Array[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();

// RFC 6962 test values (transparency-dev/merkle testonly/constants.go).
const H0 = hex('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d'); // leaf ""
const H1 = hex('96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7'); // leaf 00
const H01 = hex('fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125');

describe('RFC 9162 hashing', () => {
  it('uses the RFC prefixes 0x00 (leaf) and 0x01 (node)', () => {
    expect(LEAF_PREFIX).toBe(0x00);
    expect(NODE_PREFIX).toBe(0x01);
    expect(HASH_SIZE).toBe(32);
  });

  it('hashLeaf = SHA-256(0x00 ‖ data), hashChildren = SHA-256(0x01 ‖ l ‖ r), emptyRoot = SHA-256("")', () => {
    expect(hashLeaf(new Uint8Array(0))).toEqual(H0);
    expect(hashLeaf(hex('00'))).toEqual(H1);
    expect(hashChildren(H0, H1)).toEqual(H01);
    const data = Buffer.from('any bytes at all');
    expect(hashLeaf(data)).toEqual(sha256(Uint8Array.of(0), data));
    expect(hashChildren(H1, H0)).toEqual(sha256(Uint8Array.of(1), H1, H0));
    expect(emptyRoot().toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('separates leaves from nodes: 64 bytes l ‖ r as leaf data do not hash to the node', () => {
    // Without the prefixes both would be SHA-256(l ‖ r): a second preimage of the node.
    const pair = Buffer.concat([H0, H1]);
    expect(hashLeaf(pair)).not.toEqual(hashChildren(H0, H1));
    const forged = Rfc6962Tree.fromLeafData([pair]);
    const real = Rfc6962Tree.fromLeafData([new Uint8Array(0), hex('00')]);
    expect(forged.root()).not.toEqual(real.root());
  });

  it('accepts any Uint8Array (a Buffer, a view into a larger buffer) and hashes only its bytes', () => {
    const big = new Uint8Array([9, 9, 0x00, 9]);
    expect(hashLeaf(big.subarray(2, 3))).toEqual(H1);
  });

  it('throws TypeError for non-bytes and for children that are not 32 bytes', () => {
    expect(() => hashLeaf('00' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => hashChildren(H0, H1.subarray(1))).toThrow(TypeError);
    expect(() => hashChildren([] as unknown as Uint8Array, H1)).toThrow(TypeError);
  });
});

describe('Rfc6962Tree', () => {
  const data = ['a', 'b', 'c', 'd', 'e'].map((s) => Buffer.from(s));

  it('builds the same tree from data and from leaf hashes', () => {
    const a = Rfc6962Tree.fromLeafData(data);
    const b = Rfc6962Tree.fromLeafHashes(data.map(hashLeaf));
    expect(b.size).toBe(5);
    expect(b.root()).toEqual(a.root());
    for (let i = 0; i < 5; i++) expect(b.inclusionProof(i)).toEqual(a.inclusionProof(i));
  });

  it('promotes the odd node unchanged (size 3 and 5, as RFC 9162 §2.1.1 splits them)', () => {
    const [l0, l1, l2, l3, l4] = data.map(hashLeaf) as [Buffer, Buffer, Buffer, Buffer, Buffer];
    expect(Rfc6962Tree.fromLeafData(data.slice(0, 3)).root()).toEqual(hashChildren(hashChildren(l0, l1), l2));
    const four = hashChildren(hashChildren(l0, l1), hashChildren(l2, l3));
    const tree5 = Rfc6962Tree.fromLeafData(data);
    expect(tree5.root()).toEqual(hashChildren(four, l4));
    expect(tree5.inclusionProof(4)).toEqual([four]);
    expect(tree5.inclusionProof(0)).toEqual([l1, hashChildren(l2, l3), l4]);
  });

  it('has the RFC empty tree: size 0, root SHA-256(""), no leaves to prove', () => {
    const t = Rfc6962Tree.fromLeafData([]);
    expect(t.size).toBe(0);
    expect(t.root()).toEqual(emptyRoot());
    expect(() => t.inclusionProof(0)).toThrow(RangeError);
    expect(() => t.leafHash(0)).toThrow(RangeError);
  });

  it('has an empty proof for a one-leaf tree, whose root is the leaf hash', () => {
    const t = Rfc6962Tree.fromLeafData([hex('00')]);
    expect(t.root()).toEqual(H1);
    expect(t.inclusionProof(0)).toEqual([]);
  });

  it('proves repeated leaves at their own index', () => {
    const t = Rfc6962Tree.fromLeafData([data[0], data[1], data[0]] as Buffer[]);
    expect(t.leafHash(0)).toEqual(t.leafHash(2));
    expect(t.inclusionProof(0)).not.toEqual(t.inclusionProof(2));
    for (const i of [0, 2]) {
      expect(verifyInclusion({ leafIndex: i, treeSize: 3, leafHash: t.leafHash(i), proof: t.inclusionProof(i), root: t.root() })).toEqual({ ok: true });
    }
  });

  it('returns copies: changing a returned hash does not change the tree', () => {
    const t = Rfc6962Tree.fromLeafData(data);
    const root = t.root();
    const proof = t.inclusionProof(1);
    const leaf = t.leafHash(1);
    root.fill(0);
    proof[0]?.fill(0);
    leaf.fill(0);
    const fresh = Rfc6962Tree.fromLeafData(data);
    expect(t.root()).toEqual(fresh.root());
    expect(t.inclusionProof(1)).toEqual(fresh.inclusionProof(1));
    expect(t.leafHash(1)).toEqual(fresh.leafHash(1));
  });

  it('copies the leaf hashes it is given', () => {
    const hashes = data.map(hashLeaf);
    const t = Rfc6962Tree.fromLeafHashes(hashes);
    const before = t.root();
    hashes[0]?.fill(0);
    expect(t.leafHash(0)).toEqual(hashLeaf(data[0] as Buffer));
    expect(t.root()).toEqual(before);
  });

  it('throws TypeError for bad arguments and RangeError for indexes outside the tree', () => {
    const t = Rfc6962Tree.fromLeafData(data);
    expect(() => Rfc6962Tree.fromLeafData('abc' as unknown as Uint8Array[])).toThrow(TypeError);
    expect(() => Rfc6962Tree.fromLeafData([Buffer.from('a'), 'b' as unknown as Uint8Array])).toThrow(/data\[1\]/);
    expect(() => Rfc6962Tree.fromLeafHashes([H0, H1.subarray(0, 31)])).toThrow(/leafHashes\[1\] must be 32 bytes/);
    expect(() => t.inclusionProof(1.5)).toThrow(TypeError);
    expect(() => t.inclusionProof(Number.NaN)).toThrow(TypeError);
    expect(() => t.inclusionProof(2n as unknown as number)).toThrow(TypeError);
    expect(() => t.inclusionProof(-1)).toThrow(RangeError);
    expect(() => t.inclusionProof(5)).toThrow(RangeError);
    expect(() => t.leafHash(5)).toThrow(RangeError);
  });
});

describe('merkletreejs behaviours that tree.ts works around (tripwires for upgrades)', () => {
  const leaves = ['a', 'b', 'a', 'c'].map((s) => hashLeaf(Buffer.from(s)));
  const nodeHash = (pair: Buffer) => hashChildren(pair.subarray(0, 32), pair.subarray(32));
  const mt = new MerkleTree(leaves, nodeHash, {});

  it('looks a leaf up by value when no index is given, and takes the LAST equal leaf', () => {
    const byValue = mt.getProof(leaves[0] as Buffer).map((p) => p.data);
    expect(byValue).toEqual(mt.getProof(leaves[2] as Buffer, 2).map((p) => p.data));
    expect(byValue).not.toEqual(mt.getProof(leaves[0] as Buffer, 0).map((p) => p.data));
  });

  it('answers an index past the last leaf with garbage or [] instead of failing', () => {
    expect(mt.getProof(leaves[0] as Buffer, 5).map((p) => p.data)).toEqual([mt.getRoot()]);
    expect(mt.getProof(leaves[0] as Buffer, 9)).toEqual([]); // like a one-leaf tree's proof
    expect(mt.getProof(Buffer.alloc(32), undefined)).toEqual([]); // a leaf not in the tree
  });

  it('roots an empty tree at a 0-byte Buffer, not at SHA-256("")', () => {
    expect(new MerkleTree([], nodeHash, {}).getRoot()).toHaveLength(0);
  });

  it('changes the root with duplicateOdd or sortPairs (hence the WARNING on its options)', () => {
    const three = leaves.slice(0, 3);
    const rfc = Rfc6962Tree.fromLeafHashes(three).root();
    expect(new MerkleTree(three, nodeHash, {}).getRoot()).toEqual(rfc);
    expect(new MerkleTree(three, nodeHash, { duplicateOdd: true }).getRoot()).not.toEqual(rfc);
    expect(new MerkleTree(three, nodeHash, { sortPairs: true }).getRoot()).not.toEqual(rfc);
  });

  it('its verify() accepts an interior node as a "leaf"; verifyInclusion does not', () => {
    const proof = mt.getProof(leaves[0] as Buffer, 0); // [leaf 1, node(2,3)]
    const node01 = hashChildren(leaves[0] as Buffer, leaves[1] as Buffer);
    expect(mt.verify(proof.slice(1), node01, mt.getRoot())).toBe(true);
    // The same claim for RFC 9162: node01 as leaf 0 (or 1) of the 4-leaf tree, proof [node(2,3)].
    for (const leafIndex of [0, 1]) {
      expect(verifyInclusion({ leafIndex, treeSize: 4, leafHash: node01, proof: proof.slice(1).map((p) => p.data), root: mt.getRoot() })).toMatchObject({
        ok: false,
        code: 'PROOF_TOO_SHORT',
        expectedLength: 2,
        actualLength: 1,
      });
    }
  });
});
