/**
 * The access log: an append-only, durable record of every disclosure of a patient's data to a
 * researcher (docs/consent.md, "Access log"). append() resolves only once the entry is on disk
 * (fdatasync, group commit: gateway/spool/wal.ts); entries are numbered from 1 without gaps (the
 * log's LSN), and are never released or rewritten. The batcher (gateway/anchor/batcher.ts, with
 * accessLogLeaves below) cuts them into Merkle batches anchored as AnchorRegistry stream 1; DisclosureService
 * (./disclosure.ts) answers a patient's "who saw what".
 *
 * Live deliveries are logged before they are sent (gateway/research/live.ts, docs/consent.md
 * "Live deliveries"): the deliveries of one pipeline tick become one entry per subscription and
 * grant, appended together with appendAll() (one group commit), and go out only once durable.
 *
 * On disk: dir/seg-*.wal, each record the JSON of one entry without `seq` (its LSN is the seq).
 */
import { randomBytes } from 'node:crypto';
import { Wal, WalReader } from '../spool/wal.js';
import type { LeafSource } from '../anchor/batcher.js';
import { accessEntryFromJson, accessLeafHash, normaliseAccessRecord, type AccessEntry, type AccessEntryJson, type AccessRecord } from './access-entry.js';

/** The stored form of an entry: its JSON form (access-entry.ts) without the seq, which is the record's LSN. */
type StoredEntry = Omit<AccessEntryJson, 'seq'> & { v: 1 };

export class AccessLog {
  private closed = false;

  private constructor(
    readonly dir: string,
    /** @internal the log itself, for the batcher's reader. */
    readonly wal: Wal,
  ) {}

  /** Opens (or creates) the log in `dir`; a torn last record (a crash mid-write, never acknowledged) is cut off. */
  static async open(dir: string): Promise<AccessLog> {
    // Never released: the quota must never make appends wait.
    return new AccessLog(dir, await Wal.open(dir, { quotaBytes: Number.MAX_SAFE_INTEGER }));
  }

  /** The highest seq on disk (0 when empty). */
  get lastSeq(): bigint {
    return this.wal.durableLsn;
  }

  /**
   * Appends one entry and resolves once it is on disk, with its seq and salt.
   * @throws TypeError for an invalid record (nothing is written); WalError when the disk fails.
   * @example
   *   const e = await log.append({ kind: 'export', researcher, pseudonym: 'pt-0042', patientRef, grantId: 3n,
   *     metrics: ['heart_rate'], fromMs, toMs, count: 1200, firstAtMs: started, atMs: Date.now() });
   */
  async append(record: AccessRecord): Promise<AccessEntry> {
    return (await this.appendAll([record]))[0]!;
  }

  /**
   * Appends several entries in one group commit (one write and one fdatasync for all of them)
   * and resolves once every one is on disk, with their seqs in the order given.
   * @throws TypeError for an invalid record (nothing is written); WalError when the disk fails
   *   (some of the entries may be durable all the same: the log over-states, never under-states).
   */
  async appendAll(records: readonly AccessRecord[]): Promise<AccessEntry[]> {
    const stored = records.map((record): StoredEntry => {
      const r = normaliseAccessRecord(record);
      return { v: 1, ...r, grantId: r.grantId.toString(), salt: randomBytes(16).toString('hex') };
    });
    const seqs = await Promise.all(stored.map((s) => this.wal.append(Buffer.from(JSON.stringify(s), 'utf8')).durable));
    return seqs.map((seq, i) => entryOf(seq, stored[i]!));
  }

  /** Durable entries from `fromSeq` on, in order, at most `max`. @throws Error for a record that is not an entry (a damaged log). */
  read(fromSeq: bigint, max = 10_000): AccessEntry[] {
    const reader = new WalReader(this.wal, fromSeq < 1n ? 1n : fromSeq);
    try {
      return reader.read(max).map((rec) => parseRecord(rec.lsn, rec.payload));
    } finally {
      reader.close();
    }
  }

  /** Every durable entry from `fromSeq` on, in order, read in chunks. */
  *entries(fromSeq = 1n): Generator<AccessEntry> {
    const reader = new WalReader(this.wal, fromSeq < 1n ? 1n : fromSeq);
    try {
      for (let recs = reader.read(5000); recs.length > 0; recs = reader.read(5000)) {
        for (const rec of recs) yield parseRecord(rec.lsn, rec.payload);
      }
    } finally {
      reader.close();
    }
  }

  /** The entry `seq`, or undefined when there is none. */
  get(seq: bigint): AccessEntry | undefined {
    if (seq < 1n || seq > this.lastSeq) return undefined;
    return this.read(seq, 1)[0];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.wal.close();
  }
}

/**
 * The access log as the leaves of its Merkle batches, for the batcher (gateway/anchor/batcher.ts),
 * into a BatchStore of its own that an Anchorer with `stream: STREAM.ACCESS_LOG` anchors:
 *
 *   leaf      = SHA-256(0x00 ‖ encodeAccessEntry(entry)) (./access-entry.ts)
 *   recorded  = `seq` and `lsn` the entry's seq, `timeMs` its `atMs` (so the anchored time window,
 *               AnchorRegistry's first/lastFrameTimeMs, is the earliest and latest `atMs` of the
 *               batch's entries); the per-leaf `device` is unused ('-')
 *
 * The log is never released, so after a crash the open batch is rebuilt from the entries after
 * the last sealed one, with the same leaves in the same order.
 * @example new Batcher(accessLogLeaves(log), new BatchStore(join(dataDir, 'access-batches')), { intervalMs: 10_000 })
 */
export function accessLogLeaves(log: AccessLog): LeafSource<AccessEntry> {
  return {
    wal: log.wal,
    read: (seq, payload) => parseRecord(seq, payload),
    hash: (e) => accessLeafHash(e),
    record: (e) => ({ device: '-', seq: e.seq, timeMs: e.atMs }),
    checkStore: (store) => {
      if (store.lastSealedLsn > log.lastSeq)
        throw new Error(
          `the access-log batch store has sealed entries up to ${store.lastSealedLsn}, the log holds ${log.lastSeq}: the log was replaced or lost`,
        );
    },
  };
}

/** Decodes one stored record. @throws Error when it is not an entry. */
export function parseRecord(seq: bigint, payload: Buffer): AccessEntry {
  let s: StoredEntry;
  try {
    s = JSON.parse(payload.toString('utf8')) as StoredEntry;
  } catch (e) {
    throw new Error(`access log record ${seq} is not JSON: ${(e as Error).message}`, { cause: e });
  }
  if (s?.v !== 1 || typeof s.grantId !== 'string' || !/^[1-9][0-9]*$/.test(s.grantId)) throw new Error(`access log record ${seq} is not a version 1 entry`);
  try {
    return entryOf(seq, s);
  } catch (e) {
    throw new Error(`access log record ${seq} is not a valid entry: ${(e as Error).message}`, { cause: e });
  }
}

function entryOf(seq: bigint, s: StoredEntry): AccessEntry {
  const { v: _version, ...json } = s;
  return accessEntryFromJson({ ...json, seq: seq.toString() });
}
