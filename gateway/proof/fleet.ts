/**
 * Proof bundles for frames any gateway of the hospital took, made by the hub, which is
 * stateless and has no batch store (docs/proof-format.md, "Proofs across the hospital").
 *
 * A stored frame lists every gateway that accepted it (`acceptances`, each with that gateway's
 * batch and leaf). For one of them, the hub reads that batch's `batches` point (every gateway
 * writes each anchored batch there: gateway/storage/batch-writer.ts), rebuilds the RFC 9162 tree
 * from its leaf hashes, checks that the frame's leaf hash is the leaf the acceptance names
 * (else FRAME_TAMPERED), builds the bundle exactly as the gateway's own ProofService does
 * (./service.ts, FrameBundler), and holds the bundle's anchor claim to the chain with the
 * verifier's own anchor check (verifyAnchorClaim): root, tree size, time window, transaction,
 * block and block hash, against the hospital's AnchorRegistry. Absent from the chain, or with
 * fewer than `confirmations` blocks: NOT_YET_ANCHORED; anything else that differs:
 * FRAME_TAMPERED. So a bundle leaves the hub only when the checks `vitalproof verify` runs on
 * the anchor pass, and InfluxDB (untrusted) can make the hub refuse, never lie.
 */
import { createHash } from 'node:crypto';
import type { Provider } from 'ethers';
import { STREAM } from '../chain/contracts.js';
import { ChainError } from '../chain/errors.js';
import { readBatchPoint, type StoredBatch } from '../storage/batch-points.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import type { Acceptance, StoredFrame } from '../storage/schema.js';
import { isBundleFormatError } from './bundle.js';
import { FrameBundler, proofFailure, StoredFrameProofs, type BatchOfFrame, type BundleFailure, type BundleResult, type ProofErrorCode } from './service.js';
import { VerifyCache, verifyAnchorClaim } from './verify.js';

export interface FleetProofServiceDeps {
  /** The shared InfluxDB: `frames`, `acceptances` and `batches`. */
  sink: Pick<InfluxSink, 'queryFrames' | 'queryRows'>;
  /** The chain the anchors are checked on. */
  provider: Provider;
  keyOf: (deviceId: string) => Uint8Array | undefined;
  /** The hospital's DeviceRegistry; undefined when chain.mode is off. */
  deviceRegistry: { chainId: number; address: string } | undefined;
  /** The hospital's AnchorRegistry: a batch point that names another (or another chain) is FRAME_TAMPERED. */
  anchorRegistry: string;
  /** Blocks an anchor needs on chain (its own included). Default 1. */
  confirmations?: number;
  /** Deadline of the chain check of one batch. Default 15 s. */
  timeoutMs?: number;
}

/** Which failure to report when no acceptance gives a bundle: the one that says most. */
const SEVERITY: Partial<Record<ProofErrorCode, number>> = { FRAME_TAMPERED: 4, DEVICE_UNKNOWN: 3, NOT_YET_ANCHORED: 2, NOT_BATCHED: 1 };

/** Batches whose anchor passed the chain check, kept: the frames of an export mostly share a few. */
const VERIFIED_KEEP = 16;

export class FleetProofService extends StoredFrameProofs {
  private readonly bundler: FrameBundler | undefined;
  /** Batch points whose anchor the chain confirmed, by gateway and batch. */
  private readonly verified = new Map<string, BatchOfFrame & { point: StoredBatch }>();

  constructor(private readonly d: FleetProofServiceDeps) {
    super(d.sink);
    this.bundler = d.deviceRegistry ? new FrameBundler({ keyOf: d.keyOf, deviceRegistry: d.deviceRegistry }) : undefined;
  }

