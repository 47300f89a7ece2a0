/**
 * The inclusion-proof verifier (gateway/merkle/verify.ts) against the 98 RFC 6962 / RFC 9162
 * vectors of transparency-dev/merkle (test/data/rfc6962-inclusion/, Apache-2.0): every case
 * with wantErr=false verifies, every case with wantErr=true is rejected with a verdict (never
 * an exception). The happy paths are also rebuilt from the RFC 6962 test leaves with
 * Rfc6962Tree, so that the tree and the vectors agree byte for byte.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { emptyRoot, hashLeaf } from '../../../gateway/merkle/rfc6962.js';
import { INCLUSION_FAILURES, verifyInclusion, type InclusionFailureCode } from '../../../gateway/merkle/verify.js';

const DIR = fileURLToPath(new URL('../../data/rfc6962-inclusion/', import.meta.url));
const EXPECTED_CASES = 98;

interface Vector {
  name: string;
  leafIdx: bigint;
  treeSize: bigint;
  root: Buffer;
  leafHash: Buffer;
  proof: Buffer[];
  desc: string;
  wantErr: boolean;
}

function jsonFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((f) => {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) return jsonFiles(p);
      return p.endsWith('.json') ? [p] : [];
    });
}

function base64(v: unknown, what: string): Buffer {
  if (typeof v !== 'string') throw new Error(`${what} is not a base64 string`);
  return Buffer.from(v, 'base64');
}

function readVector(path: string): Vector {
  // leafIdx may be 2^64 - 1, which JSON.parse would round to 2^64: quote the integers first.
  const text = readFileSync(path, 'utf8').replace(/"(leafIdx|treeSize)"\s*:\s*(\d+)/g, '"$1": "$2"');
  const j = JSON.parse(text) as Record<string, unknown>;
  const proof = j.proof ?? []; // Go writes a nil slice as null
  if (!Array.isArray(proof)) throw new Error(`${path}: proof is not an array`);
  if (typeof j.wantErr !== 'boolean' || typeof j.desc !== 'string') throw new Error(`${path}: no wantErr/desc`);
  return {
    name: relative(DIR, path),
    leafIdx: BigInt(j.leafIdx as string),
    treeSize: BigInt(j.treeSize as string),
    root: base64(j.root, `${path} root`),
    leafHash: base64(j.leafHash, `${path} leafHash`),
    proof: proof.map((p, i) => base64(p, `${path} proof[${i}]`)),
    desc: j.desc,
    wantErr: j.wantErr,
  };
}

const vectors = jsonFiles(DIR).map(readVector);

/** RFC 6962 test leaves (transparency-dev/merkle testonly.LeafInputs, certificate-transparency). */
const RFC6962_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map((h) => Buffer.from(h, 'hex'));

/**
 * RFC 6962 roots of the trees over the first n test leaves, n = 0..8 (transparency-dev/merkle
 * testonly.RootHashes; the same values as certificate-transparency's merkle_tree_test).
 */
const RFC6962_ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

/** Corruptions that change one property only, so the verdict code is determined. */
const CODE_BY_CORRUPTION: Record<string, InclusionFailureCode> = {
  'wrong leaf': 'BAD_HASH_LENGTH', // "WrongLeaf", 9 bytes
  'preceding garbage': 'BAD_HASH_LENGTH', // an empty proof element
  'trailing garbage': 'BAD_HASH_LENGTH',
  'inserted component': 'PROOF_TOO_LONG',
  'preceding root': 'PROOF_TOO_LONG',
  'trailing root': 'PROOF_TOO_LONG',
  'removed component': 'PROOF_TOO_SHORT',
  'random root': 'ROOT_MISMATCH',
  'modified proof[0] bit @3': 'ROOT_MISMATCH',
  'modified proof[1] bit @3': 'ROOT_MISMATCH',
  'modified proof[2] bit @3': 'ROOT_MISMATCH',
};

function verify(v: Vector) {
  return verifyInclusion({ leafIndex: v.leafIdx, treeSize: v.treeSize, leafHash: v.leafHash, proof: v.proof, root: v.root });
}

