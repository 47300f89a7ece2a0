/**
 * The storage quarantine (docs/storage.md, "Storage quarantine"): accepted frames whose points
 * InfluxDB refuses for good (isPermanentRefusal: a field type conflict, a line it cannot parse,
 * points beyond the retention policy), set aside durably so that the storage writer goes on
 * with the frames after them instead of retrying one refused batch forever.
 *
 * One file per frame in dataDir/storage-quarantine/, named <lsn, 20 digits>-<sha256 prefix>.json,
 * holding one JSON line (so `cat storage-quarantine/*.json` is NDJSON, in spool order): the
 * frame's identity (lsn, device, seq, sensor, sha256), its points in line protocol exactly as
 * the writer sent them, and InfluxDB's answer. One file per frame because two processes touch
 * the directory: the gateway only creates files, `vitalproof storage replay` only rewrites and
 * deletes the ones it replays, so neither can lose the other's work.
 *
 * WARNING: the files hold readings (the line protocol), like InfluxDB itself; they stay in the
 * data dir and never go to a log.
 *
 * @example
 *   const q = new StorageQuarantine(join(dataDir, STORAGE_QUARANTINE_DIR), { maxBytes: 256 << 20 });
 *   if (!q.has(lsn, sha256)) q.add(entry);   // durable (written, fsynced, renamed) when it returns
 *   for (const { file, entry } of q.entries()) ...;
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StorageError } from './errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';

export const STORAGE_QUARANTINE_DIR = 'storage-quarantine';
/** Default bound of the quarantine on disk: beyond it, refused frames wait in the spool (QUARANTINE_FULL). */
export const DEFAULT_QUARANTINE_MAX_BYTES = 256 * 1024 * 1024;
/** The status rescans the directory (another process replays) at most this often. */
const RESCAN_MS = 1000;
const FILE = /^(\d{20})-([0-9a-f]{16})\.json$/;

/** One quarantined frame, as its file holds it. */
export interface QuarantinedFrame {
  version: 1;
  /** Spool LSN, decimal. */
  lsn: string;
  device: string;
  /** The frame's sequence number, decimal. */
  seq: string;
  sensor: string;
  /** SHA-256 of the raw frame, hex: the frame's identity. */
  sha256: string;
  /** Where the points were to go. */
  database: string;
  retentionPolicy?: string;
  /** The frame's points in line protocol (ns precision), exactly as the writer sent them. */
  lines: string[];
  /** InfluxDB's answer when the frame was set aside: HTTP status and its error message. */
  status: number;
  error: string;
  quarantinedAtMs: number;
  /** The last replay that still failed, with InfluxDB's answer then. */
  lastReplay?: { atMs: number; status?: number; error: string };
}

export class StorageQuarantine {
  /** File name → bytes on disk. */
  private readonly files = new Map<string, number>();
  private totalBytes = 0;
  private lastScanMs = 0;
  private readonly maxBytes: number;