  /**
   * The bundle of stored frame `f`, through the first of its acceptances (or only `opts.gateway`'s)
   * whose batch gives one; else the most telling refusal.
   * @throws StorageError when InfluxDB cannot be read; ChainError CHAIN_UNREACHABLE when the chain does not answer.
   */
  async bundleOf(f: StoredFrame, opts: { gateway?: string } = {}): Promise<BundleResult> {
    if (!this.bundler) return proofFailure(f, 'CHAIN_OFF');
    const candidates = f.acceptances.filter((a) => a.batch !== undefined && a.leaf !== undefined && (opts.gateway === undefined || a.gateway === opts.gateway));
    if (candidates.length === 0) return proofFailure(f, 'NOT_BATCHED', opts.gateway !== undefined ? ` (of gateway ${opts.gateway})` : '');
    let worst: BundleFailure | undefined;
    for (const a of candidates) {
      const r = await this.viaAcceptance(this.bundler, f, a);
      if (r.ok) return r;
      if (!worst || (SEVERITY[r.code] ?? 0) > (SEVERITY[worst.code] ?? 0)) worst = r;
    }
    return worst!;
  }

  private async viaAcceptance(bundler: FrameBundler, f: StoredFrame, a: Acceptance): Promise<BundleResult> {
    const seq = a.batch!;
    const leaf = a.leaf!;
    const where = ` (batch ${seq} of gateway ${a.gateway})`;
    const key = `${a.gateway}\0${seq}`;
    const known = this.verified.get(key);
    let batch = known;
    if (!batch) {
      const point = await readBatchPoint(this.d.sink, a.gateway, STREAM.FRAMES, seq);
      if (!point) return proofFailure(f, 'NOT_YET_ANCHORED', `${where}: not in the shared InfluxDB's batches yet`);
      batch = batchOfPoint(point);
    }
    let r: BundleResult;
    try {
      r = bundler.bundle(
        f,
        leaf,
        batch,
        {
          chainId: batch.point.chainId,
          contract: batch.point.contract,
          gateway: batch.point.address,
          stream: STREAM.FRAMES,
          txHash: batch.point.txHash,
          blockNumber: batch.point.blockNumber,
          blockHash: batch.point.blockHash,
        },
        a.gateway,
      );
    } catch (e) {
      // An address, hash or number in the point that cannot go in a bundle: the point was edited.
      if (isBundleFormatError(e)) return proofFailure(f, 'FRAME_TAMPERED', `${where}: ${e.message}`);
      throw e;
    }
    if (!r.ok) return r.code === 'FRAME_TAMPERED' ? proofFailure(f, 'FRAME_TAMPERED', `${where}, leaf ${leaf}`) : r;
    if (known) return r;
    const check = await verifyAnchorClaim(r.bundle, {
      provider: this.d.provider,
      trusted: { chainId: this.d.deviceRegistry!.chainId, anchorRegistry: this.d.anchorRegistry },
      cache: new VerifyCache(),
      ...(this.d.timeoutMs !== undefined ? { timeoutMs: this.d.timeoutMs } : {}),
    });
    if (check.status !== 'pass') {
      if (check.code === 'CHAIN_UNREACHABLE') throw new ChainError('CHAIN_UNREACHABLE', { gateway: a.gateway, batch: seq, reason: check.message });
      if (check.code === 'NOT_ANCHORED') return proofFailure(f, 'NOT_YET_ANCHORED', `${where}: not on chain`);
      return proofFailure(f, 'FRAME_TAMPERED', `${where}: the batch point disagrees with the chain: ${check.code}: ${check.message}`);
    }
    const confirmations = Number(check.detail?.['confirmations'] ?? 0);
    if (confirmations < (this.d.confirmations ?? 1))
      return proofFailure(f, 'NOT_YET_ANCHORED', `${where}: ${confirmations} of ${this.d.confirmations ?? 1} confirmations`);
    this.verified.set(key, batch);
    if (this.verified.size > VERIFIED_KEEP) this.verified.delete(this.verified.keys().next().value as string);
    return r;
  }
}

/** A batch point as the bundler takes it; the tree key is a digest of its leaves, so an edited point never meets a cached tree of another. */
function batchOfPoint(point: StoredBatch): BatchOfFrame & { point: StoredBatch } {
  const digest = createHash('sha256');
  for (const h of point.leafHashes) digest.update(h);
  return {
    seq: point.seq,
    leafHashes: point.leafHashes,
    firstFrameTimeMs: point.firstFrameTimeMs,
    lastFrameTimeMs: point.lastFrameTimeMs,
    treeKey: `${point.gateway}\0${point.seq}\0${digest.digest('hex')}`,
    point,
  };
}
