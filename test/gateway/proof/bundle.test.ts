/**
 * Proof bundles offline (gateway/proof/bundle.ts, gateway/proof/verify.ts): real signed frames
 * of test devices in a real RFC 9162 tree, a bundle per leaf; offline verification passes with
 * the chain checks skipped; each corruption fails exactly the check it should, with its code;
 * strict parsing names the wrong field; JSON round trips.
 */
import { describe, expect, it } from 'vitest';
import { getAddress } from 'ethers';
import {
  BUNDLE_FORMAT,
  BUNDLES_FORMAT,
  BundleFormatError,
  buildBundle,
  bundleCollection,
  parseBundle,
  parseBundles,
  type BundleFormatCode,
  type ProofBundle,
} from '../../../gateway/proof/bundle.js';
import { CHECK_NAMES, VERDICT_CODES, verifyBundle, type BundleVerdict, type CheckName, type CheckResult } from '../../../gateway/proof/verify.js';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { hashLeaf } from '../../../gateway/merkle/rfc6962.js';
import { STREAM } from '../../../gateway/chain/contracts.js';
import { heartRate, testDevice } from '../../support/devices.js';

const T0 = 1_795_000_000_000;
const A = testDevice('bundle-a');
const B = testDevice('bundle-b');
/** Five frames of two devices, 5 s apart: the batch. */
const FRAMES = [A, B, A, B, A].map((d, i) => ({ device: d, raw: d.core.record(heartRate(T0 + i * 5_000, [70 + i, 71, 72, 73, 74])).raw }));
const TREE = Rfc6962Tree.fromLeafData(FRAMES.map((f) => f.raw));
const REGISTRY = getAddress('0x5fbdb2315678afecb367f032d93f642f64180aa3');
const ANCHORS = getAddress('0xe7f1725e7734ce288f8367e1bb143e90bb3f0512');
const GATEWAY = getAddress('0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266');
const TX = `0x${'ab'.repeat(32)}`;
const BLOCK = `0x${'cd'.repeat(32)}`;

function bundleOf(i: number): ProofBundle {
  const f = FRAMES[i]!;
  return buildBundle({
    raw: f.raw,
    publicKey: f.device.keys.publicKey,
    deviceRegistry: { chainId: 31337, address: REGISTRY },
    leafIndex: i,
    treeSize: TREE.size,
    auditPath: TREE.inclusionProof(i),
    root: TREE.root(),
    anchor: {
      chainId: 31337,
      contract: ANCHORS,
      gateway: GATEWAY,
      stream: STREAM.FRAMES,
      batchSeq: 1n,
      firstFrameTimeMs: T0,
      lastFrameTimeMs: T0 + 4 * 5_000,
      txHash: TX,
      blockNumber: 7,
      blockHash: BLOCK,
    },
    gatewayId: 'ward-1',
    generatedAtMs: T0 + 60_000,
  });
}

/** A deep copy of bundle `i` as plain JSON, for editing. */
function edited(i: number, edit: (b: ProofBundle) => void): ProofBundle {
  const b = JSON.parse(JSON.stringify(bundleOf(i))) as ProofBundle;
  edit(b);
  return b;
}

function check(v: BundleVerdict, name: CheckName): CheckResult {
  const c = v.checks.find((x) => x.check === name);
  if (!c) throw new Error(`no ${name} check in the verdict`);
  return c;
}

function statuses(v: BundleVerdict): Record<string, string> {
  return Object.fromEntries(v.checks.map((c) => [c.check, c.code ? `${c.status}:${c.code}` : c.status]));
}

/** Base64 of `raw` with byte `at` XORed with `mask`. */
function flipped(raw: string, at: number, mask = 0x01): string {
  const bytes = Buffer.from(raw, 'base64');
  bytes[at < 0 ? bytes.length + at : at]! ^= mask;
  return bytes.toString('base64');
}

