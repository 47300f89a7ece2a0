/**
 * Cuts the access log into Merkle batches, as gateway/anchor/batcher.ts does for frames, into a
 * BatchStore of its own that an Anchorer with `stream: STREAM.ACCESS_LOG` anchors:
 *
 *   batch N   = the entries after batch N-1's last seq, up to where N was sealed
 *   leaf i    = SHA-256(0x00 ‖ encodeAccessEntry(entry)) (./access-entry.ts), i = its place in the batch
 *
 * A batch is sealed when its first entry has waited `intervalMs`, or at `maxLeaves` entries.
 * The anchored time window (AnchorRegistry's first/lastFrameTimeMs) is the earliest and latest
 * `atMs` of the batch's entries. The log is never released, so after a crash the open batch is
 * rebuilt from the entries after the last sealed one, with the same leaves in the same order.
 * The BatchStore's per-leaf `device` field is unused here ('-'); `seq` and `lsn` are the entry's seq.
 */
import { WalReader } from '../spool/wal.js';
import { sealedBatchOf, type BatchLeaf, type BatchStore, type SealedBatch } from '../anchor/batch-store.js';
import { accessLeafHash } from './access-entry.js';
import { parseRecord, type AccessLog } from './access-log.js';

export interface AccessBatcherOptions {
  /** Seal a batch when its first entry is this old (ms). Default 10 s. */
  intervalMs?: number;
  /** Seal a batch at this many entries. Default 50,000. */
  maxLeaves?: number;
  /** How often the timer looks at the open batch. Default min(250, intervalMs / 4). */
  tickMs?: number;
  now?: () => number;
  /** After a batch is durable in the store (wake the anchorer here). */
  onSealed?: (b: SealedBatch) => void;
  /** A tick failed (the store cannot be written, the log cannot be read): the timer stops. */
  onError?: (e: Error) => void;
}

export class AccessLogBatcher {
  private readonly reader: WalReader;
  private leaves: BatchLeaf[] = [];
  private openedAtMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;
  private readonly maxLeaves: number;
  private readonly now: () => number;

  /** @throws Error when the store has sealed entries the log does not hold (the log was replaced or lost). */
  constructor(
    log: AccessLog,
    private readonly store: BatchStore,
    private readonly opts: AccessBatcherOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.maxLeaves = opts.maxLeaves ?? 50_000;
    if (!(this.intervalMs > 0)) throw new RangeError(`batch interval must be > 0 ms, got ${this.intervalMs}`);
    if (!Number.isInteger(this.maxLeaves) || this.maxLeaves < 1 || this.maxLeaves > 0xffffffff) throw new RangeError(`maxLeaves must be 1 … 2^32-1, got ${this.maxLeaves}`);
    if (store.lastSealedLsn > log.lastSeq) throw new Error(`the access-log batch store has sealed entries up to ${store.lastSealedLsn}, the log holds ${log.lastSeq}: the log was replaced or lost`);
    this.now = opts.now ?? Date.now;
    this.reader = new WalReader(log.wal, store.lastSealedLsn + 1n);
    this.catchUp();
  }

  /** The batch entries are being added to. */
  get openSeq(): bigint {
    return this.store.lastSealed + 1n;
  }

  get openLeaves(): number {
    return this.leaves.length;
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

  /** Reads what is durable, then seals the open batch if it has entries; returns it. */
  seal(): SealedBatch | undefined {
    this.catchUp();
    return this.sealOpen();
  }

  /** Stops the timer and seals what is open. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.seal();
    this.reader.close();
  }

  private sealOpen(): SealedBatch | undefined {
    if (this.leaves.length === 0) return undefined;
    const batch = sealedBatchOf(this.openSeq, this.leaves, this.openedAtMs, this.now());
    this.store.seal(batch);
    this.leaves = [];
    this.opts.onSealed?.(batch);
    return batch;
  }

  private catchUp(): void {
    for (let recs = this.reader.read(5000); recs.length > 0; recs = this.reader.read(5000)) {
      for (const r of recs) {
        const e = parseRecord(r.lsn, r.payload);
        if (this.leaves.length === 0) this.openedAtMs = this.now();
        this.leaves.push({ lsn: e.seq, device: '-', seq: e.seq, timeMs: e.atMs, leafHash: accessLeafHash(e) });
        if (this.leaves.length >= this.maxLeaves) this.sealOpen();
      }
    }
  }
}