describe('RFC 6962 inclusion vectors (transparency-dev/merkle testdata/inclusion)', () => {
  it(`finds all ${EXPECTED_CASES} cases, so that a lost file fails the suite`, () => {
    expect(vectors).toHaveLength(EXPECTED_CASES);
    expect(vectors.filter((v) => !v.wantErr).map((v) => v.name)).toEqual([
      '0/happy-path.json',
      '1/happy-path.json',
      '2/happy-path.json',
      '3/happy-path.json',
      '4/happy-path.json',
      'single-entry/matching-root-and-leaf.json',
    ]);
  });

  describe('wantErr=false verifies', () => {
    for (const v of vectors.filter((x) => !x.wantErr)) {
      it(`${v.name} (${v.desc})`, () => {
        expect(verify(v)).toEqual({ ok: true });
      });
    }
  });

  describe('wantErr=true is rejected with a verdict', () => {
    for (const v of vectors.filter((x) => x.wantErr)) {
      it(`${v.name} (${v.desc})`, () => {
        const verdict = verify(v); // a throw would fail the test: corrupt data is not an argument error
        expect(verdict.ok).toBe(false);
        if (verdict.ok) return;
        expect(Object.keys(INCLUSION_FAILURES)).toContain(verdict.code);
        const want = CODE_BY_CORRUPTION[v.desc];
        if (want) expect(verdict.code).toBe(want);
        if (verdict.code === 'ROOT_MISMATCH') {
          expect(verdict.expected).toEqual(v.root);
          expect(verdict.calculated).not.toEqual(v.root);
        }
      });
    }
  });

  it('leafIdx 2^64 - 1 is read without loss and judged out of range, not thrown', () => {
    const v = vectors.find((x) => x.name === '1/leafIdx-sub-@1.json');
    expect(v?.leafIdx).toBe(2n ** 64n - 1n);
    expect(v && verify(v)).toMatchObject({ ok: false, code: 'INDEX_OUT_OF_RANGE', leafIndex: 2n ** 64n - 1n, treeSize: 8n });
  });
});

describe('known RFC 6962 values', () => {
  it('the empty tree root is SHA-256("") = e3b0c442…, and the vectors\' "empty root" cases use it', () => {
    expect(emptyRoot().toString('hex')).toBe(RFC6962_ROOTS[0]);
    expect(Rfc6962Tree.fromLeafData([]).root().toString('hex')).toBe(RFC6962_ROOTS[0]);
    const emptyRootCases = vectors.filter((v) => /^[0-4]\/empty-root\.json$/.test(v.name));
    expect(emptyRootCases).toHaveLength(5);
    for (const v of emptyRootCases) expect(v.root).toEqual(emptyRoot());
  });

  it('the leaf hash of the empty string is 6e340b9c…', () => {
    expect(hashLeaf(new Uint8Array(0)).toString('hex')).toBe(RFC6962_ROOTS[1]);
  });

  it('roots of the trees over the first n RFC 6962 test leaves, n = 0..8', () => {
    for (let n = 0; n <= 8; n++) {
      expect(Rfc6962Tree.fromLeafData(RFC6962_LEAVES.slice(0, n)).root().toString('hex'), `n=${n}`).toBe(RFC6962_ROOTS[n]);
    }
  });

  describe('each happy path is exactly what Rfc6962Tree builds from the test leaves', () => {
    for (const v of vectors.filter((x) => /^[0-4]\/happy-path\.json$/.test(x.name))) {
      it(`${v.name}: leaf ${v.leafIdx} of ${v.treeSize}`, () => {
        const tree = Rfc6962Tree.fromLeafData(RFC6962_LEAVES.slice(0, Number(v.treeSize)));
        const i = Number(v.leafIdx);
        expect(tree.root()).toEqual(v.root);
        expect(tree.leafHash(i)).toEqual(v.leafHash);
        expect(tree.inclusionProof(i)).toEqual(v.proof);
      });
    }
  });
});
