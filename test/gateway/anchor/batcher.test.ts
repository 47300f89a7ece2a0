/**
 * Batch assignment from the spool: every durable frame gets exactly one (batch, leaf), in
 * spool order; sealing persists what the batch holds; after a crash the open batch is
 * rebuilt with the same leaves, so placements already written to storage stay true.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Batcher, frameLeaves, type Placement } from '../../../gateway/anchor/batcher.js';
import { BatchStore } from '../../../gateway/anchor/batch-store.js';
import { encodeSpoolRecord } from '../../../gateway/ingest/spool-record.js';
import { hashLeaf } from '../../../gateway/merkle/rfc6962.js';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { verifyInclusion } from '../../../gateway/merkle/verify.js';
import { Wal } from '../../../gateway/spool/wal.js';
import { heartRate, testDevice } from '../../support/devices.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-batcher-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const devices = [testDevice('batch-a'), testDevice('batch-b')];
let clock = 1_763_000_000_000;

/** Appends `n` real signed frames (alternating devices) and waits until they are durable. */
async function accept(wal: Wal, n: number): Promise<Uint8Array[]> {
  const raws: Uint8Array[] = [];
  const appends = [];
  for (let i = 0; i < n; i++) {
    const d = devices[i % devices.length]!;
    const raw = d.core.record(heartRate(clock, [60 + (i % 30), 61])).raw;
    clock += 2000;
    raws.push(raw);
    appends.push(wal.append(encodeSpoolRecord(clock, 'mqtt', d.patient, raw)));
  }
  await Promise.all(appends.map((a) => a.durable));
  return raws;
}

describe('Batcher', () => {
  it('places frames in spool order and seals batches whose roots prove every leaf', async () => {
    const wal = await Wal.open(join(dir, 'spool'));
    const store = new BatchStore(join(dir, 'batches'));
    let now = 0;
    const sealed: bigint[] = [];
    const b = new Batcher(frameLeaves(wal), store, {
      storedThroughLsn: 0n,
      intervalMs: 1000,
      maxLeaves: 7,
      now: () => now,
      onSealed: (x) => sealed.push(x.seq),
    });
    const raws = await accept(wal, 17);
    // Count seals: 7 + 7, then 3 stay open until the interval passes.
    const placements: Placement[] = raws.map((_, i) => b.placementOf(BigInt(i + 1)));
    expect(sealed).toEqual([1n, 2n]);
    expect(b.openLeaves).toBe(3);
    b.tick();
    expect(sealed).toEqual([1n, 2n]);
    now += 1000;
    b.tick();
    expect(sealed).toEqual([1n, 2n, 3n]);
    expect(placements).toEqual(raws.map((_, i) => ({ batch: BigInt(Math.floor(i / 7) + 1), leaf: i % 7 })));
    for (let s = 1n; s <= 3n; s++) {
      const batch = store.get(s)!;
      const tree = Rfc6962Tree.fromLeafHashes(batch.leaves.map((l) => l.leafHash));
      expect(`0x${tree.root().toString('hex')}`).toBe(batch.root);
      batch.leaves.forEach((l, i) => {
        const raw = raws[Number(l.lsn) - 1]!;
        expect(l.leafHash.equals(hashLeaf(raw))).toBe(true);
        expect(verifyInclusion({ leafIndex: i, treeSize: tree.size, leafHash: hashLeaf(raw), proof: tree.inclusionProof(i), root: tree.root() }).ok).toBe(true);
      });
    }
    expect(store.lastSealedLsn).toBe(17n);
    b.stop();
    await wal.close();
  });

  it('rebuilds the open batch after a crash with the same leaves, and keeps placements of unstored frames', async () => {
    const wal = await Wal.open(join(dir, 'spool'));
    const store = new BatchStore(join(dir, 'batches'));
    const b = new Batcher(frameLeaves(wal), store, { storedThroughLsn: 0n, intervalMs: 60_000, maxLeaves: 5 });
    await accept(wal, 8); // batch 1 sealed (5), 3 open
    const before = Array.from({ length: 8 }, (_, i) => b.placementOf(BigInt(i + 1)));
    b.stored(2n); // storage confirmed 1..2 only
    await wal.close(); // crash: no stop(), the open batch was never sealed

    const wal2 = await Wal.open(join(dir, 'spool'));
    const store2 = new BatchStore(join(dir, 'batches'));
    expect(store2.lastSealed).toBe(1n);
    const b2 = new Batcher(frameLeaves(wal2), store2, { storedThroughLsn: 2n, intervalMs: 60_000, maxLeaves: 5 });
    expect(b2.openLeaves).toBe(3);
    for (let i = 3; i <= 8; i++) expect(b2.placementOf(BigInt(i))).toEqual(before[i - 1]);
    expect(() => b2.placementOf(1n)).toThrow(RangeError); // stored before the crash: not needed again
    await accept(wal2, 2);
    expect(b2.placementOf(9n)).toEqual({ batch: 2n, leaf: 3 });
    expect(b2.placementOf(10n)).toEqual({ batch: 2n, leaf: 4 });
    expect(store2.lastSealed).toBe(2n);
    expect(store2.get(2n)!.leaves.map((l) => l.lsn)).toEqual([6n, 7n, 8n, 9n, 10n]);
    b2.stop();
    await wal2.close();
  });

  it('seals what is open on a clean stop, and seals nothing when there is nothing', async () => {
    const wal = await Wal.open(join(dir, 'spool'));
    const store = new BatchStore(join(dir, 'batches'));
    const b = new Batcher(frameLeaves(wal), store, { storedThroughLsn: 0n, intervalMs: 60_000 });
    expect(b.seal()).toBeUndefined();
    await accept(wal, 2);
    b.stop();
    expect(store.lastSealed).toBe(1n);
    expect(store.get(1n)!.leafCount).toBe(2);
    await wal.close();
  });
});

describe('BatchStore', () => {
  it('refuses out-of-order seals and anchors, and rolls a sealed file forward after a crash', () => {
    const store = new BatchStore(dir);
    const leaf = { lsn: 1n, device: '0011223344556677', seq: 1n, timeMs: 5, leafHash: hashLeaf(Buffer.from('x')) };
    const b = {
      seq: 2n,
      leafCount: 1,
      root: `0x${hashLeaf(Buffer.from('x')).toString('hex')}`,
      firstFrameTimeMs: 5,
      lastFrameTimeMs: 5,
      firstLsn: 1n,
      lastLsn: 1n,
      openedAtMs: 0,
      sealedAtMs: 0,
      leaves: [leaf],
    };
    expect(() => store.seal(b)).toThrow(RangeError);
    store.seal({ ...b, seq: 1n });
    expect(() =>
      store.recordAnchor({
        seq: 2n,
        chainId: 1,
        contract: '0x',
        gateway: '0x',
        stream: 0,
        txHash: '0x',
        blockNumber: 1,
        blockHash: '0x',
        gasUsed: '1',
        confirmedAtMs: 0,
      }),
    ).toThrow(RangeError);
    store.recordAnchor({
      seq: 1n,
      chainId: 1,
      contract: '0x',
      gateway: '0x',
      stream: 0,
      txHash: '0xabc',
      blockNumber: 1,
      blockHash: '0x',
      gasUsed: '1',
      confirmedAtMs: 0,
    });
    expect(new BatchStore(dir).anchorOf(1n)?.txHash).toBe('0xabc');
    expect(new BatchStore(dir).pendingAnchors).toBe(0);
  });
});
