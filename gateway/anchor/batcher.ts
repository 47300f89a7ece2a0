/**
 * Cuts a log into Merkle batches: the accepted frames of the spool (`frameLeaves`, below) and
 * the access log (`accessLogLeaves`, gateway/consent/access-log.ts) go through this one
 * batcher, each with a leaf source that says how to read one record, how to hash it into a
 * leaf and what the batch store records of it. It reads the log with its own reader, in log
 * order, and only what is durable, so an item's place in a batch is a function of the log alone:
 *
 *   batch N   = the items after batch N-1's last log position, up to where N was sealed
 *   leaf i    = the item's position within its batch
 *
 * A batch is sealed when its oldest item has waited `intervalMs`, or at `maxLeaves` items:
 * its root is computed (RFC 9162 with merkletreejs, gateway/merkle) and the batch store
 * persists it. The log keeps every record of the open batch (the gateway releases the spool
 * only up to the last sealed position; the access log is never released), so after a crash
 * the open batch is rebuilt with the same leaves in the same order, and the batch and leaf
 * already written to InfluxDB stay true.
 */
import { frameIdentity } from '../../firmware-proto/frame.js';
import { hashLeaf } from '../merkle/rfc6962.js';
import { WalReader, type Wal } from '../spool/wal.js';
import { spoolRecordFrameBytes } from '../ingest/spool-record.js';
import { sealedBatchOf, type BatchLeaf, type BatchStore, type SealedBatch } from './batch-store.js';

/** What a batcher cuts: a log of items, each one leaf. */
export interface LeafSource<Item> {
  /** The log, read in order; a record's position (LSN) is its leaf's `lsn`. */
  readonly wal: Wal;
  /** Decodes the record at `lsn`. @throws for a record that is not an item (a damaged log). */
  read(lsn: bigint, payload: Buffer): Item;
  /** The item's RFC 9162 leaf hash, SHA-256(0x00 ‖ its bytes). */
  hash(item: Item): Buffer;
  /** What the batch store records of the item beside its position and hash. */
  record(item: Item): Pick<BatchLeaf, 'device' | 'seq' | 'timeMs'>;
  /** Refuses a batch store that is ahead of the log (e.g. a log that was replaced). @throws Error. */
  checkStore?(store: BatchStore): void;
}

/** The accepted frames of the spool: leaf = SHA-256(0x00 ‖ exact signed frame bytes), recorded with its device, seq and time. */
export function frameLeaves(wal: Wal): LeafSource<Buffer> {
  return {
    wal,
    read: (lsn, payload) => spoolRecordFrameBytes(lsn, payload),
    hash: (raw) => hashLeaf(raw),
    record: (raw) => {
      const f = frameIdentity(raw); // accepted: already decoded and verified once
      return { device: f.deviceId, seq: f.seq, timeMs: Number(f.timestampMs) };
    },
  };
}

export interface BatcherOptions {
  /** Seal a batch when its first item is this old (ms). Default 10 s. */
  intervalMs?: number;
  /** Seal a batch at this many items. Default 50,000. */
  maxLeaves?: number;
  /** How often the timer looks at the open batch (ms). Default min(250, intervalMs / 4). */
  tickMs?: number;
  now?: () => number;
  /**
   * Keep the placement (placementOf) of every item after this log position until stored()
   * confirms it: the frames, which the storage writer stores with their batch and leaf (its
   * checkpoint goes here). Without it, no placements are kept.
   */
  storedThroughLsn?: bigint;
  /** After a batch is durable in the store (wake the anchorer here). */
  onSealed?: (b: SealedBatch) => void;
  /** A timer tick failed (the batch store cannot be written, the log cannot be read): the timer stops. */
  onError?: (e: Error) => void;
}

/** Where an item sits: batch sequence and leaf index. */
export interface Placement {
  batch: bigint;
  leaf: number;
}