  /** Creates the directory, and forgets temporary files of a write cut short by a crash. */
  constructor(
    readonly dir: string,
    opts: { maxBytes?: number } = {},
  ) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_QUARANTINE_MAX_BYTES;
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 1) throw new TypeError(`maxBytes must be a positive integer, got ${this.maxBytes}`);
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir)) if (name.endsWith('.tmp')) rmSync(join(dir, name), { force: true });
    this.rescan();
  }

  /** The file of a frame: sorted by name is spool order. */
  static fileName(lsn: bigint, sha256: string): string {
    return `${lsn.toString().padStart(20, '0')}-${sha256.slice(0, 16)}.json`;
  }

  /** Whether this frame is held (set aside before, and not replayed since). */
  has(lsn: bigint, sha256: string): boolean {
    return this.files.has(StorageQuarantine.fileName(lsn, sha256));
  }

  /**
   * Sets a frame aside: written, fsynced and renamed into place when it returns, so the spool
   * may release the frame. Idempotent: false when the frame is held already.
   * @throws StorageError QUARANTINE_FULL (beyond maxBytes; nothing written), QUARANTINE_WRITE_FAILED
   */
  add(entry: QuarantinedFrame): boolean {
    const name = StorageQuarantine.fileName(BigInt(entry.lsn), entry.sha256);
    if (this.files.has(name)) return false;
    const text = `${JSON.stringify(entry)}\n`;
    const bytes = Buffer.byteLength(text);
    if (this.totalBytes + bytes > this.maxBytes) {
      throw new StorageError('QUARANTINE_FULL', { dir: this.dir, heldBytes: this.totalBytes, maxBytes: this.maxBytes, frameBytes: bytes });
    }
    this.writeDurably(name, text);
    this.files.set(name, bytes);
    this.totalBytes += bytes;
    return true;
  }

  /** Every held frame, oldest (lowest LSN) first. Unreadable files are reported, not thrown. */
  entries(): { file: string; entry?: QuarantinedFrame; unreadable?: string }[] {
    this.rescan();
    return [...this.files.keys()].sort().map((file) => {
      try {
        const entry = JSON.parse(readFileSync(join(this.dir, file), 'utf8')) as QuarantinedFrame;
        if (entry.version !== 1 || !Array.isArray(entry.lines)) return { file, unreadable: 'not a version 1 quarantine entry' };
        return { file, entry };
      } catch (e) {
        return { file, unreadable: (e as Error).message };
      }
    });
  }

  /** Rewrites a held frame's file (a replay that failed again records InfluxDB's new answer). */
  update(file: string, entry: QuarantinedFrame): void {
    const text = `${JSON.stringify(entry)}\n`;
    this.writeDurably(file, text);
    const bytes = Buffer.byteLength(text);
    this.totalBytes += bytes - (this.files.get(file) ?? 0);
    this.files.set(file, bytes);
  }

  /** Forgets a frame that is stored now (replayed). */
  remove(file: string): void {
    rmSync(join(this.dir, file), { force: true });
    this.totalBytes -= this.files.get(file) ?? 0;
    this.files.delete(file);
  }

  /** Frames held and their bytes; re-reads the directory at most once a second, since a replay in another process removes files. */
  stats(now = Date.now()): { held: number; bytes: number; maxBytes: number } {
    if (now - this.lastScanMs >= RESCAN_MS) this.rescan(now);
    return { held: this.files.size, bytes: this.totalBytes, maxBytes: this.maxBytes };
  }

  private rescan(now = Date.now()): void {
    this.lastScanMs = now;
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => FILE.test(n));
    } catch {
      return; // the directory went away under us: keep what is known
    }
    const present = new Set(names);
    for (const [name, bytes] of this.files) {
      if (!present.has(name)) {
        this.files.delete(name);
        this.totalBytes -= bytes;
      }
    }
    for (const name of names) {
      if (this.files.has(name)) continue;
      try {
        const bytes = statSync(join(this.dir, name)).size;
        this.files.set(name, bytes);
        this.totalBytes += bytes;
      } catch {
        // removed between readdir and stat
      }
    }
  }

  /** Writes the file atomically and durably (util/atomic-file.ts), as a coded StorageError when it cannot. */
  private writeDurably(name: string, text: string): void {
    try {
      writeFileAtomic(join(this.dir, name), text);
    } catch (e) {
      throw new StorageError(
        'QUARANTINE_WRITE_FAILED',
        { dir: this.dir, file: name, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message },
        { cause: e },
      );
    }
  }
}

/**
 * InfluxDB's message, fit for a log line: InfluxDB quotes the offending line in some messages
 * ("unable to parse '<line>': …"), and a line holds readings, so single-quoted spans are cut.
 * Field type conflicts name only the measurement and the field. Bounded to 300 characters.
 */
export function logSafeMessage(error: string): string {
  return error.replace(/'[^']*'/g, "'…'").slice(0, 300);
}
