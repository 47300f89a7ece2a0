/**
 * A write-ahead log of opaque records on local disk, with group commit.
 *
 * Knows nothing of frames. Records get a log sequence number (LSN) from 1 upwards;
 * `append` resolves only after the record is on disk (fdatasync), and every append that
 * arrives while a sync is in flight joins the next one (group commit: one sync for many
 * records, no timer). A consumer reads records in LSN order and `release`s them once they
 * are safe elsewhere; whole segments below the release point are deleted.
 *
 * On-disk record: u32 BE payload length ‖ u32 BE CRC-32 of (lsn ‖ payload) ‖ u64 BE lsn ‖ payload.
 * Segment files are named after the LSN of their first record. A torn tail (a crash in
 * the middle of a write) is detected by length or CRC and cut off at open: the records
 * before it were synced, the torn one was never acknowledged.
 *
 * What an acknowledgement promises, and how it is kept when the disk misbehaves:
 * - an append resolves only once every byte of its group was written (short writes are
 *   continued) and synced; a group that cannot be written is cut off the file again and
 *   rejected, together with every append queued behind it, and their LSNs are handed out
 *   again: a failed append consumes nothing, so LSNs stay gapless;
 * - LSNs are never reused: `minNextLsn` is the floor the consumers have recorded (the storage
 *   checkpoint, the last sealed batch); a spool tail shorter than that floor is reported as
 *   lost (`recovered.lost`, with the LSNs) and numbering continues above it in a new segment;
 * - disk space is checked before the disk is full: below `minFreeBytes` free on the
 *   filesystem the log counts as over quota, so appends wait (acknowledgements are withheld)
 *   until space returns.
 */
import {
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  closeSync,
  statSync,
  statfsSync,
  ftruncateSync,
  fsyncSync,
  readFileSync,
  unlinkSync,
  existsSync,
} from 'node:fs';
import { CodedError, type Remedies } from '../../firmware-proto/coded-error.js';
import { fsyncDir, writeFileAtomic } from '../util/atomic-file.js';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

const HEADER = 16;
/** WARNING: a length above this is treated as corruption, not as a huge record. */
export const MAX_RECORD_BYTES = 1 << 20;

export interface WalOptions {
  /** Start a new segment once the active one is larger than this. */
  segmentBytes?: number;
  /** Appends wait (back-pressure) while the log holds more than this many bytes. */
  quotaBytes?: number;
  /**
   * Appends wait while the filesystem holding the log has less than this many bytes free
   * (the disk fills for reasons other than the spool: other files, other processes).
   * 0: no check. Default 0.
   */
  minFreeBytes?: number;
  /**
   * The lowest LSN the next record may get: one above the highest LSN any consumer has
   * recorded (storage checkpoint, sealed batches). Records between the log's tail and this
   * floor were once durable and are gone: they are reported in `recovered.lost`.
   */
  minNextLsn?: bigint;
}

/** A run of LSNs that were durable once and are no longer in the log (a lost tail, a corrupt segment). */
export interface LostRange {
  from: bigint;
  to: bigint;
  why: 'TAIL_BELOW_CHECKPOINT' | 'CORRUPT_SEGMENT';
}

export interface WalRecord {
  lsn: bigint;
  payload: Buffer;
}

interface Segment {
  firstLsn: bigint;
  path: string;
  bytes: number;
}

interface PendingAppend {
  buf: Buffer;
  lsn: bigint;
  resolve: (lsn: bigint) => void;
  reject: (e: Error) => void;
}

/** The closed set of spool (write-ahead log) failures; docs/operations.md says how to solve each. */
export const WAL_ERRORS = {
  WAL_CLOSED: 'the write-ahead log is closed: the gateway is stopping',
  WAL_RECORD_TOO_LARGE: 'a record is larger than the spool takes (MAX_RECORD_BYTES)',
  WAL_IO: 'a spool read or write failed, or the spool on disk is not what was written (a gap, a missing segment)',
  WAL_DISK_FULL: 'a spool write failed because the disk is full (ENOSPC, EDQUOT)',
  WAL_BROKEN: 'a spool write failed and could not be cut back: nothing more is appended before a restart',
} as const;
export type WalErrorCode = keyof typeof WAL_ERRORS;