export class Batcher<Item> {
  private readonly reader: WalReader;
  private leaves: BatchLeaf[] = [];
  private openedAtMs = 0;
  /** Placement of every item not yet confirmed stored, in log order (only with storedThroughLsn). */
  private readonly placed: Map<bigint, Placement> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;
  private readonly maxLeaves: number;
  private readonly now: () => number;
  /** Last batch's seal wall time, for status. */
  lastSealedAtMs: number | undefined;

  /** @throws RangeError for bad options; the source's checkStore error for a store ahead of the log. */
  constructor(
    private readonly source: LeafSource<Item>,
    private readonly store: BatchStore,
    private readonly opts: BatcherOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.maxLeaves = opts.maxLeaves ?? 50_000;
    if (!(this.intervalMs > 0)) throw new RangeError(`batch interval must be > 0 ms, got ${this.intervalMs}`);
    if (!Number.isInteger(this.maxLeaves) || this.maxLeaves < 1 || this.maxLeaves > 0xffffffff)
      throw new RangeError(`maxLeaves must be 1 … 2^32-1, got ${this.maxLeaves}`);
    source.checkStore?.(store);
    this.now = opts.now ?? Date.now;
    const storedThrough = opts.storedThroughLsn;
    if (storedThrough !== undefined) {
      this.placed = new Map();
      // Items of sealed batches that storage has not confirmed yet (a storage writer behind after a restart).
      const back: SealedBatch[] = [];
      for (let s = store.lastSealed; s >= 1n; s--) {
        const b = store.get(s);
        if (!b || b.lastLsn <= storedThrough) break;
        back.push(b);
      }
      for (const b of back.reverse()) {
        b.leaves.forEach((l, i) => {
          if (l.lsn > storedThrough) this.placed!.set(l.lsn, { batch: b.seq, leaf: i });
        });
      }
    }
    this.reader = new WalReader(source.wal, store.lastSealedLsn + 1n);
    this.catchUp();
  }

  /** The batch items are being added to. */
  get openSeq(): bigint {
    return this.store.lastSealed + 1n;
  }

  get openLeaves(): number {
    return this.leaves.length;
  }

  /** How long the open batch's first item has waited (0 when empty). */
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
    this.timer.unref();
  }

  /** Reads what became durable, then seals when the open batch is old enough. */
  tick(): void {
    this.catchUp();
    if (this.leaves.length > 0 && this.now() - this.openedAtMs >= this.intervalMs) this.sealOpen();
  }

  /**
   * The batch and leaf of an item that storage has not confirmed yet.
   * @throws RangeError for a log position that is not durable or was already confirmed stored,
   *   or when the batcher keeps no placements (no storedThroughLsn).
   */
  placementOf(lsn: bigint): Placement {
    if (lsn >= this.reader.position) this.catchUp();
    const p = this.placed?.get(lsn);
    if (!p) throw new RangeError(`no batch placement for spool position ${lsn} (durable up to ${this.source.wal.durableLsn})`);
    return p;
  }

  /** Storage confirmed every item up to `lsn`: their placements are no longer needed. */
  stored(lsn: bigint): void {
    if (!this.placed) return;
    for (const k of this.placed.keys()) {
      if (k > lsn) break;
      this.placed.delete(k);
    }
  }

  /** Reads what is durable, then seals the open batch if it has items; returns it. */
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
    const s = this.source;
    for (let recs = this.reader.read(5000); recs.length > 0; recs = this.reader.read(5000)) {
      for (const r of recs) {
        const item = s.read(r.lsn, r.payload);
        const { device, seq, timeMs } = s.record(item);
        if (this.leaves.length === 0) this.openedAtMs = this.now();
        this.placed?.set(r.lsn, { batch: this.openSeq, leaf: this.leaves.length });
        this.leaves.push({ lsn: r.lsn, device, seq, timeMs, leafHash: s.hash(item) });
        if (this.leaves.length >= this.maxLeaves) this.sealOpen();
      }
    }
  }
}
