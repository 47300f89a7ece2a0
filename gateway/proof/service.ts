/**
 * Makes proof bundles for stored frames: the frame from InfluxDB (its `frames` point holds
 * the exact signed bytes and its batch and leaf), the audit path from the batch store, the
 * anchor from the batch store's confirmed anchor record, the key from the device registry.
 *
 * InfluxDB is untrusted: before a bundle goes out, the stored frame's leaf hash must equal the
 * batch's leaf, or the answer is FRAME_TAMPERED (the audit says more). A bundle is only made
 * for a frame whose batch is anchored with its confirmations; otherwise NOT_YET_ANCHORED.
 */
import type { Remedies } from '../../firmware-proto/coded-error.js';
import { Rfc6962Tree } from '../merkle/tree.js';
import { hashLeaf } from '../merkle/rfc6962.js';
import type { BatchStore } from '../anchor/batch-store.js';
import type { StoredFrame } from '../storage/schema.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import { buildBundle, bundleCollection, type ProofBundle, type ProofBundles } from './bundle.js';

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

export class ProofService {
  private readonly trees = new Map<bigint, Rfc6962Tree>();

  constructor(private readonly d: ProofServiceDeps) {}

  /** The bundle of one stored frame. @throws StorageError when InfluxDB cannot be read. */
  async byFrame(device: string, seq: bigint): Promise<BundleResult> {
    const [f] = await this.d.sink.queryFrames(device, undefined, undefined, seq);
    if (!f) return { ok: false, code: 'FRAME_NOT_FOUND', message: PROOF_ERRORS.FRAME_NOT_FOUND, device, seq: seq.toString() };
    return this.bundleOf(f);
  }

  /**
   * Bundles of a device's stored frames (or all devices') with frame time in [fromMs, toMs),
   * oldest first, at most `limit`; frames that cannot have one yet are listed in `skipped`.
   * @throws StorageError
   */
  async byRange(
    device: string | undefined,
    fromMs: number | undefined,
    toMs: number | undefined,
    limit = MAX_RANGE_BUNDLES,
  ): Promise<{ export: ProofBundles; skipped: Extract<BundleResult, { ok: false }>[]; truncated: boolean }> {
    // One more than asked for, to tell the caller whether there is more.
    const frames = await this.d.sink.queryFrames(device, fromMs, toMs, undefined, limit + 1);
    const bundles: ProofBundle[] = [];
    const skipped: Extract<BundleResult, { ok: false }>[] = [];
    for (const f of frames.slice(0, limit)) {
      const r = this.bundleOf(f);
      if (r.ok) bundles.push(r.bundle);
      else skipped.push(r);
    }
    return { export: bundleCollection(bundles), skipped, truncated: frames.length > limit };
  }

  bundleOf(f: StoredFrame): BundleResult {
    const id = { device: f.device, seq: f.seq.toString(), timestampMs: Number(f.timeNs / 1_000_000n) };
    const fail = (code: ProofErrorCode, extra = ''): BundleResult => ({ ok: false, code, message: `${PROOF_ERRORS[code]}${extra}`, ...id });
    if (!this.d.deviceRegistry) return fail('CHAIN_OFF');
    // Only this gateway's acceptance points into this batch store (reads flatten it first).
    if (f.acceptances.length > 0 && f.gateway !== this.d.gatewayId)
      return fail('OTHER_GATEWAY', ` (accepted by ${f.acceptances.map((a) => a.gateway).join(', ')})`);
    if (f.batch === undefined || f.leaf === undefined) return fail('NOT_BATCHED');
    const anchor = this.d.store.anchorOf(f.batch);
    if (!anchor) return fail('NOT_YET_ANCHORED', ` (batch ${f.batch})`);
    const batch = this.d.store.get(f.batch);
    const leaf = batch?.leaves[f.leaf];
    if (!batch || !leaf || !leaf.leafHash.equals(hashLeaf(f.raw))) return fail('FRAME_TAMPERED', ` (batch ${f.batch} leaf ${f.leaf})`);
    const key = this.d.keyOf(f.device);
    if (!key) return fail('DEVICE_UNKNOWN');
    const tree = this.tree(
      f.batch,
      batch.leaves.map((l) => l.leafHash),
    );
    return {
      ok: true,
      bundle: buildBundle({
        raw: f.raw,
        publicKey: key,
        deviceRegistry: this.d.deviceRegistry,
        leafIndex: f.leaf,
        treeSize: tree.size,
        auditPath: tree.inclusionProof(f.leaf),
        root: tree.root(),
        anchor: {
          chainId: anchor.chainId,
          contract: anchor.contract,
          gateway: anchor.gateway,
          stream: anchor.stream,
          batchSeq: batch.seq,
          firstFrameTimeMs: batch.firstFrameTimeMs,
          lastFrameTimeMs: batch.lastFrameTimeMs,
          txHash: anchor.txHash,
          blockNumber: anchor.blockNumber,
          blockHash: anchor.blockHash,
        },
        gatewayId: this.d.gatewayId,
      }),
    };
  }

  private tree(seq: bigint, leaves: Buffer[]): Rfc6962Tree {
    let t = this.trees.get(seq);
    if (!t) {
      t = Rfc6962Tree.fromLeafHashes(leaves);
      this.trees.set(seq, t);
      if (this.trees.size > 8) this.trees.delete(this.trees.keys().next().value as bigint);
    }
    return t;
  }
}