describe('buildBundle', () => {
  it('fills the frame copies from the decoded raw frame, and the hashes as 0x lowercase hex', () => {
    const b = bundleOf(1);
    expect(b).toMatchObject({
      format: BUNDLE_FORMAT,
      version: 1,
      frame: { raw: Buffer.from(FRAMES[1]!.raw).toString('base64'), deviceId: B.id, seq: '1', timestampMs: T0 + 5_000, sensor: 'heart_rate' },
      device: { publicKey: Buffer.from(B.keys.publicKey).toString('hex'), registry: { chainId: 31337, address: REGISTRY, deviceId: `0x${B.id}` } },
      inclusion: { leafIndex: 1, treeSize: 5, root: `0x${TREE.root().toString('hex')}` },
      anchor: { stream: 0, batchSeq: '1', txHash: TX, blockNumber: 7, blockHash: BLOCK },
      gatewayId: 'ward-1',
      generatedAtMs: T0 + 60_000,
    });
    expect(b.inclusion.auditPath).toEqual(TREE.inclusionProof(1).map((h) => `0x${h.toString('hex')}`));
    expect(Object.keys(b)).not.toContain('leafHash');
  });

  it('refuses inputs that cannot make a bundle, naming the field', () => {
    const good = { ...FRAMES[0]! };
    const base = () => ({
      raw: good.raw,
      publicKey: A.keys.publicKey,
      deviceRegistry: { chainId: 31337, address: REGISTRY },
      leafIndex: 0,
      treeSize: 5,
      auditPath: TREE.inclusionProof(0),
      root: TREE.root(),
      anchor: {
        chainId: 31337,
        contract: ANCHORS,
        gateway: GATEWAY,
        stream: 0,
        batchSeq: 1n,
        firstFrameTimeMs: T0,
        lastFrameTimeMs: T0,
        txHash: TX,
        blockNumber: 7,
        blockHash: BLOCK,
      },
      gatewayId: 'ward-1',
    });
    const cases: [string, (x: ReturnType<typeof base>) => unknown, string][] = [
      ['raw that is no frame', (x) => ({ ...x, raw: good.raw.subarray(0, 40) }), 'frame.raw'],
      ['a 31-byte root', (x) => ({ ...x, root: TREE.root().subarray(1) }), 'inclusion.root'],
      ['a 33-byte public key', (x) => ({ ...x, publicKey: Buffer.concat([A.keys.publicKey, Buffer.of(0)]) }), 'device.publicKey'],
      ['an audit-path hash of 16 bytes', (x) => ({ ...x, auditPath: [Buffer.alloc(16)] }), 'inclusion.auditPath[0]'],
      ['a numeric batchSeq', (x) => ({ ...x, anchor: { ...x.anchor, batchSeq: 1 } }), 'anchor.batchSeq'],
      ['a malformed gateway address', (x) => ({ ...x, anchor: { ...x.anchor, gateway: '0x1234' } }), 'anchor.gateway'],
      ['a fractional leaf index', (x) => ({ ...x, leafIndex: 0.5 }), 'inclusion.leafIndex'],
    ];
    for (const [name, make, field] of cases) {
      let thrown: unknown;
      try {
        buildBundle(make(base()) as Parameters<typeof buildBundle>[0]);
      } catch (e) {
        thrown = e;
      }
      expect(thrown, name).toBeInstanceOf(BundleFormatError);
      expect(thrown, name).toBeInstanceOf(TypeError);
      expect((thrown as BundleFormatError).field, name).toBe(field);
    }
  });
});

describe('verifyBundle offline', () => {
  it('passes frame, signature and inclusion for every leaf, and skips anchor and device saying what was not checked', async () => {
    for (let i = 0; i < TREE.size; i++) {
      const v = await verifyBundle(bundleOf(i), { offline: true });
      expect(v.checks.map((c) => c.check)).toEqual([...CHECK_NAMES]);
      expect(statuses(v)).toEqual({ frame: 'pass', signature: 'pass', inclusion: 'pass', anchor: 'skip', device: 'skip' });
      expect(v.ok).toBe(true);
      expect(v.offline).toBe(true);
      expect(check(v, 'anchor').message).toMatch(
        /^not checked \(offline verification asked for\): that batch 1 of gateway .* is anchored on chain 31337 with this root and a tree size of 5/,
      );
      expect(check(v, 'device').message).toMatch(/^not checked \(offline verification asked for\): that device [0-9a-f]{16} is enrolled/);
      expect(v.subject).toMatchObject({ deviceId: FRAMES[i]!.device.id, batchSeq: '1', leafIndex: i, treeSize: 5 });
    }
  });

  it('without a provider and without offline: the same skips, but not ok', async () => {
    const v = await verifyBundle(bundleOf(0));
    expect(statuses(v)).toEqual({ frame: 'pass', signature: 'pass', inclusion: 'pass', anchor: 'skip', device: 'skip' });
    expect(check(v, 'anchor').message).toContain('no chain provider given');
    expect(v.ok).toBe(false);
  });

  it('a provider with offline: true is never used', async () => {
    const untouchable = new Proxy(
      {},
      {
        get: () => {
          throw new Error('the provider was touched');
        },
      },
    );
    const v = await verifyBundle(bundleOf(0), { provider: untouchable as never, offline: true });
    expect(v.ok).toBe(true);
  });

  it('throws BundleFormatError for a bundle that does not parse: an argument, not a verdict', async () => {
    await expect(verifyBundle({ ...bundleOf(0), version: 2 } as unknown as ProofBundle, { offline: true })).rejects.toMatchObject({
      name: 'BundleFormatError',
      code: 'UNSUPPORTED_VERSION',
      field: 'version',
    });
  });
});

