/**
 * The batch store: what each sealed Merkle batch of accepted frames contains, in order, and
 * where it was anchored. It is what proofs are regenerated from after a restart, and what
 * the audit compares InfluxDB against, so it is written before anything depends on it.
 *
 * Layout under `dir` (docs/anchoring.md has the picture):
 *
 *   state.json                      { lastSealed, lastSealedLsn, lastAnchored }   (atomic)
 *   000000/000000000001.batch.json  one sealed batch: header, leaf hashes, frame list (atomic)
 *   000000/000000000001.anchor.json where it was anchored, once confirmed        (atomic)
 *
 * Batches are numbered from 1 without gaps (the contract's batch sequence). A batch file is
 * written before state.json names it; a crash between the two is rolled forward at open.
 * Files are sharded 10,000 batches per folder (about 28 hours at one batch per 10 s).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.js';
import { Rfc6962Tree } from '../merkle/tree.js';

export const BATCH_FILE_VERSION = 1;
const PER_SHARD = 10_000n;

/** One leaf of a batch: an accepted frame, in acceptance (spool) order. */
export interface BatchLeaf {
  /** Spool position of the frame. */
  lsn: bigint;
  device: string;
  seq: bigint;
  /** Device timestamp of the frame's first sample, ms. */
  timeMs: number;
  /** SHA-256(0x00 ‖ exact signed frame bytes): the RFC 9162 leaf hash. */
  leafHash: Buffer;
}

export interface BatchHeader {
  seq: bigint;
  leafCount: number;
  /** RFC 9162 Merkle tree hash of the leaves, 0x-hex. */
  root: string;
  firstFrameTimeMs: number;
  lastFrameTimeMs: number;
  firstLsn: bigint;
  lastLsn: bigint;
  openedAtMs: number;
  sealedAtMs: number;
}

export interface SealedBatch extends BatchHeader {
  leaves: BatchLeaf[];
}

/**
 * A batch of `leaves` (non-empty, in log order) with its RFC 9162 root and the span of its leaf
 * times; both the frame batcher and the access-log batcher seal through this.
 */
export function sealedBatchOf(seq: bigint, leaves: BatchLeaf[], openedAtMs: number, sealedAtMs: number): SealedBatch {
  const tree = Rfc6962Tree.fromLeafHashes(leaves.map((l) => l.leafHash));
  let first = leaves[0]!.timeMs;
  let last = first;
  for (const l of leaves) {
    if (l.timeMs < first) first = l.timeMs;
    if (l.timeMs > last) last = l.timeMs;
  }
  return {
    seq,
    leafCount: leaves.length,
    root: `0x${tree.root().toString('hex')}`,
    firstFrameTimeMs: first,
    lastFrameTimeMs: last,
    firstLsn: leaves[0]!.lsn,
    lastLsn: leaves[leaves.length - 1]!.lsn,
    openedAtMs,
    sealedAtMs,
    leaves,
  };
}

/** Where a batch was anchored: written once the anchoring transaction has its confirmations. */
export interface AnchorRecord {
  seq: bigint;
  chainId: number;
  /** AnchorRegistry address. */
  contract: string;
  /** The gateway's account that anchored. */
  gateway: string;
  stream: number;
  txHash: string;
  blockNumber: number;
  blockHash: string;
  gasUsed: string;
  confirmedAtMs: number;
}

interface StateFile {
  version: 1;
  lastSealed: string;
  lastSealedLsn: string;
  lastAnchored: string;
}

interface BatchFile {
  version: 1;
  seq: string;
  leafCount: number;
  root: string;
  firstFrameTimeMs: number;
  lastFrameTimeMs: number;
  firstLsn: string;
  lastLsn: string;
  openedAtMs: number;
  sealedAtMs: number;
  /** base64 of leafCount × 32-byte leaf hashes, in leaf order */
  leafHashes: string;
  /** per leaf: [device, seq, timeMs, lsn] */
  frames: [string, string, number, string][];
}

