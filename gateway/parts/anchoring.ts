/**
 * Anchoring (docs/anchoring.md): accepted frames cut into Merkle batches in spool order, and
 * each sealed batch's root anchored on chain as AnchorRegistry stream 0. The access log's
 * batches (stream 1) are started by ./consent.ts on the same target and transaction lane.
 */
import { join } from 'node:path';
import { Anchorer, type AnchorerOptions, type AnchorTarget } from '../anchor/anchorer.js';
import { BatchStore } from '../anchor/batch-store.js';
import { Batcher, frameLeaves } from '../anchor/batcher.js';
import { txLaneOf } from '../anchor/tx-lane.js';
import type { ChainRuntime } from '../chain/runtime.js';
import type { GatewayConfig } from '../config.js';
import { ProofService } from '../proof/service.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import type { PartContext } from './lifecycle.js';
import type { SpoolPart } from './spool.js';

/** The frames' Merkle batches on disk (read before the spool opens: its numbering resumes above them). */
export function openFrameBatches(config: GatewayConfig): BatchStore {
  return new BatchStore(join(config.dataDir, 'batches'));
}

export interface AnchoringPart {
  batches: BatchStore;
  batcher: Batcher<Buffer>;
  /** Undefined when chain.mode is off: batches are sealed but not anchored. */
  anchorer: Anchorer | undefined;
  /** One target, one account, one transaction lane for both streams (docs/anchoring.md, "Two streams, one account"). */
  target: AnchorTarget | undefined;
  anchorOptions: AnchorerOptions;
}

/** The frame batcher (its seal fault is fatal) and, with a chain, the frames' anchorer. */
export function startAnchoring(ctx: PartContext, chain: ChainRuntime | undefined, spool: SpoolPart, batches: BatchStore): AnchoringPart {
  const { config, log, life } = ctx;
  // Merkle batches: the batcher reads the spool on its own; a sealed batch advances its spool
  // position ('batches'), and storage's and the uplink's advances drop the placements no longer needed.
  const { positions } = spool;
  // Placements are kept until storage and the uplink (which publishes them) are both past them.
  const placedThrough = (): bigint => {
    const stored = positions.lsn('storage');
    const uplinked = positions.has('uplink') ? positions.lsn('uplink') : stored;
    return uplinked < stored ? uplinked : stored;
  };
  let anchorer: Anchorer | undefined;
  const batcher = new Batcher(frameLeaves(spool.wal), batches, {
    storedThroughLsn: placedThrough(),
    intervalMs: config.batch.intervalMs,
    maxLeaves: config.batch.maxFrames,
    onSealed: (b) => {
      positions.advance('batches', b.lastLsn);
      log.info(
        {
          event: 'batch_sealed',
          batch: b.seq.toString(),
          leaves: b.leafCount,
          root: b.root,
          firstFrameTimeMs: b.firstFrameTimeMs,
          lastFrameTimeMs: b.lastFrameTimeMs,
        },
        'batch sealed',
      );
      anchorer?.wake();
    },
    onError: (e) => {
      log.fatal({ event: 'batcher_failed', err: e.message }, 'sealing a batch failed; stopping so that a restart rebuilds the open batch from the spool');
      life.fail(e);
    },
  });
  positions.onAdvance('storage', () => batcher.stored(placedThrough()));
  if (positions.has('uplink')) positions.onAdvance('uplink', () => batcher.stored(placedThrough()));
  batcher.start();
  life.onStop(() => batcher.stop());
  // Frames of the open batch were lost with the spool's tail: InfluxDB may already name their
  // leaves. Seal what survived now, so that no new frame takes a lost frame's place.
  if (spool.wal.recovered.lost.some((r) => r.to > positions.lsn('batches'))) {
    const b = batcher.seal();
    log.warn(
      { event: 'batch_sealed_after_loss', batch: b?.seq.toString(), leaves: b?.leafCount ?? 0 },
      'the open batch was sealed with the frames that survived the spool loss',
    );
  }
  const { target, anchorOptions } = anchorTarget(ctx, chain);
  if (target) {
    const a = new Anchorer(batches, target, anchorOptions);
    anchorer = a;
    a.start();
    life.onStop(() => a.stop());
  }
  return { batches, batcher, anchorer, target, anchorOptions };
}

/**
 * Where this process anchors (its chain account, one transaction lane for both streams) and how;
 * no target when the chain is off. A hub, which anchors only its access log, takes it from here too.
 */
export function anchorTarget(ctx: PartContext, chain: ChainRuntime | undefined): Pick<AnchoringPart, 'target' | 'anchorOptions'> {
  const { config, log } = ctx;
  return {
    target: chain ? anchorTargetOf(config, chain) : undefined,
    anchorOptions: { retryMinMs: config.chain.retryMinMs, retryMaxMs: config.chain.retryMaxMs, txTimeoutMs: config.chain.txTimeoutMs, log },
  };
}

function anchorTargetOf(config: GatewayConfig, c: ChainRuntime): AnchorTarget {
  return {
    provider: c.provider,
    signer: c.signer,
    anchorRegistry: c.anchorRegistry,
    chainId: c.chainId,
    contract: c.record.anchorRegistry.address,
    gateway: c.address,
    confirmations: config.chain.confirmations,
    makeDurable: () => c.makeDurable(),
    ready: () => c.ready(),
    lane: txLaneOf(c.signer),
  };
}

/** What `anchorNow` seals and waits for: both streams' batchers, stores and anchorers. */
export interface AnchorStreams {
  frames: Pick<AnchoringPart, 'batches' | 'anchorer'> & { batcher: { seal(): unknown } };
  access: { batches: BatchStore; batcher: { seal(): unknown }; anchorer: Anchorer | undefined };
  /** Live deliveries waiting for their access-log entry: they are logged first. */
  settled: () => Promise<void>;
}

/**
 * Seals the open frame batch and the open access-log batch now, and waits (up to timeoutMs)
 * until every sealed batch of both streams is anchored; true when it is.
 */
export async function anchorNow(s: AnchorStreams, timeoutMs: number): Promise<boolean> {
  await s.settled();
  s.frames.batcher.seal();
  s.access.batcher.seal();
  s.frames.anchorer?.wake();
  s.access.anchorer?.wake();
  const pending = (): number => s.frames.batches.pendingAnchors + s.access.batches.pendingAnchors;
  const deadline = Date.now() + timeoutMs;
  while (pending() > 0 && s.frames.anchorer && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return pending() === 0 && s.frames.anchorer !== undefined;
}

/** Proof bundles for stored frames: the batch store's paths and anchors, the frame from storage, the key from the registry. */
export function frameProofs(
  config: GatewayConfig,
  chain: ChainRuntime | undefined,
  batches: BatchStore,
  sink: InfluxSink,
  registry: DeviceRegistry,
): ProofService {
  return new ProofService({
    store: batches,
    sink,
    keyOf: (id) => registry.get(id)?.publicKey,
    deviceRegistry: chain ? { chainId: chain.chainId, address: chain.record.deviceRegistry.address } : undefined,
    gatewayId: config.gatewayId,
  });
}
