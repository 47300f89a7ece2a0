/**
 * The anchoring queue against a real anvil: one transaction per batch, in order; an earlier
 * attempt whose outcome was never recorded is adopted, not repeated; a stuck transaction is
 * replaced with the same nonce, never doubled; confirmations are waited for; a conflicting
 * anchor on chain stops the queue instead of skipping. Two streams (frames, access log) on one
 * account take turns on its transaction lane: one transaction in flight at a time.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Anchorer, type AnchorTarget } from '../../../gateway/anchor/anchorer.js';
import { txLaneOf } from '../../../gateway/anchor/tx-lane.js';
import type { Logger } from '../../../gateway/log.js';
import { BatchStore, type SealedBatch } from '../../../gateway/anchor/batch-store.js';
import { STREAM, anchorRegistryAt, type AnchorRegistryContract } from '../../../gateway/chain/contracts.js';
import { deployContracts } from '../../../gateway/chain/deploy.js';
import { hashLeaf } from '../../../gateway/merkle/rfc6962.js';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { useAnvil } from '../../support/anvil.js';

const chain = useAnvil({ snapshotEach: true });
let address: string;
let dir: string;

beforeAll(async () => {
  const d = await deployContracts(chain.wallet(0), { gateways: [chain.wallet(1).address] });
  address = d.record.anchorRegistry.address;
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-anchorer-'));
});

afterEach(async () => {
  await chain.provider.send('evm_setAutomine', [true]);
  rmSync(dir, { recursive: true, force: true });
});

function batch(seq: bigint, n: number, salt = 'a'): SealedBatch {
  const leaves = Array.from({ length: n }, (_, i) => ({
    lsn: seq * 1000n + BigInt(i),
    device: '0011223344556677',
    seq: seq * 1000n + BigInt(i),
    timeMs: 1_700_000_000_000 + Number(seq) * 10_000 + i,
    leafHash: hashLeaf(Buffer.from(`${salt}:${seq}:${i}`)),
  }));
  return {
    seq,
    leafCount: n,
    root: `0x${Rfc6962Tree.fromLeafHashes(leaves.map((l) => l.leafHash))
      .root()
      .toString('hex')}`,
    firstFrameTimeMs: leaves[0]!.timeMs,
    lastFrameTimeMs: leaves[n - 1]!.timeMs,
    firstLsn: leaves[0]!.lsn,
    lastLsn: leaves[n - 1]!.lsn,
    openedAtMs: 0,
    sealedAtMs: 0,
    leaves,
  };
}

function target(confirmations = 1): AnchorTarget & { anchorRegistry: AnchorRegistryContract } {
  const signer = chain.wallet(1);
  return {
    provider: chain.provider,
    signer,
    anchorRegistry: anchorRegistryAt(address, signer),
    chainId: chain.handle.chainId,
    contract: address,
    gateway: signer.address,
    confirmations,
  };
}

function anchoredEvents(a: Anchorer, store: BatchStore, upTo: bigint): Promise<void> {
  return new Promise((res) => {
    const check = setInterval(() => {
      if (store.lastAnchored >= upTo) {
        clearInterval(check);
        res();
      }
    }, 10);
    a.wake();
  });
}

describe('Anchorer', () => {
  it('anchors sealed batches one transaction each, in order', async () => {
    const store = new BatchStore(dir);
    for (let s = 1n; s <= 3n; s++) store.seal(batch(s, Number(s) * 3));
    const t = target();
    const a = new Anchorer(store, t, { retryMinMs: 20, retryMaxMs: 100 });
    a.start();
    await anchoredEvents(a, store, 3n);
    await a.stop();
    const reg = t.anchorRegistry;
    expect(await reg.nextBatchSeq(t.gateway, STREAM.FRAMES)).toBe(4n);
    const blocks: number[] = [];
    for (let s = 1n; s <= 3n; s++) {
      const on = await reg.anchorOf(t.gateway, STREAM.FRAMES, s);
      expect(on.root).toBe(store.get(s)!.root);
      expect(Number(on.leafCount)).toBe(store.get(s)!.leafCount);
      const rec = store.anchorOf(s)!;
      expect(rec.blockNumber).toBe(Number(on.blockNumber));
      const tx = await chain.provider.getTransaction(rec.txHash);
      expect(tx?.from).toBe(t.gateway);
      blocks.push(rec.blockNumber);
    }
    expect([...blocks].sort((x, y) => x - y)).toEqual(blocks);
  });

  it('adopts a batch an earlier attempt anchored without recording it, and sends nothing for it', async () => {
    const store = new BatchStore(dir);
    const b1 = batch(1n, 5);
    store.seal(b1);
    store.seal(batch(2n, 4));
    const t = target();
    // The earlier attempt: mined, then the gateway crashed before writing the anchor record.
    const earlier = await (await t.anchorRegistry.anchor(STREAM.FRAMES, 1n, b1.root, 5, b1.firstFrameTimeMs, b1.lastFrameTimeMs)).wait();
    const nonceBefore = await chain.provider.getTransactionCount(t.gateway);
    const a = new Anchorer(store, t, { retryMinMs: 20, retryMaxMs: 100 });
    a.start();
    await anchoredEvents(a, store, 2n);
    await a.stop();
    expect(store.anchorOf(1n)!.txHash).toBe(earlier!.hash);
    // Only batch 2 cost a transaction.
    expect(await chain.provider.getTransactionCount(t.gateway)).toBe(nonceBefore + 1);
  });

  it('stops on a conflicting anchor instead of skipping the batch', async () => {
    const store = new BatchStore(dir);
    store.seal(batch(1n, 3));
    store.seal(batch(2n, 3));
    const t = target();
    const other = batch(1n, 3, 'someone-else');
    await (await t.anchorRegistry.anchor(STREAM.FRAMES, 1n, other.root, 3, other.firstFrameTimeMs, other.lastFrameTimeMs)).wait();
    const a = new Anchorer(store, t, { retryMinMs: 20, retryMaxMs: 50 });
    a.start();
    while (!a.status().halted) await new Promise((r) => setImmediate(r));
    await a.stop();
    expect(a.status().halted).toBe('ANCHOR_CONFLICT');
    expect(store.lastAnchored).toBe(0n);
    expect(await t.anchorRegistry.nextBatchSeq(t.gateway, STREAM.FRAMES)).toBe(2n);
  });

  it('replaces a transaction that is not mined in time with the same nonce, and anchors once', async () => {
    const store = new BatchStore(dir);
    store.seal(batch(1n, 4));
    const t = target();
    await chain.provider.send('evm_setAutomine', [false]);
    const lines: { event: string; replaced?: boolean; nonce?: number }[] = [];
    const log = {
      info: (o: { event: string; replaced?: boolean; nonce?: number }) => void lines.push(o),
      warn: () => undefined,
      error: () => undefined,
    } as unknown as import('../../../gateway/log.js').Logger;
    const a = new Anchorer(store, t, { retryMinMs: 10, retryMaxMs: 20, txTimeoutMs: 300, log });
    a.start();
    while (!lines.some((l) => l.event === 'anchor_sent' && l.replaced)) await new Promise((r) => setTimeout(r, 20));
    await chain.provider.send('evm_mine', []);
    await anchoredEvents(a, store, 1n);
    await a.stop();
    const sent = lines.filter((l) => l.event === 'anchor_sent');
    expect(new Set(sent.map((l) => l.nonce)).size).toBe(1);
    expect(await t.anchorRegistry.nextBatchSeq(t.gateway, STREAM.FRAMES)).toBe(2n);
    expect(await chain.provider.getTransactionCount(t.gateway)).toBe(sent[0]!.nonce! + 1);
  });

  it('records a batch only once its transaction has the configured confirmations', async () => {
    const store = new BatchStore(dir);
    store.seal(batch(1n, 2));
    const t = target(3);
    const lines: string[] = [];
    const log = {
      info: (o: { event: string }) => void lines.push(o.event),
      warn: () => undefined,
      error: () => undefined,
    } as unknown as import('../../../gateway/log.js').Logger;
    const a = new Anchorer(store, t, { retryMinMs: 10, retryMaxMs: 20, log });
    a.start();
    while (!lines.includes('anchor_sent')) await new Promise((r) => setTimeout(r, 10));
    // Mined in its own block (automine): one confirmation, not three.
    const mined = await t.anchorRegistry.nextBatchSeq(t.gateway, STREAM.FRAMES);
    expect(mined).toBe(2n);
    expect(store.lastAnchored).toBe(0n);
    await chain.provider.send('anvil_mine', ['0x2']);
    await anchoredEvents(a, store, 1n);
    await a.stop();
    const rec = store.anchorOf(1n)!;
    expect((await chain.provider.getBlockNumber()) - rec.blockNumber + 1).toBeGreaterThanOrEqual(3);
  });
});

/** A log that records anchor_sent lines and lets a test wait for the nth one. */
function sentLog(): { log: Logger; sent: { stream: number; nonce: number; batch: string; replaced: boolean }[]; nth(n: number): Promise<void> } {
  const sent: { stream: number; nonce: number; batch: string; replaced: boolean }[] = [];
  const waiters: { n: number; res: () => void }[] = [];
  const info = (o: { event: string; stream: number; nonce: number; batch: string; replaced: boolean }): void => {
    if (o.event !== 'anchor_sent') return;
    sent.push({ stream: o.stream, nonce: o.nonce, batch: o.batch, replaced: o.replaced });
    for (const w of waiters.filter((x) => sent.length >= x.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.res();
    }
  };
  const log = { info, warn: () => undefined, error: () => undefined } as unknown as Logger;
  return { log, sent, nth: (n) => (sent.length >= n ? Promise.resolve() : new Promise((res) => waiters.push({ n, res }))) };
}

async function inFlight(gateway: string): Promise<number> {
  return (await chain.provider.getTransactionCount(gateway, 'pending')) - (await chain.provider.getTransactionCount(gateway, 'latest'));
}

describe('Anchorer: two streams on one account', () => {
  it("frames and access log take turns on the account's lane: one transaction in flight, consecutive nonces, each stream its own sequence", async () => {
    const frames = new BatchStore(join(dir, 'frames'));
    const access = new BatchStore(join(dir, 'access'));
    for (let s = 1n; s <= 3n; s++) {
      frames.seal(batch(s, 2 + Number(s), 'frames'));
      access.seal(batch(s, 1 + Number(s), 'access'));
    }
    const t = target(); // one signer object: both anchorers share txLaneOf(t.signer)
    const lane = txLaneOf(t.signer);
    const nonce0 = await chain.provider.getTransactionCount(t.gateway);
    await chain.provider.send('evm_setAutomine', [false]);
    const { log, sent, nth } = sentLog();
    const af = new Anchorer(frames, t, { retryMinMs: 10, retryMaxMs: 20, log });
    const aa = new Anchorer(access, t, { stream: STREAM.ACCESS_LOG, retryMinMs: 10, retryMaxMs: 20, log });
    af.start();
    aa.start();
    for (let i = 1; i <= 6; i++) {
      await nth(i);
      // The sender holds the lane, the other stream waits for it, and the pool holds one transaction.
      expect(lane.holder).toBe(`stream ${sent[i - 1]!.stream}`);
      expect(await inFlight(t.gateway)).toBe(1);
      if (i < 6) expect(lane.waiting).toBe(1);
      await chain.provider.send('evm_mine', []);
    }
    await Promise.all([anchoredEvents(af, frames, 3n), anchoredEvents(aa, access, 3n)]);
    await Promise.all([af.stop(), aa.stop()]);
    expect(sent.map((x) => x.stream)).toEqual([0, 1, 0, 1, 0, 1]);
    expect(sent.map((x) => x.nonce)).toEqual([0, 1, 2, 3, 4, 5].map((k) => nonce0 + k));
    expect(sent.every((x) => !x.replaced)).toBe(true);
    for (const [stream, store] of [
      [STREAM.FRAMES, frames],
      [STREAM.ACCESS_LOG, access],
    ] as const) {
      expect(await t.anchorRegistry.nextBatchSeq(t.gateway, stream)).toBe(4n);
      for (let s = 1n; s <= 3n; s++) {
        const on = await t.anchorRegistry.anchorOf(t.gateway, stream, s);
        expect(on.root).toBe(store.get(s)!.root);
        expect(store.anchorOf(s)).toMatchObject({ stream, blockNumber: Number(on.blockNumber) });
      }
    }
    // One transaction per block: never two of the account in flight together.
    const blocks = new Set([...[1n, 2n, 3n].map((s) => frames.anchorOf(s)!.blockNumber), ...[1n, 2n, 3n].map((s) => access.anchorOf(s)!.blockNumber)]);
    expect(blocks.size).toBe(6);
    expect(lane.holder).toBeUndefined();
  });

  it('a stuck transaction keeps the lane until its same-nonce replacement is mined; the other stream then goes on with the next nonce', async () => {
    const frames = new BatchStore(join(dir, 'frames'));
    const access = new BatchStore(join(dir, 'access'));
    frames.seal(batch(1n, 4, 'frames'));
    access.seal(batch(1n, 3, 'access'));
    const t = target();
    const lane = txLaneOf(t.signer);
    await chain.provider.send('evm_setAutomine', [false]);
    const { log, sent, nth } = sentLog();
    const af = new Anchorer(frames, t, { retryMinMs: 10, retryMaxMs: 20, txTimeoutMs: 800, log });
    const aa = new Anchorer(access, t, { stream: STREAM.ACCESS_LOG, retryMinMs: 10, retryMaxMs: 20, log });
    af.start();
    aa.start();
    await nth(2); // the frames transaction, then its replacement after the timeout
    expect(sent[1]).toMatchObject({ stream: 0, replaced: true, nonce: sent[0]!.nonce });
    expect(lane.holder).toBe('stream 0');
    expect(lane.waiting).toBe(1);
    expect(await inFlight(t.gateway)).toBe(1);
    await chain.provider.send('evm_mine', []);
    await nth(3);
    expect(sent[2]).toMatchObject({ stream: 1, replaced: false, nonce: sent[0]!.nonce + 1 });
    await chain.provider.send('evm_mine', []);
    await Promise.all([anchoredEvents(af, frames, 1n), anchoredEvents(aa, access, 1n)]);
    await Promise.all([af.stop(), aa.stop()]);
    expect(await t.anchorRegistry.nextBatchSeq(t.gateway, STREAM.FRAMES)).toBe(2n);
    expect(await t.anchorRegistry.nextBatchSeq(t.gateway, STREAM.ACCESS_LOG)).toBe(2n);
    expect(await chain.provider.getTransactionCount(t.gateway)).toBe(sent[0]!.nonce + 2);
  });
});