/** What to do about each code: docs/operations.md, "Alarms" (DISK_FULL, SPOOL_*). */
export const WAL_ERROR_REMEDIES: Remedies<WalErrorCode> = {
  WAL_CLOSED: 'Nothing: the gateway is stopping; devices resend what was not acknowledged.',
  WAL_RECORD_TOO_LARGE: 'A frame over MAX_FRAME_BYTES never gets here (the decoder refuses it): report it as a bug.',
  WAL_IO: "Check the data dir's disk and filesystem (`dmesg`, SMART); `/status` spool.lastError and lostOnRecovery say which records.",
  WAL_DISK_FULL: "Free space on the data dir's filesystem; acknowledgements are held meanwhile and the gateway resumes by itself (alarm DISK_FULL).",
  WAL_BROKEN: 'Restart the gateway after fixing the disk: the spool recovers up to its last durable record; devices resend the rest.',
};

/** A coded spool failure; the message says what happened, in the words of the failing step. */
export class WalError extends CodedError<WalErrorCode> {
  constructor(code: WalErrorCode, message: string) {
    super(WAL_ERRORS, code, {}, { message });
  }
}

export class Wal {
  private readonly segments: Segment[] = [];
  private active!: FileHandle;
  private nextLsn = 1n;
  private durable = 0n;
  private released = 0n;
  private pending: PendingAppend[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;
  private readonly durableWaiters = new Set<() => void>();
  private readonly quotaWaiters: (() => void)[] = [];
  private readonly segmentBytes: number;
  readonly quotaBytes: number;
  readonly minFreeBytes: number;
  private diskCheckedAtMs = 0;
  private diskFree = Number.POSITIVE_INFINITY;
  private diskTimer: NodeJS.Timeout | undefined;
  /** Set when a failed write could not be cut off again: nothing more may be appended before a restart. */
  private broken: WalError | undefined;
  /** The last write failure (for status); cleared by the next group that is written. */
  lastWriteError: WalError | undefined;
  /** Records found on disk at open that were not yet released (the consumers' backlog), bytes cut off, LSNs lost. */
  readonly recovered: { records: number; truncatedBytes: number; lost: LostRange[] };

  private constructor(
    readonly dir: string,
    private readonly opts: WalOptions,
  ) {
    this.quotaBytes = opts.quotaBytes ?? 1024 * 1024 * 1024;
    // Only whole segments are deleted, and the active one never is: keep it at most an
    // eighth of the quota so that a fully released log is always far below the quota.
    this.segmentBytes = Math.min(opts.segmentBytes ?? 64 * 1024 * 1024, Math.max(64 * 1024, Math.floor(this.quotaBytes / 8)));
    this.minFreeBytes = opts.minFreeBytes ?? 0;
    this.recovered = { records: 0, truncatedBytes: 0, lost: [] };
  }

  /** Opens (or creates) the log in `dir`, cutting off a torn tail. */
  static async open(dir: string, opts: WalOptions = {}): Promise<Wal> {
    const wal = new Wal(dir, opts);
    await wal.init();
    return wal;
  }

  private async init(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    this.released = readReleased(this.dir);
    const names = readdirSync(this.dir)
      .filter((n) => /^seg-\d{20}\.wal$/.test(n))
      .sort();
    for (const name of names) {
      const path = join(this.dir, name);
      this.segments.push({ firstLsn: BigInt(name.slice(4, 24)), path, bytes: statSync(path).size });
    }
    // Scan every segment: find the last good record, cut a torn tail. Only the active (last)
    // segment is ever written, so a torn record elsewhere is corruption: its segment is cut
    // there and the LSNs up to the next segment are reported lost; later segments, which hold
    // acknowledged records, are kept.
    let last = this.released;
    let lastCount = 0;
    for (let i = 0; i < this.segments.length; i++) {
      const seg = this.segments[i]!;
      const { goodBytes, lastLsn, count } = scanSegment(seg.path, seg.firstLsn);
      lastCount = count;
      if (goodBytes < seg.bytes) {
        this.recovered.truncatedBytes += seg.bytes - goodBytes;
        const fd = openSync(seg.path, 'r+');
        ftruncateSync(fd, goodBytes);
        fsyncSync(fd);
        closeSync(fd);
        seg.bytes = goodBytes;
      }
      const end = count > 0 ? lastLsn : seg.firstLsn - 1n;
      const next = this.segments[i + 1];
      if (next && next.firstLsn > end + 1n) this.noteLost(end + 1n, next.firstLsn - 1n, 'CORRUPT_SEGMENT');
      if (count > 0 && lastLsn > last) last = lastLsn;
    }
    // Never below what a consumer has recorded: a tail shorter than that is a loss, reported.
    const floor = this.opts.minNextLsn ?? 1n;
    if (floor - 1n > last) {
      this.noteLost(last + 1n, floor - 1n, 'TAIL_BELOW_CHECKPOINT');
      last = floor - 1n;
    }
    this.nextLsn = last + 1n;
    this.durable = last;
    this.recovered.records = Number(last - this.released) - this.recovered.lost.reduce((n, r) => n + Number(r.to - r.from + 1n), 0);
    await this.openActive(lastCount);
    this.dropReleasedSegments();
  }

  /** Records a lost run of LSNs, the part above the release point only (released records are gone by design). */
  private noteLost(from: bigint, to: bigint, why: LostRange['why']): void {
    const f = from > this.released ? from : this.released + 1n;
    if (f <= to) this.recovered.lost.push({ from: f, to, why });
  }

  /** @param lastCount records in the last segment */
  private async openActive(lastCount: number): Promise<void> {
    let seg = this.segments[this.segments.length - 1];
    // A new segment when the last is full, or when numbering continues above a gap (a lost
    // tail): within a segment LSNs are contiguous, gaps sit only between segments.
    const lastNext = seg ? seg.firstLsn + BigInt(lastCount) : 0n;
    if (!seg || seg.bytes >= this.segmentBytes || lastNext !== this.nextLsn) {
      if (seg && seg.bytes === 0 && seg.firstLsn !== this.nextLsn) {
        // an empty segment named below the floor: replace it
        this.segments.pop();
        unlinkSync(seg.path);
      }
      seg = { firstLsn: this.nextLsn, path: join(this.dir, segName(this.nextLsn)), bytes: 0 };
      this.segments.push(seg);
    }
    this.active = await open(seg.path, 'a');
    fsyncDir(this.dir);
  }

  /** Highest LSN known to be on disk. */
  get durableLsn(): bigint {
    return this.durable;
  }
  get releasedLsn(): bigint {
    return this.released;
  }
  /** Records appended and durable but not yet released by the consumer. */
  get backlog(): bigint {
    return this.durable - this.released;
  }
  get bytes(): number {
    return this.segments.reduce((n, s) => n + s.bytes, 0) + this.pending.reduce((n, p) => n + p.buf.length, 0);
  }
  get overQuota(): boolean {
    return this.bytes >= this.quotaBytes || this.diskLow;
  }

  /** The filesystem holding the log has less than `minFreeBytes` free (checked at most every 200 ms). */
  get diskLow(): boolean {
    if (this.minFreeBytes <= 0) return false;
    return this.freeBytes() < this.minFreeBytes;
  }

  /** Bytes free on the log's filesystem for an unprivileged writer (statfs; cached 200 ms). */
  freeBytes(now = Date.now()): number {
    if (now - this.diskCheckedAtMs >= 200) {
      this.diskCheckedAtMs = now;
      try {
        const st = statfsSync(this.dir);
        this.diskFree = Number(st.bavail) * Number(st.bsize);
      } catch {
        this.diskFree = Number.POSITIVE_INFINITY;
      }
    }
    return this.diskFree;
  }

  /**
   * Appends one record and resolves with its LSN once it is on disk. The LSN is assigned
   * synchronously, in call order. While the log is over quota, the call waits for space.
   * @throws WalError WAL_RECORD_TOO_LARGE for a payload over MAX_RECORD_BYTES.
   */
  append(payload: Uint8Array): { lsn: bigint; durable: Promise<bigint> } {
    if (this.closed) throw new WalError('WAL_CLOSED', 'write-ahead log is closed');
    if (this.broken) throw this.broken;
    if (payload.length > MAX_RECORD_BYTES) throw new WalError('WAL_RECORD_TOO_LARGE', `record of ${payload.length} bytes exceeds ${MAX_RECORD_BYTES}`);
    const lsn = this.nextLsn++;
    const buf = encodeRecord(lsn, payload);
    let resolve!: (l: bigint) => void;
    let reject!: (e: Error) => void;
    const durable = new Promise<bigint>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.pending.push({ buf, lsn, resolve, reject });
    this.flush();
    return { lsn, durable };
  }

  /** Resolves when the log is below its quota and the disk has room (at once when it already is). */
  waitForSpace(): Promise<void> {
    if (!this.overQuota || this.closed) return Promise.resolve();
    // Releases wake the waiters; disk space freed by others is only seen by looking again.
    if (this.minFreeBytes > 0) this.diskTimer ??= setInterval(() => this.wakeIfRoom(), 250);
    return new Promise((res) => this.quotaWaiters.push(res));
  }

  private wakeIfRoom(): void {
    if (this.overQuota && !this.closed) return;
    clearInterval(this.diskTimer);
    this.diskTimer = undefined;
    for (const w of this.quotaWaiters.splice(0)) w();
  }

  private flush(): void {
    if (!this.flushing && this.pending.length > 0) this.flushing = this.flushLoop();
  }

  /** One write + one datasync per group of appends; a group never straddles two segments. */
  private async flushLoop(): Promise<void> {
    // `flushing` is cleared in the same synchronous step that finds `pending` empty, so an
    // append made by a waiter this loop woke up starts a new loop instead of being stranded.
    while (this.pending.length > 0) {
      const seg = this.segments[this.segments.length - 1]!;
      let room = this.segmentBytes - seg.bytes;
      let n = 0;
      while (n < this.pending.length && (n === 0 || room >= this.pending[n]!.buf.length)) {
        room -= this.pending[n]!.buf.length;
        n++;
      }
      const group = this.pending.splice(0, n);
      try {
        await this.writeAll(group.map((p) => p.buf));
        await this.active.datasync();
      } catch (e) {
        await this.failGroup(seg, group, e as NodeJS.ErrnoException);
        continue;
      }
      for (const p of group) seg.bytes += p.buf.length;
      this.lastWriteError = undefined;
      this.durable = group[group.length - 1]!.lsn;
      for (const p of group) p.resolve(p.lsn);
      for (const w of [...this.durableWaiters]) w();
      if (seg.bytes >= this.segmentBytes) {
        try {
          await this.rotate();
        } catch (e) {
          this.breakLog(new WalError('WAL_BROKEN', `spool rotation failed: ${(e as Error).message}`));
        }
      }
    }
    this.flushing = undefined;
  }

  /**
   * Writes every byte of `bufs` at the end of the active segment. A short write (the disk
   * filled mid-way, a signal) is continued with the rest; an error is thrown.
   */
  private async writeAll(bufs: Buffer[]): Promise<void> {
    const total = bufs.reduce((n, b) => n + b.length, 0);
    const written = (await this.active.writev(bufs)).bytesWritten;
    if (written === total) return;
    const rest = Buffer.concat(bufs).subarray(written);
    let off = 0;
    while (off < rest.length) {
      const { bytesWritten } = await this.active.write(rest, off, rest.length - off);
      if (bytesWritten <= 0) throw Object.assign(new Error(`short write: ${written + off} of ${total} bytes`), { code: 'EIO' });
      off += bytesWritten;
    }
  }

  /**
   * A group could not be written and synced: cut the segment back to what was durable before
   * it, reject the group and every append queued behind it, and hand their LSNs out again.
   */
  private async failGroup(seg: Segment, group: PendingAppend[], e: NodeJS.ErrnoException): Promise<void> {
    const full = e.code === 'ENOSPC' || e.code === 'EDQUOT' || e.code === 'EFBIG';
    const err = new WalError(full ? 'WAL_DISK_FULL' : 'WAL_IO', `spool write failed: ${e.message}`);
    this.lastWriteError = err;
    const queued = this.pending.splice(0);
    try {
      await this.active.truncate(seg.bytes);
      await this.active.datasync();
    } catch (te) {
      // Bytes of a rejected group may stay in the file, ahead of where the next group would go.
      this.breakLog(new WalError('WAL_BROKEN', `spool write failed (${e.message}) and could not be cut back: ${(te as Error).message}; restart needed`));
    }
    this.nextLsn = this.durable + 1n;
    for (const p of [...group, ...queued]) p.reject(err);
  }

  /** No more appends until a restart (which scans and cuts the segment). */
  private breakLog(err: WalError): void {
    this.broken = err;
    this.lastWriteError = err;
    for (const p of this.pending.splice(0)) p.reject(err);
    this.nextLsn = this.durable + 1n;
  }

  private async rotate(): Promise<void> {
    await this.active.close();
    const seg = { firstLsn: this.durable + 1n, path: join(this.dir, segName(this.durable + 1n)), bytes: 0 };
    this.segments.push(seg);
    this.active = await open(seg.path, 'a');
    fsyncDir(this.dir);
  }

  /** Resolves when durableLsn > lsn, or at once when it already is. */
  waitForDurableAfter(lsn: bigint, signal?: AbortSignal): Promise<void> {
    if (this.durable > lsn || this.closed || signal?.aborted) return Promise.resolve();
    return new Promise((res) => {
      const done = (): void => {
        if (this.durable > lsn || this.closed || signal?.aborted) {
          this.durableWaiters.delete(done);
          signal?.removeEventListener('abort', done);
          res();
        }
      };
      this.durableWaiters.add(done);
      signal?.addEventListener('abort', done);
    });
  }

  /** A reader positioned after the released point: it sees every record not yet released. */
  reader(): WalReader {
    return new WalReader(this, this.released + 1n);
  }

  /** @internal for WalReader */
  segmentsSnapshot(): readonly Segment[] {
    return this.segments;
  }

  /**
   * Marks every record ≤ lsn as safely consumed: persists the release point atomically and
   * deletes segments that hold nothing newer.
   */
  release(lsn: bigint): void {
    if (lsn <= this.released) return;
    if (lsn > this.durable) throw new RangeError(`cannot release ${lsn}: only ${this.durable} is durable`);
    writeFileAtomic(join(this.dir, 'released'), `${lsn}\n`);
    this.released = lsn;
    this.dropReleasedSegments();
    if (!this.overQuota) for (const w of this.quotaWaiters.splice(0)) w();
  }

  private dropReleasedSegments(): void {
    // A segment can go when the next one starts at or below released + 1 (all its records are released).
    while (this.segments.length > 1 && this.segments[1]!.firstLsn <= this.released + 1n) {
      const seg = this.segments.shift()!;
      try {
        unlinkSync(seg.path);
      } catch {
        /* already gone */
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing) await this.flushing;
    this.closed = true;
    clearInterval(this.diskTimer);
    this.diskTimer = undefined;
    for (const w of [...this.durableWaiters]) w();
    for (const w of this.quotaWaiters.splice(0)) w();
    await this.active.close();
  }
}

/** Reads records in LSN order, up to what is durable, across segment boundaries. */
export class WalReader {
  private segIndex = -1;
  private offset = 0;
  private fd: number | undefined;
  private fdPath = '';

  constructor(
    private readonly wal: Wal,
    private next: bigint,
  ) {}

  get position(): bigint {
    return this.next;
  }

  /**
   * Up to `max` records from the current position that are already durable. LSNs the log
   * reported lost (a gap between segments, `Wal.recovered.lost`) are stepped over.
   * @throws WalError WAL_IO when a durable record cannot be found (the log is inconsistent):
   *   never returns empty while records it should see are missing, so no caller spins.
   */
  read(max: number, maxBytes = 8 * 1024 * 1024): WalRecord[] {
    const out: WalRecord[] = [];
    let bytes = 0;
    while (out.length < max && bytes < maxBytes && this.next <= this.wal.durableLsn) {
      this.seek();
      const rec = this.readOne();
      if (!rec) {
        // end of this segment: move to the next one, over a reported gap if there is one
        const segs = this.wal.segmentsSnapshot();
        const following = segs[this.segIndex + 1];
        if (!following) throw new WalError('WAL_IO', `spool record ${this.next} is durable but not on disk (durable up to ${this.wal.durableLsn})`);
        if (following.firstLsn > this.next) this.next = following.firstLsn;
        this.segIndex++;
        this.offset = 0;
        this.openFd(following.path);
        continue;
      }
      if (rec.lsn < this.next) continue; // before our position (first segment after a release)
      if (rec.lsn !== this.next) throw new WalError('WAL_IO', `spool LSN gap: expected ${this.next}, found ${rec.lsn}`);
      out.push(rec);
      bytes += rec.payload.length;
      this.next++;
    }
    return out;
  }

  /** Positions on the segment that holds `next` (the first one when `next` lies in a reported gap before it). */
  private seek(): void {
    const segs = this.wal.segmentsSnapshot();
    if (this.segIndex >= 0 && this.segIndex < segs.length && segs[this.segIndex]!.path === this.fdPath) return;
    let idx = -1;
    for (let i = 0; i < segs.length; i++) if (segs[i]!.firstLsn <= this.next) idx = i;
    if (idx < 0) {
      if (segs.length === 0) throw new WalError('WAL_IO', `spool has no segment for record ${this.next}`);
      idx = 0;
      this.next = segs[0]!.firstLsn;
    }
    this.segIndex = idx;
    this.offset = 0;
    this.openFd(segs[idx]!.path);
  }

  private openFd(path: string): void {
    if (this.fdPath === path && this.fd !== undefined) return;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = openSync(path, 'r');
    this.fdPath = path;
  }

  private readOne(): WalRecord | undefined {
    const segs = this.wal.segmentsSnapshot();
    const seg = segs[this.segIndex]!;
    if (this.offset + HEADER > seg.bytes) return undefined;
    const head = Buffer.alloc(HEADER);
    readSync(this.fd!, head, 0, HEADER, this.offset);
    const len = head.readUInt32BE(0);
    const payload = Buffer.alloc(len);
    readSync(this.fd!, payload, 0, len, this.offset + HEADER);
    const lsn = head.readBigUInt64BE(8);
    this.offset += HEADER + len;
    return { lsn, payload };
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.fdPath = '';
  }
}

function segName(firstLsn: bigint): string {
  return `seg-${firstLsn.toString().padStart(20, '0')}.wal`;
}

function encodeRecord(lsn: bigint, payload: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + payload.length);
  buf.writeUInt32BE(payload.length, 0);
  buf.writeBigUInt64BE(lsn, 8);
  buf.set(payload, HEADER);
  buf.writeUInt32BE(crc32(buf.subarray(8)), 4);
  return buf;
}

/** Finds the end of the last intact record of a segment. */
function scanSegment(path: string, firstLsn: bigint): { goodBytes: number; lastLsn: bigint; count: number } {
  const data = readFileSync(path);
  let off = 0;
  let expect = firstLsn;
  let count = 0;
  while (off + HEADER <= data.length) {
    const len = data.readUInt32BE(off);
    if (len > MAX_RECORD_BYTES || off + HEADER + len > data.length) break;
    const crc = data.readUInt32BE(off + 4);
    if (crc32(data.subarray(off + 8, off + HEADER + len)) !== crc) break;
    const lsn = data.readBigUInt64BE(off + 8);
    if (lsn !== expect) break;
    off += HEADER + len;
    expect++;
    count++;
  }
  return { goodBytes: off, lastLsn: expect - 1n, count };
}

function readReleased(dir: string): bigint {
  const p = join(dir, 'released');
  if (!existsSync(p)) return 0n;
  const s = readFileSync(p, 'utf8').trim();
  return /^\d+$/.test(s) ? BigInt(s) : 0n;
}
