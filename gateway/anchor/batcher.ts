/**
 * Cuts the stream of accepted frames into Merkle batches. It reads the spool with its own
 * reader, in spool order, and only what is durable, so a frame's place in a batch is a
 * function of the spool alone:
 *
 *   batch N   = the frames after batch N-1's last spool position, up to where N was sealed
 *   leaf i    = the frame's position within its batch
 *
 * A batch is sealed when its oldest frame has waited `intervalMs`, or at `maxLeaves` frames:
 * its root is computed (RFC 9162 with merkletreejs, gateway/merkle) and the batch store
 * persists it. The spool keeps every record of the open batch (the gateway releases the
 * spool only up to the last sealed position), so after a crash the open batch is rebuilt
 * with the same leaves in the same order, and the batch and leaf already written to
 * InfluxDB stay true.
 */
import { frameIdentity } from '../../firmware-proto/frame.js';
import { hashLeaf } from '../merkle/rfc6962.js';
import { WalReader, type Wal } from '../spool/wal.js';
import { spoolRecordFrameBytes } from '../ingest/spool-record.js';
import { sealedBatchOf, type BatchLeaf, type BatchStore, type SealedBatch } from './batch-store.js';

export interface BatcherOptions {
  /** Seal a batch when its first frame is this old (ms). Default 10 s. */
  intervalMs?: number;
  /** Seal a batch at this many frames. Default 50,000. */
  maxLeaves?: number;
  /** How often the timer looks at the open batch (ms). Default min(250, intervalMs / 4). */
  tickMs?: number;
  now?: () => number;
  /** After a batch is durable in the store. */
  onSealed?: (b: SealedBatch) => void;
  /** A timer tick failed (the batch store cannot be written, the spool cannot be read): the timer stops. */
  onError?: (e: Error) => void;
}

/** Where an accepted frame sits: batch sequence and leaf index. */
export interface Placement {
  batch: bigint;
  leaf: number;
}

export class Batcher {
  private readonly reader: WalReader;
  private leaves: BatchLeaf[] = [];
  private openedAtMs = 0;
  /** Placement of every frame not yet confirmed stored, in spool order. */
  private readonly placed = new Map<bigint, Placement>();
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;
  private readonly maxLeaves: number;
  private readonly now: () => number;
  /** Last batch's seal wall time, for status. */
  lastSealedAtMs: number | undefined;

  /**
   * @param storedThroughLsn every frame up to this spool position is already in storage
   *   (the drainer's checkpoint); placements are kept only for the frames after it.
   */
  constructor(
    private readonly wal: Wal,
    private readonly store: BatchStore,
    storedThroughLsn: bigint,
    private readonly opts: BatcherOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.maxLeaves = opts.maxLeaves ?? 50_000;
    if (!(this.intervalMs > 0)) throw new RangeError(`batch interval must be > 0 ms, got ${this.intervalMs}`);
    if (!Number.isInteger(this.maxLeaves) || this.maxLeaves < 1 || this.maxLeaves > 0xffffffff) throw new RangeError(`maxLeaves must be 1 … 2^32-1, got ${this.maxLeaves}`);
    this.now = opts.now ?? Date.now;
    // Frames of sealed batches that storage has not confirmed yet (a drainer behind after a restart).
    const back: SealedBatch[] = [];
    for (let s = store.lastSealed; s >= 1n; s--) {
      const b = store.get(s);
      if (!b || b.lastLsn <= storedThroughLsn) break;
      back.push(b);
    }
    for (const b of back.reverse()) {
      b.leaves.forEach((l, i) => {
        if (l.lsn > storedThroughLsn) this.placed.set(l.lsn, { batch: b.seq, leaf: i });
      });
    }
    this.reader = new WalReader(wal, store.lastSealedLsn + 1n);
    this.catchUp();
  }

  /** The batch frames are being added to. */
  get openSeq(): bigint {
    return this.store.lastSealed + 1n;
  }

  get openLeaves(): number {
    return this.leaves.length;
  }

  /** How long the open batch's first frame has waited (0 when empty). */
  openAgeMs(now = this.now()): number {
    return this.leaves.length ? Math.max(0, now - this.openedAtMs) : 0;
  }

  start(): void {
    const tick = this.opts.tickMs ?? Math.max(1, Math.min(250, Math.floor(this.intervalMs / 4)));
    this.timer ??= setInterval(() => {
      try {
        this.tick();
      } catch (e) {
        clearInterval(this.timer);
        this.timer = undefined;
        if (!this.opts.onError) throw e;
        this.opts.onError(e as Error);
      }
    }, tick);
  }

  /** Reads what became durable, then seals when the open batch is old enough. */
  tick(): void {
    this.catchUp();
    if (this.leaves.length > 0 && this.now() - this.openedAtMs >= this.intervalMs) this.sealOpen();
  }

  /**
   * The batch and leaf of an accepted frame that storage has not confirmed yet.
   * @throws RangeError for a spool position that is not durable or was already confirmed stored.
   */
  placementOf(lsn: bigint): Placement {
    if (lsn >= this.reader.position) this.catchUp();
    const p = this.placed.get(lsn);
    if (!p) throw new RangeError(`no batch placement for spool position ${lsn} (durable up to ${this.wal.durableLsn})`);
    return p;
  }

  /** Storage confirmed every frame up to `lsn`: their placements are no longer needed. */
  stored(lsn: bigint): void {
    for (const k of this.placed.keys()) {
      if (k > lsn) break;
      this.placed.delete(k);
    }
  }

  /** Reads what is durable, then seals the open batch if it has frames; returns it. */
  seal(): SealedBatch | undefined {
    this.catchUp();
    return this.sealOpen();
  }

  private sealOpen(): SealedBatch | undefined {
    if (this.leaves.length === 0) return undefined;
    const batch = sealedBatchOf(this.openSeq, this.leaves, this.openedAtMs, this.now());
    this.store.seal(batch);
    this.leaves = [];
    this.lastSealedAtMs = batch.sealedAtMs;
    this.opts.onSealed?.(batch);
    return batch;
  }

  /** Stops the timer and seals what is open, so a clean shutdown leaves no partial batch. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.seal();
    this.reader.close();
  }

  private catchUp(): void {
    for (let recs = this.reader.read(5000); recs.length > 0; recs = this.reader.read(5000)) {
      for (const r of recs) {
        const raw = spoolRecordFrameBytes(r.lsn, r.payload);
        const f = frameIdentity(raw); // accepted: already decoded and verified once
        if (this.leaves.length === 0) this.openedAtMs = this.now();
        this.placed.set(r.lsn, { batch: this.openSeq, leaf: this.leaves.length });
        this.leaves.push({ lsn: r.lsn, device: f.deviceId, seq: f.seq, timeMs: Number(f.timestampMs), leafHash: hashLeaf(raw) });
        if (this.leaves.length >= this.maxLeaves) this.sealOpen();
      }
    }
  }
}
