/** Checks shared by the anchoring suites: batches on disk, frames in InfluxDB and anchors on chain agree. */
import { expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { STREAM, anchorRegistryAt } from '../../gateway/chain/contracts.js';
import { chainProvider } from '../../gateway/chain/runtime.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { BatchStore } from '../../gateway/anchor/batch-store.js';
import { hashLeaf } from '../../gateway/merkle/rfc6962.js';
import { Rfc6962Tree } from '../../gateway/merkle/tree.js';
import type { InfluxSink } from '../../gateway/storage/influx-sink.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import type { GatewayProcess } from './gateway-process.js';

/** Waits until every accepted frame is stored, sealed in a batch, and every batch is anchored. */
export function anchoredAll(g: GatewayProcess, timeoutMs = 60_000): Promise<StatusSnapshot> {
  return g.until(
    (s) =>
      s.storage.up &&
      s.spool.backlogFrames === 0 &&
      s.storage.framesWritten >= s.frames.accepted &&
      s.batches.open.frames === 0 &&
      s.batches.pendingAnchors === 0 &&
      s.chain.up,
    timeoutMs,
    'every frame stored, sealed and anchored',
  );
}

/**
 * For a gateway's data dir: every batch 1..lastSealed is on disk, its root recomputes from its
 * leaves, and it is anchored on chain with that root and leaf count at the recorded
 * transaction; every frame in InfluxDB names a batch and leaf whose leaf hash is its own;
 * every frame is in exactly one batch. Returns the number of leaves checked.
 */
export async function expectBatchesConsistent(
  dataDir: string,
  sink: InfluxSink,
  rpcUrl: string,
  deployment?: DeploymentRecord,
): Promise<{ batches: number; leaves: number }> {
  const record = deployment ?? (JSON.parse(readFileSync(join(dataDir, 'chain', 'deployment.json'), 'utf8')) as DeploymentRecord);
  const store = new BatchStore(join(dataDir, 'batches'));
  const provider = chainProvider(rpcUrl, record.chainId, 100);
  try {
    const reg = anchorRegistryAt(record.anchorRegistry.address, provider);
    const frames = await sink.queryFrames();
    const byPlace = new Map<string, (typeof frames)[number]>();
    for (const f of frames) {
      expect(f.batch, `frame ${f.device}/${f.seq} carries its batch`).toBeDefined();
      const key = `${f.batch}:${f.leaf}`;
      expect(byPlace.has(key), `two frames at batch ${f.batch} leaf ${f.leaf}`).toBe(false);
      byPlace.set(key, f);
    }
    let leaves = 0;
    let gateway: string | undefined;
    for (let seq = 1n; seq <= store.lastSealed; seq++) {
      const b = store.get(seq)!;
      expect(b, `batch ${seq} on disk`).toBeDefined();
      const root = `0x${Rfc6962Tree.fromLeafHashes(b.leaves.map((l) => l.leafHash))
        .root()
        .toString('hex')}`;
      expect(root).toBe(b.root);
      const a = store.anchorOf(seq);
      expect(a, `anchor record of batch ${seq}`).toBeDefined();
      gateway ??= a!.gateway;
      const onChain = await reg.anchorOf(a!.gateway, STREAM.FRAMES, seq);
      expect(onChain.root).toBe(b.root);
      expect(Number(onChain.leafCount)).toBe(b.leafCount);
      expect(Number(onChain.blockNumber)).toBe(a!.blockNumber);
      const receipt = await provider.getTransactionReceipt(a!.txHash);
      expect(receipt?.status).toBe(1);
      expect(receipt?.blockHash).toBe(a!.blockHash);
      b.leaves.forEach((l, i) => {
        const f = byPlace.get(`${seq}:${i}`);
        expect(f, `batch ${seq} leaf ${i} (${l.device}/${l.seq}) is stored`).toBeDefined();
        expect(hashLeaf(f!.raw).equals(l.leafHash)).toBe(true);
        expect(f!.device).toBe(l.device);
        expect(f!.seq).toBe(l.seq);
      });
      leaves += b.leafCount;
    }
    // Nothing stored outside a batch, and the chain has no batch we do not.
    expect(leaves).toBe(frames.length);
    if (gateway) expect(await reg.nextBatchSeq(gateway, STREAM.FRAMES)).toBe(store.lastSealed + 1n);
    return { batches: Number(store.lastSealed), leaves };
  } finally {
    provider.destroy();
  }
}

/** The URL of the embedded chain of a running gateway. */
export function embeddedChainUrl(dataDir: string): string {
  return (JSON.parse(readFileSync(join(dataDir, 'chain', 'endpoint.json'), 'utf8')) as { url: string }).url;
}

/**
 * For one gateway of a fleet (storage schema v2, docs/storage.md): every batch 1..lastSealed in
 * its data dir recomputes to its root and is anchored on chain under its account with that root
 * and leaf count; each of its `acceptances` names a batch and leaf whose leaf hash is the stored
 * frame's; and each accepted frame is a leaf exactly once. `frames` maps "device/seq" to the
 * stored frame's raw signed bytes. Returns the number of leaves checked.
 */
export async function expectAcceptancesAnchored(
  dataDir: string,
  acceptances: { device: string; seq: bigint; batch: bigint; leaf: number }[],
  frames: ReadonlyMap<string, Buffer>,
  rpcUrl: string,
  record: DeploymentRecord,
): Promise<number> {
  const store = new BatchStore(join(dataDir, 'batches'));
  const provider = chainProvider(rpcUrl, record.chainId, 100);
  try {
    const reg = anchorRegistryAt(record.anchorRegistry.address, provider);
    const leafAt = new Map<string, { device: string; seq: bigint }>();
    for (let seq = 1n; seq <= store.lastSealed; seq++) {
      const b = store.get(seq)!;
      expect(b, `batch ${seq} on disk`).toBeDefined();
      expect(
        `0x${Rfc6962Tree.fromLeafHashes(b.leaves.map((l) => l.leafHash))
          .root()
          .toString('hex')}`,
      ).toBe(b.root);
      const a = store.anchorOf(seq);
      expect(a, `anchor record of batch ${seq}`).toBeDefined();
      const onChain = await reg.anchorOf(a!.gateway, STREAM.FRAMES, seq);
      expect([onChain.root, Number(onChain.leafCount)]).toEqual([b.root, b.leafCount]);
      b.leaves.forEach((l, i) => {
        const raw = frames.get(`${l.device}/${l.seq}`);
        expect(raw, `batch ${seq} leaf ${i} (${l.device}/${l.seq}) is stored`).toBeDefined();
        expect(hashLeaf(raw!).equals(l.leafHash)).toBe(true);
        leafAt.set(`${seq}:${i}`, { device: l.device, seq: l.seq });
      });
    }
    const seen = new Set<string>();
    for (const x of acceptances) {
      const key = `${x.device}/${x.seq}`;
      expect(seen.has(key), `${key} accepted twice by one gateway`).toBe(false);
      seen.add(key);
      expect(leafAt.get(`${x.batch}:${x.leaf}`), `${key} at batch ${x.batch} leaf ${x.leaf}`).toEqual({ device: x.device, seq: x.seq });
    }
    // Every leaf is an acceptance: nothing anchored twice, nothing anchored that was not accepted.
    expect(leafAt.size).toBe(acceptances.length);
    return leafAt.size;
  } finally {
    provider.destroy();
  }
}
