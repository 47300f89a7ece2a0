/**
 * Makes proof bundles for stored frames: the frame from InfluxDB (its `frames` point holds
 * the exact signed bytes and its batch and leaf), the audit path from the batch store, the
 * anchor from the batch store's confirmed anchor record, the key from the device registry.
 *
 * InfluxDB is untrusted: before a bundle goes out, the stored frame's leaf hash must equal the
 * batch's leaf, or the answer is FRAME_TAMPERED (the audit says more). A bundle is only made
 * for a frame whose batch is anchored with its confirmations; otherwise NOT_YET_ANCHORED.
 *
 * The hub makes the same bundles for frames any gateway took (./fleet.ts, FleetProofService):
 * both implement Proofs, and share byFrame/byRange (StoredFrameProofs) and the leaf check and
 * bundle (FrameBundler); only where the batch and its anchor come from differs.
 */
import type { Remedies } from '../../firmware-proto/coded-error.js';
import { Rfc6962Tree } from '../merkle/tree.js';
import { hashLeaf } from '../merkle/rfc6962.js';
import type { BatchStore } from '../anchor/batch-store.js';
import type { StoredFrame } from '../storage/schema.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import { buildBundle, bundleCollection, type BundleInput, type ProofBundle, type ProofBundles } from './bundle.js';

export const PROOF_ERRORS = {
  FRAME_NOT_FOUND: 'no stored frame of this device with this sequence number',
  NOT_BATCHED: 'the stored frame carries no batch and leaf (stored before batching existed, or its point was rewritten without them)',
  OTHER_GATEWAY: 'the frame is stored, but another gateway of the hospital accepted and anchored it, not this one',
  NOT_YET_ANCHORED: 'the frame is in a batch whose anchor is not confirmed yet: ask again after the next anchor (status shows batches.lastAnchored)',
  FRAME_TAMPERED: 'the stored frame is not the leaf its batch holds: InfluxDB was edited (run `vitalproof audit`)',
  DEVICE_UNKNOWN: 'the device is not in the registry, so its key cannot go in the bundle',
  CHAIN_OFF: 'this gateway runs without a chain (chain.mode off): nothing is anchored',
} as const;
export type ProofErrorCode = keyof typeof PROOF_ERRORS;

/** What to do about each code: docs/proof-format.md, "The proof API". */
export const PROOF_ERROR_REMEDIES: Remedies<ProofErrorCode> = {
  FRAME_NOT_FOUND: 'Check the device id and seq (`vitalproof audit` shows gaps).',
  NOT_BATCHED: 'Run `vitalproof audit`.',
  OTHER_GATEWAY: 'Ask the hub, or the gateway the error names (docs/fleet.md).',
  NOT_YET_ANCHORED: 'Ask again after the next anchor (`batches.lastAnchored` in /status).',
  FRAME_TAMPERED: 'Run `vitalproof audit` (docs/audit.md).',
  DEVICE_UNKNOWN: 'Check the enrolment.',
  CHAIN_OFF: 'Run the gateway with a chain.',
};

export type BundleResult =
  { ok: true; bundle: ProofBundle } | { ok: false; code: ProofErrorCode; message: string; device: string; seq: string; timestampMs?: number };
export type BundleFailure = Extract<BundleResult, { ok: false }>;

/** Bundles of a range of stored frames: the collection, the frames that have none yet, and whether there are more. */
export interface RangeBundles {
  export: ProofBundles;
  skipped: BundleFailure[];
  truncated: boolean;
}

/**
 * What the proof routes (./http.ts) and the research export (gateway/research/http.ts) ask of a
 * proof source: a gateway's own (ProofService, its batch store) or the hub's (FleetProofService
 * in ./fleet.ts, the shared InfluxDB's `batches` points and the chain).
 */
export interface Proofs {
  /** The bundle of one stored frame. @throws StorageError when InfluxDB cannot be read. */
  byFrame(device: string, seq: bigint): Promise<BundleResult>;
  /**
   * Bundles of a device's stored frames (or all devices') with frame time in [fromMs, toMs),
   * oldest first, at most `limit`; frames that cannot have one yet are listed in `skipped`.
   * @throws StorageError
   */
  byRange(device: string | undefined, fromMs: number | undefined, toMs: number | undefined, limit?: number): Promise<RangeBundles>;
  bundleOf(f: StoredFrame): BundleResult | Promise<BundleResult>;
}

export interface ProofServiceDeps {
  store: BatchStore;
  sink: InfluxSink;
  keyOf: (deviceId: string) => Uint8Array | undefined;
  /** undefined when chain.mode is off. */
  deviceRegistry: { chainId: number; address: string } | undefined;
  gatewayId: string;
}

/** At most this many bundles per range request; ask again from the last frame's time. */
export const MAX_RANGE_BUNDLES = 10_000;

/** A refusal for stored frame `f`: the code's meaning, then `extra` (which batch, which gateway). */
export function proofFailure(f: StoredFrame, code: ProofErrorCode, extra = ''): BundleFailure {
  return { ok: false, code, message: `${PROOF_ERRORS[code]}${extra}`, device: f.device, seq: f.seq.toString(), timestampMs: Number(f.timeNs / 1_000_000n) };
}

/** byFrame and byRange over a source's bundleOf: the same whichever store the batches come from. */
export abstract class StoredFrameProofs implements Proofs {
  constructor(private readonly frames: Pick<InfluxSink, 'queryFrames'>) {}

  abstract bundleOf(f: StoredFrame): BundleResult | Promise<BundleResult>;

  async byFrame(device: string, seq: bigint): Promise<BundleResult> {
    const [f] = await this.frames.queryFrames(device, undefined, undefined, seq);
    if (!f) return { ok: false, code: 'FRAME_NOT_FOUND', message: PROOF_ERRORS.FRAME_NOT_FOUND, device, seq: seq.toString() };
    return this.bundleOf(f);
  }