describe('verifyBundle: each corruption fails its check with its code', () => {
  const cases: { name: string; bundle: () => ProofBundle; expect: Record<string, string> }[] = [
    {
      name: 'a flipped bit in a sample: the signature fails, and the leaf is another one',
      // Byte 36 is the low byte of the first sample (header is 33 bytes): 72 → 73, still in range.
      bundle: () => edited(2, (b) => void (b.frame.raw = flipped(b.frame.raw, 36))),
      expect: { frame: 'pass', signature: 'fail:BAD_SIGNATURE', inclusion: 'fail:ROOT_MISMATCH' },
    },
    {
      name: 'a flipped bit in the signature',
      bundle: () => edited(2, (b) => void (b.frame.raw = flipped(b.frame.raw, -1, 0x40))),
      expect: { frame: 'pass', signature: 'fail:BAD_SIGNATURE', inclusion: 'fail:ROOT_MISMATCH' },
    },
    {
      name: 'a raw frame that does not decode (version byte 2): nothing to check the signature of',
      bundle: () => edited(0, (b) => void (b.frame.raw = flipped(b.frame.raw, 0, 0x03))),
      expect: { frame: 'fail:FRAME_MALFORMED', signature: 'skip', inclusion: 'fail:ROOT_MISMATCH' },
    },
    {
      name: "another device's public key",
      bundle: () => edited(0, (b) => void (b.device.publicKey = Buffer.from(B.keys.publicKey).toString('hex'))),
      expect: { frame: 'pass', signature: 'fail:DEVICE_ID_MISMATCH', inclusion: 'pass' },
    },
    {
      name: 'a small-order public key (the identity point)',
      bundle: () => edited(0, (b) => void (b.device.publicKey = `01${'00'.repeat(31)}`)),
      expect: { frame: 'pass', signature: 'fail:BAD_PUBLIC_KEY', inclusion: 'pass' },
    },
    {
      name: 'the leaf index of another leaf (same proof length)',
      bundle: () => edited(0, (b) => void (b.inclusion.leafIndex = 1)),
      expect: { frame: 'pass', signature: 'pass', inclusion: 'fail:ROOT_MISMATCH' },
    },
    {
      name: 'a leaf index past the tree',
      bundle: () => edited(0, (b) => void (b.inclusion.leafIndex = 5)),
      expect: { inclusion: 'fail:INDEX_OUT_OF_RANGE' },
    },
    {
      name: 'a smaller tree size (fewer levels)',
      bundle: () => edited(0, (b) => void (b.inclusion.treeSize = 3)),
      expect: { inclusion: 'fail:PROOF_TOO_LONG' },
    },
    {
      name: 'a larger tree size with more levels',
      bundle: () => edited(0, (b) => void (b.inclusion.treeSize = 9)),
      expect: { inclusion: 'fail:PROOF_TOO_SHORT' },
    },
    {
      name: 'a truncated audit path',
      bundle: () => edited(3, (b) => void b.inclusion.auditPath.pop()),
      expect: { frame: 'pass', signature: 'pass', inclusion: 'fail:PROOF_TOO_SHORT' },
    },
    {
      name: 'an audit path with one hash too many',
      bundle: () => edited(3, (b) => void b.inclusion.auditPath.push(b.inclusion.root)),
      expect: { inclusion: 'fail:PROOF_TOO_LONG' },
    },
    {
      name: 'a swapped audit path',
      bundle: () => edited(0, (b) => void b.inclusion.auditPath.reverse()),
      expect: { inclusion: 'fail:ROOT_MISMATCH' },
    },
    {
      name: 'another root',
      bundle: () =>
        edited(
          4,
          (b) =>
            void (b.inclusion.root = `0x${Rfc6962Tree.fromLeafData(FRAMES.slice(0, 4).map((f) => f.raw))
              .root()
              .toString('hex')}`),
        ),
      expect: { frame: 'pass', signature: 'pass', inclusion: 'fail:ROOT_MISMATCH' },
    },
    {
      name: 'a frame timestamp after the batch window',
      bundle: () => edited(4, (b) => void (b.anchor.lastFrameTimeMs = T0 + 4 * 5_000 - 1)),
      expect: { frame: 'pass', signature: 'pass', inclusion: 'fail:TIME_OUTSIDE_BATCH' },
    },
    {
      name: 'a frame timestamp before the batch window',
      bundle: () => edited(0, (b) => void (b.anchor.firstFrameTimeMs = T0 + 1)),
      expect: { inclusion: 'fail:TIME_OUTSIDE_BATCH' },
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const v = await verifyBundle(c.bundle(), { offline: true });
      expect(statuses(v)).toMatchObject(c.expect);
      expect(v.ok).toBe(false);
      for (const r of v.checks) {
        if (r.status === 'fail') expect(Object.keys(VERDICT_CODES)).toContain(r.code);
        else expect(r.code).toBeUndefined();
      }
    });
  }

  it('FRAME_MALFORMED names the decoder reason; ROOT_MISMATCH says which root was expected and found', async () => {
    const v = await verifyBundle(
      edited(0, (b) => void (b.frame.raw = flipped(b.frame.raw, 0, 0x03))),
      { offline: true },
    );
    expect(check(v, 'frame').detail).toMatchObject({ reason: 'UNKNOWN_VERSION', expected: 1, got: 2 });
    const other = `0x${'11'.repeat(32)}`;
    const w = await verifyBundle(
      edited(1, (b) => void (b.inclusion.root = other)),
      { offline: true },
    );
    expect(check(w, 'inclusion').detail).toMatchObject({
      expected: other,
      calculated: `0x${TREE.root().toString('hex')}`,
      leafHash: `0x${hashLeaf(FRAMES[1]!.raw).toString('hex')}`,
    });
    expect(check(w, 'inclusion').message).toContain(other);
  });

  it('TIME_OUTSIDE_BATCH gives both the frame time and the window', async () => {
    const v = await verifyBundle(
      edited(4, (b) => void (b.anchor.lastFrameTimeMs = T0 + 19_999)),
      { offline: true },
    );
    expect(check(v, 'inclusion').detail).toEqual({ timestampMs: String(T0 + 20_000), firstFrameTimeMs: T0, lastFrameTimeMs: T0 + 19_999 });
    expect(check(v, 'inclusion').message).toContain(new Date(T0 + 20_000).toISOString());
  });

  it('a larger tree size with the same proof length still passes offline: the size must come from the chain', async () => {
    // A larger tree size with the same proof length verifies offline against the same root:
    // an inclusion proof does not authenticate the size (which is why the anchor check takes
    // it from the chain; test/gateway/proof/verify.test.ts).
    const v = await verifyBundle(
      edited(0, (b) => void (b.inclusion.treeSize = 6)),
      { offline: true },
    );
    expect(statuses(v)).toMatchObject({ signature: 'pass', inclusion: 'pass' });
  });

  const copies: [string, (b: ProofBundle) => void, string][] = [
    ['frame.deviceId', (b) => void (b.frame.deviceId = B.id), 'frame.deviceId'],
    ['frame.seq', (b) => void (b.frame.seq = '2'), 'frame.seq'],
    ['frame.timestampMs', (b) => void (b.frame.timestampMs += 1), 'frame.timestampMs'],
    ['frame.sensor', (b) => void (b.frame.sensor = 'spo2'), 'frame.sensor'],
    ['device.registry.deviceId', (b) => void (b.device.registry.deviceId = `0x${B.id}`), 'device.registry.deviceId'],
  ];
  for (const [name, edit, field] of copies) {
    it(`COPY_MISMATCH when ${name} disagrees with the signed frame`, async () => {
      const v = await verifyBundle(edited(0, edit), { offline: true });
      expect(statuses(v)).toMatchObject({ frame: 'fail:COPY_MISMATCH', signature: 'pass', inclusion: 'pass' });
      const mismatches = check(v, 'frame').detail?.['mismatches'] as { field: string }[];
      expect(mismatches.map((m) => m.field)).toEqual([field]);
      expect(check(v, 'frame').message).toContain(field);
    });
  }
});