export class BatchStore {
  private state: { lastSealed: bigint; lastSealedLsn: bigint; lastAnchored: bigint };
  private readonly cache = new Map<bigint, SealedBatch>();
  private readonly cacheMax: number;

  constructor(
    readonly dir: string,
    opts: { cacheBatches?: number } = {},
  ) {
    mkdirSync(dir, { recursive: true });
    this.cacheMax = opts.cacheBatches ?? 16;
    const p = join(dir, 'state.json');
    if (existsSync(p)) {
      const s = JSON.parse(readFileSync(p, 'utf8')) as StateFile;
      this.state = { lastSealed: BigInt(s.lastSealed), lastSealedLsn: BigInt(s.lastSealedLsn), lastAnchored: BigInt(s.lastAnchored) };
    } else this.state = { lastSealed: 0n, lastSealedLsn: 0n, lastAnchored: 0n };
    // Roll forward what a crash left between a file and the state that names it.
    let moved = false;
    while (existsSync(this.batchPath(this.state.lastSealed + 1n))) {
      const h = this.header(this.state.lastSealed + 1n);
      this.state.lastSealed = h.seq;
      this.state.lastSealedLsn = h.lastLsn;
      moved = true;
    }
    while (this.state.lastAnchored < this.state.lastSealed && existsSync(this.anchorPath(this.state.lastAnchored + 1n))) {
      this.state.lastAnchored++;
      moved = true;
    }
    if (moved) this.writeState();
  }

  /** Highest sealed batch (0 before the first). */
  get lastSealed(): bigint {
    return this.state.lastSealed;
  }

  /** Spool position of the last frame of the last sealed batch: every frame up to it is in a sealed batch. */
  get lastSealedLsn(): bigint {
    return this.state.lastSealedLsn;
  }

  /** Highest batch whose anchor is confirmed; batches are anchored in order, so every one up to it is. */
  get lastAnchored(): bigint {
    return this.state.lastAnchored;
  }

  /** Sealed batches still waiting for their anchor. */
  get pendingAnchors(): number {
    return Number(this.state.lastSealed - this.state.lastAnchored);
  }

  /**
   * Persists batch `lastSealed + 1`, then records it as sealed.
   * @throws RangeError when the batch is not the next one, or is empty.
   */
  seal(batch: SealedBatch): void {
    if (batch.seq !== this.state.lastSealed + 1n) throw new RangeError(`batch ${batch.seq} sealed after ${this.state.lastSealed}`);
    if (batch.leaves.length === 0 || batch.leafCount !== batch.leaves.length)
      throw new RangeError(`batch ${batch.seq} has ${batch.leaves.length} leaves, header says ${batch.leafCount}`);
    const file: BatchFile = {
      version: BATCH_FILE_VERSION,
      seq: batch.seq.toString(),
      leafCount: batch.leafCount,
      root: batch.root,
      firstFrameTimeMs: batch.firstFrameTimeMs,
      lastFrameTimeMs: batch.lastFrameTimeMs,
      firstLsn: batch.firstLsn.toString(),
      lastLsn: batch.lastLsn.toString(),
      openedAtMs: batch.openedAtMs,
      sealedAtMs: batch.sealedAtMs,
      leafHashes: Buffer.concat(batch.leaves.map((l) => l.leafHash)).toString('base64'),
      frames: batch.leaves.map((l) => [l.device, l.seq.toString(), l.timeMs, l.lsn.toString()]),
    };
    mkdirSync(this.shardDir(batch.seq), { recursive: true });
    writeFileAtomic(this.batchPath(batch.seq), JSON.stringify(file));
    this.state.lastSealed = batch.seq;
    this.state.lastSealedLsn = batch.lastLsn;
    this.writeState();
    this.remember(batch);
  }