  async byRange(device: string | undefined, fromMs: number | undefined, toMs: number | undefined, limit = MAX_RANGE_BUNDLES): Promise<RangeBundles> {
    // One more than asked for, to tell the caller whether there is more.
    const frames = await this.frames.queryFrames(device, fromMs, toMs, undefined, limit + 1);
    const bundles: ProofBundle[] = [];
    const skipped: BundleFailure[] = [];
    for (const f of frames.slice(0, limit)) {
      const r = await this.bundleOf(f);
      if (r.ok) bundles.push(r.bundle);
      else skipped.push(r);
    }
    return { export: bundleCollection(bundles), skipped, truncated: frames.length > limit };
  }
}

/** A frame's batch, from a batch store or a `batches` point: its leaf hashes and time window. */
export interface BatchOfFrame {
  seq: bigint;
  leafHashes: readonly Buffer[];
  firstFrameTimeMs: number;
  lastFrameTimeMs: number;
  /** Names the tree in the cache: the same key must always mean the same leaves. */
  treeKey: string;
}

/** Where the batch was anchored, as the bundle's `anchor` says it (docs/proof-format.md). */
export type AnchorOfBatch = Omit<BundleInput['anchor'], 'batchSeq' | 'firstFrameTimeMs' | 'lastFrameTimeMs'>;

/**
 * The last step both proof sources share: the frame's leaf checked against the tree its batch
 * rebuilds (FRAME_TAMPERED), the device key (DEVICE_UNKNOWN), and the bundle. Keeps the last
 * few trees: the frames of an export mostly share a batch.
 */
export class FrameBundler {
  private readonly trees = new Map<string, Rfc6962Tree>();

  constructor(private readonly d: { keyOf: (deviceId: string) => Uint8Array | undefined; deviceRegistry: { chainId: number; address: string } }) {}

  /** The tree of a batch (cached by its treeKey). @throws TypeError for leaves that are not 32-byte hashes. */
  tree(batch: BatchOfFrame): Rfc6962Tree {
    let t = this.trees.get(batch.treeKey);
    if (!t) {
      t = Rfc6962Tree.fromLeafHashes(batch.leafHashes);
      this.trees.set(batch.treeKey, t);
      if (this.trees.size > 8) this.trees.delete(this.trees.keys().next().value as string);
    }
    return t;
  }

  /** Whether stored frame `f` is leaf `leaf` of the batch's tree. */
  holds(batch: BatchOfFrame, leaf: number, f: StoredFrame): boolean {
    const tree = this.tree(batch);
    return Number.isSafeInteger(leaf) && leaf >= 0 && leaf < tree.size && tree.leafHash(leaf).equals(hashLeaf(f.raw));
  }

  /** The bundle of frame `f` as leaf `leaf` of `batch`, anchored as `anchor`; `gatewayId` labels it. */
  bundle(f: StoredFrame, leaf: number, batch: BatchOfFrame, anchor: AnchorOfBatch, gatewayId: string): BundleResult {
    if (!this.holds(batch, leaf, f)) return proofFailure(f, 'FRAME_TAMPERED', ` (batch ${batch.seq} leaf ${leaf})`);
    const key = this.d.keyOf(f.device);
    if (!key) return proofFailure(f, 'DEVICE_UNKNOWN');
    const tree = this.tree(batch);
    return {
      ok: true,
      bundle: buildBundle({
        raw: f.raw,
        publicKey: key,
        deviceRegistry: this.d.deviceRegistry,
        leafIndex: leaf,
        treeSize: tree.size,
        auditPath: tree.inclusionProof(leaf),
        root: tree.root(),
        anchor: { ...anchor, batchSeq: batch.seq, firstFrameTimeMs: batch.firstFrameTimeMs, lastFrameTimeMs: batch.lastFrameTimeMs },
        gatewayId,
      }),
    };
  }
}

export class ProofService extends StoredFrameProofs {
  private readonly bundler: FrameBundler | undefined;

  constructor(private readonly d: ProofServiceDeps) {
    super(d.sink);
    this.bundler = d.deviceRegistry ? new FrameBundler({ keyOf: d.keyOf, deviceRegistry: d.deviceRegistry }) : undefined;
  }

  bundleOf(f: StoredFrame): BundleResult {
    if (!this.bundler) return proofFailure(f, 'CHAIN_OFF');
    // Only this gateway's acceptance points into this batch store (reads flatten it first).
    if (f.acceptances.length > 0 && f.gateway !== this.d.gatewayId)
      return proofFailure(f, 'OTHER_GATEWAY', ` (accepted by ${f.acceptances.map((a) => a.gateway).join(', ')})`);
    if (f.batch === undefined || f.leaf === undefined) return proofFailure(f, 'NOT_BATCHED');
    const anchor = this.d.store.anchorOf(f.batch);
    if (!anchor) return proofFailure(f, 'NOT_YET_ANCHORED', ` (batch ${f.batch})`);
    const batch = this.d.store.get(f.batch);
    if (!batch) return proofFailure(f, 'FRAME_TAMPERED', ` (batch ${f.batch} leaf ${f.leaf})`);
    return this.bundler.bundle(
      f,
      f.leaf,
      { ...batch, leafHashes: batch.leaves.map((l) => l.leafHash), treeKey: batch.seq.toString() },
      {
        chainId: anchor.chainId,
        contract: anchor.contract,
        gateway: anchor.gateway,
        stream: anchor.stream,
        txHash: anchor.txHash,
        blockNumber: anchor.blockNumber,
        blockHash: anchor.blockHash,
      },
      this.d.gatewayId,
    );
  }
}