describe('parseBundle / parseBundles', () => {
  it('round-trips through JSON: one bundle, and a collection', () => {
    const all = FRAMES.map((_, i) => bundleOf(i));
    expect(parseBundles(JSON.parse(JSON.stringify(all[2])))).toEqual([all[2]]);
    expect(parseBundle(JSON.parse(JSON.stringify(all[2])))).toEqual(all[2]);
    const collection = JSON.parse(JSON.stringify(bundleCollection(all))) as unknown;
    expect(collection).toMatchObject({ format: BUNDLES_FORMAT, version: 1 });
    expect(parseBundles(collection)).toEqual(all);
    expect(parseBundles({ format: BUNDLES_FORMAT, version: 1, bundles: [] })).toEqual([]);
  });

  it('accepts addresses in any letter case and returns them checksummed', () => {
    const b = edited(0, (x) => {
      x.anchor.contract = x.anchor.contract.toLowerCase();
      x.anchor.gateway = x.anchor.gateway.toUpperCase().replace('0X', '0x');
      x.device.registry.address = x.device.registry.address.toLowerCase();
    });
    const p = parseBundle(b);
    expect([p.anchor.contract, p.anchor.gateway, p.device.registry.address]).toEqual([ANCHORS, GATEWAY, REGISTRY]);
  });

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each case reaches into the bundle's JSON to break one field
  const refusals: [string, (b: Record<string, any>) => unknown, BundleFormatCode, string][] = [
    ['an array', () => [], 'NOT_AN_OBJECT', ''],
    ['another format', (b) => ({ ...b, format: 'vitalproof.proof' }), 'UNKNOWN_FORMAT', 'format'],
    ['version 2', (b) => ({ ...b, version: 2 }), 'UNSUPPORTED_VERSION', 'version'],
    ['version "1"', (b) => ({ ...b, version: '1' }), 'UNSUPPORTED_VERSION', 'version'],
    ['no frame.raw', (b) => void delete b['frame'].raw, 'MISSING_FIELD', 'frame.raw'],
    ['no anchor', (b) => void delete b['anchor'], 'MISSING_FIELD', 'anchor'],
    ['a leafHash field', (b) => void (b['inclusion'].leafHash = b['inclusion'].root), 'UNKNOWN_FIELD', 'inclusion.leafHash'],
    ['a top-level extra field', (b) => void (b['comment'] = 'hi'), 'UNKNOWN_FIELD', 'comment'],
    ['raw with a stray character', (b) => void (b['frame'].raw = `${b['frame'].raw.slice(0, -4)}!${b['frame'].raw.slice(-3)}`), 'BAD_VALUE', 'frame.raw'],
    ['raw in URL-safe base64', (b) => void (b['frame'].raw = 'ab-_'), 'BAD_VALUE', 'frame.raw'],
    ['raw without padding', (b) => void (b['frame'].raw = 'AQI'), 'BAD_VALUE', 'frame.raw'],
    ['empty raw', (b) => void (b['frame'].raw = ''), 'BAD_VALUE', 'frame.raw'],
    ['a device id in capitals', (b) => void (b['frame'].deviceId = b['frame'].deviceId.toUpperCase()), 'BAD_VALUE', 'frame.deviceId'],
    ['seq as a number', (b) => void (b['frame'].seq = 1), 'WRONG_TYPE', 'frame.seq'],
    ['seq with a leading zero', (b) => void (b['frame'].seq = '01'), 'BAD_VALUE', 'frame.seq'],
    ['seq of 2^64', (b) => void (b['frame'].seq = (2n ** 64n).toString()), 'BAD_VALUE', 'frame.seq'],
    ['a fractional timestamp', (b) => void (b['frame'].timestampMs = 1.5), 'BAD_VALUE', 'frame.timestampMs'],
    ['a timestamp as a string', (b) => void (b['frame'].timestampMs = String(T0)), 'WRONG_TYPE', 'frame.timestampMs'],
    ['a public key with 0x', (b) => void (b['device'].publicKey = `0x${b['device'].publicKey.slice(2)}`), 'BAD_VALUE', 'device.publicKey'],
    ['a registry device id without 0x', (b) => void (b['device'].registry.deviceId = b['frame'].deviceId), 'BAD_VALUE', 'device.registry.deviceId'],
    ['chain id 0', (b) => void (b['device'].registry.chainId = 0), 'BAD_VALUE', 'device.registry.chainId'],
    ['a root in capitals', (b) => void (b['inclusion'].root = `0x${b['inclusion'].root.slice(2).toUpperCase()}`), 'BAD_VALUE', 'inclusion.root'],
    ['a 31-byte audit-path hash', (b) => void (b['inclusion'].auditPath[1] = b['inclusion'].auditPath[1].slice(0, -2)), 'BAD_VALUE', 'inclusion.auditPath[1]'],
    ['an audit path that is a string', (b) => void (b['inclusion'].auditPath = b['inclusion'].root), 'WRONG_TYPE', 'inclusion.auditPath'],
    ['a negative leaf index', (b) => void (b['inclusion'].leafIndex = -1), 'BAD_VALUE', 'inclusion.leafIndex'],
    ['a short contract address', (b) => void (b['anchor'].contract = '0x1234'), 'BAD_VALUE', 'anchor.contract'],
    ['the access-log stream', (b) => void (b['anchor'].stream = 1), 'BAD_VALUE', 'anchor.stream'],
    ['batchSeq as a number', (b) => void (b['anchor'].batchSeq = 1), 'WRONG_TYPE', 'anchor.batchSeq'],
    ['a tx hash without 0x', (b) => void (b['anchor'].txHash = b['anchor'].txHash.slice(2)), 'BAD_VALUE', 'anchor.txHash'],
    ['a null block hash', (b) => void (b['anchor'].blockHash = null), 'WRONG_TYPE', 'anchor.blockHash'],
    ['an empty gateway id', (b) => void (b['gatewayId'] = ''), 'BAD_VALUE', 'gatewayId'],
  ];
  for (const [name, edit, code, field] of refusals) {
    it(`refuses ${name}: ${code} at "${field}"`, () => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the case reaches into the bundle's JSON to break one field
      const b = JSON.parse(JSON.stringify(bundleOf(0))) as Record<string, any>;
      const replaced = edit(b);
      const input = replaced === undefined ? b : replaced;
      let thrown: unknown;
      try {
        parseBundles(input);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(BundleFormatError);
      expect(thrown).toBeInstanceOf(TypeError);
      expect({ code: (thrown as BundleFormatError).code, field: (thrown as BundleFormatError).field }).toEqual({ code, field });
      expect((thrown as Error).message).toContain(code);
    });
  }

  it('names the bundle inside a collection: bundles[1].anchor.txHash', () => {
    const bad = edited(1, (b) => void (b.anchor.txHash = '0x12'));
    expect(() => parseBundles({ format: BUNDLES_FORMAT, version: 1, bundles: [bundleOf(0), bad] })).toThrow(
      expect.objectContaining({ code: 'BAD_VALUE', field: 'bundles[1].anchor.txHash' }),
    );
    expect(() => parseBundles({ format: BUNDLES_FORMAT, version: 1, bundles: {} })).toThrow(expect.objectContaining({ code: 'WRONG_TYPE', field: 'bundles' }));
    expect(() => parseBundle(bundleCollection([bundleOf(0)]))).toThrow(expect.objectContaining({ code: 'UNKNOWN_FORMAT', field: 'format' }));
  });

  it('keeps the exact signed bytes: raw is the frame as the device sent it, signature included', () => {
    const raw = Buffer.from(bundleOf(3).frame.raw, 'base64');
    expect(raw.equals(Buffer.from(FRAMES[3]!.raw))).toBe(true);
  });
});