  /**
   * Records the confirmed anchor of batch `lastAnchored + 1`.
   * @throws RangeError when it is not the next batch to anchor.
   */
  recordAnchor(a: AnchorRecord): void {
    if (a.seq !== this.state.lastAnchored + 1n || a.seq > this.state.lastSealed) {
      throw new RangeError(`anchor of batch ${a.seq} recorded after ${this.state.lastAnchored} (last sealed ${this.state.lastSealed})`);
    }
    writeFileAtomic(this.anchorPath(a.seq), JSON.stringify({ version: 1, ...a, seq: a.seq.toString() }));
    this.state.lastAnchored = a.seq;
    this.writeState();
  }

  /** A sealed batch with its leaves, or undefined when not sealed (or not found). */
  get(seq: bigint): SealedBatch | undefined {
    const hit = this.cache.get(seq);
    if (hit) return hit;
    if (seq < 1n || seq > this.state.lastSealed) return undefined;
    const p = this.batchPath(seq);
    if (!existsSync(p)) return undefined;
    const b = parseBatchFile(readFileSync(p, 'utf8'), p);
    this.remember(b);
    return b;
  }

  /** The anchor of a batch, when confirmed. */
  anchorOf(seq: bigint): AnchorRecord | undefined {
    if (seq < 1n || seq > this.state.lastAnchored) return undefined;
    const p = this.anchorPath(seq);
    if (!existsSync(p)) return undefined;
    const a = JSON.parse(readFileSync(p, 'utf8')) as AnchorRecord & { seq: string };
    return { ...a, seq: BigInt(a.seq) };
  }

  private header(seq: bigint): BatchHeader {
    const p = this.batchPath(seq);
    const b = parseBatchFile(readFileSync(p, 'utf8'), p);
    return b;
  }

  private remember(b: SealedBatch): void {
    this.cache.delete(b.seq);
    this.cache.set(b.seq, b);
    while (this.cache.size > this.cacheMax) this.cache.delete(this.cache.keys().next().value as bigint);
  }

  private writeState(): void {
    const s: StateFile = {
      version: 1,
      lastSealed: this.state.lastSealed.toString(),
      lastSealedLsn: this.state.lastSealedLsn.toString(),
      lastAnchored: this.state.lastAnchored.toString(),
    };
    writeFileAtomic(join(this.dir, 'state.json'), `${JSON.stringify(s)}\n`);
  }

  private shardDir(seq: bigint): string {
    return join(this.dir, (seq / PER_SHARD).toString().padStart(6, '0'));
  }

  batchPath(seq: bigint): string {
    return join(this.shardDir(seq), `${seq.toString().padStart(12, '0')}.batch.json`);
  }

  anchorPath(seq: bigint): string {
    return join(this.shardDir(seq), `${seq.toString().padStart(12, '0')}.anchor.json`);
  }
}

function parseBatchFile(text: string, path: string): SealedBatch {
  const f = JSON.parse(text) as BatchFile;
  if (f.version !== BATCH_FILE_VERSION) throw new Error(`${path}: batch file version ${String(f.version)} is not ${BATCH_FILE_VERSION}`);
  const hashes = Buffer.from(f.leafHashes, 'base64');
  if (hashes.length !== f.leafCount * 32 || f.frames.length !== f.leafCount)
    throw new Error(`${path}: batch file holds ${f.frames.length} frames and ${hashes.length / 32} leaf hashes, header says ${f.leafCount}`);
  return {
    seq: BigInt(f.seq),
    leafCount: f.leafCount,
    root: f.root,
    firstFrameTimeMs: f.firstFrameTimeMs,
    lastFrameTimeMs: f.lastFrameTimeMs,
    firstLsn: BigInt(f.firstLsn),
    lastLsn: BigInt(f.lastLsn),
    openedAtMs: f.openedAtMs,
    sealedAtMs: f.sealedAtMs,
    leaves: f.frames.map(([device, seq, timeMs, lsn], i) => ({
      device,
      seq: BigInt(seq),
      timeMs,
      lsn: BigInt(lsn),
      leafHash: hashes.subarray(i * 32, i * 32 + 32),
    })),
  };
}
