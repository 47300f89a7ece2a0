/**
 * The access log: an append-only, durable record of every disclosure of a patient's data to a
 * researcher (docs/consent.md, "Access log"). append() resolves only once the entry is on disk
 * (fdatasync, group commit: gateway/spool/wal.ts); entries are numbered from 1 without gaps (the
 * log's LSN), and are never released or rewritten. AccessLogBatcher (./access-batcher.ts) cuts
 * them into Merkle batches anchored as AnchorRegistry stream 1; DisclosureService
 * (./disclosure.ts) answers a patient's "who saw what".
 *
 * Live deliveries are logged aggregated (LiveAccessAggregator below): one entry per
 * (subscription, researcher, patient, grant) per interval, with the exact data time range and
 * reading count of what was delivered in it.
 *
 * On disk: dir/seg-*.wal, each record the JSON of one entry without `seq` (its LSN is the seq).
 */
import { randomBytes } from 'node:crypto';
import { Wal, WalReader } from '../spool/wal.js';
import { accessEntryFromJson, normaliseAccessRecord, type AccessEntry, type AccessEntryJson, type AccessRecord } from './access-entry.js';

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
    const r = normaliseAccessRecord(record);
    const stored: StoredEntry = { v: 1, ...r, grantId: r.grantId.toString(), salt: randomBytes(16).toString('hex') };
    const { durable } = this.wal.append(Buffer.from(JSON.stringify(stored), 'utf8'));
    const seq = await durable;
    return entryOf(seq, stored);
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

/** Decodes one stored record. @throws Error when it is not an entry. */
export function parseRecord(seq: bigint, payload: Buffer): AccessEntry {
  let s: StoredEntry;
  try {
    s = JSON.parse(payload.toString('utf8')) as StoredEntry;
  } catch (e) {
    throw new Error(`access log record ${seq} is not JSON: ${(e as Error).message}`);
  }
  if (s?.v !== 1 || typeof s.grantId !== 'string' || !/^[1-9][0-9]*$/.test(s.grantId)) throw new Error(`access log record ${seq} is not a version 1 entry`);
  try {
    return entryOf(seq, s);
  } catch (e) {
    throw new Error(`access log record ${seq} is not a valid entry: ${(e as Error).message}`);
  }
}

function entryOf(seq: bigint, s: StoredEntry): AccessEntry {
  const { v: _version, ...json } = s;
  return accessEntryFromJson({ ...json, seq: seq.toString() });
}

// ---- live deliveries, aggregated -------------------------------------------------------------

/** One delivery to a live subscriber: `count` readings of one metric recorded in [fromMs, toMs]. */
export interface LiveDelivery {
  /** The transport's id of the subscription (e.g. MQTT client id and topic filter). */
  subscription: string;
  researcher: string;
  pseudonym: string;
  patientRef: string;
  /** The grant decide() named for these readings. */
  grantId: bigint;
  metric: string;
  /** Device times of the first and last reading delivered, Unix ms. */
  fromMs: number;
  toMs: number;
  /** Readings (samples) delivered. */
  count: number;
  /** When they were delivered (gateway clock). Default: now. */
  atMs?: number;
}

export interface LiveAggregatorOptions {
  /** An aggregate is logged this long after its first delivery. Default 5,000 ms. */
  intervalMs?: number;
  /** ... or once it holds this many readings. Default 10,000. */
  maxReadings?: number;
  now?: () => number;
  /** An append failed (the disk): the aggregate is lost from the log; the transport should stop delivering. */
  onError?: (e: Error, record: AccessRecord) => void;
}

interface Aggregate {
  key: string;
  subscription: string;
  record: Omit<AccessRecord, 'metrics'> & { metrics: Set<string> };
  openedAtMs: number;
}

/**
 * Aggregates live deliveries into access-log entries. The rule (docs/consent.md, "Live
 * deliveries"): deliveries of one subscription to one researcher, of one patient, under one
 * grant, are summed into one entry: metrics = every metric delivered, [fromMs, toMs] = the
 * earliest and latest device time delivered, count = the sum of readings, [firstAtMs, atMs] =
 * the first and last delivery. The entry is written when the aggregate is `intervalMs` old, or
 * holds `maxReadings` readings, or its subscription ends (endSubscription: unsubscribe,
 * disconnect, revocation, expiry), or the grant changes, or at flush()/stop(). Every reading
 * delivered is counted in exactly one entry.
 */
export class LiveAccessAggregator {
  private readonly open = new Map<string, Aggregate>();
  private readonly intervalMs: number;
  private readonly maxReadings: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private inflight = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(
    private readonly log: AccessLog,
    private readonly opts: LiveAggregatorOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 5000;
    this.maxReadings = opts.maxReadings ?? 10_000;
    if (!(this.intervalMs > 0) || !Number.isSafeInteger(this.maxReadings) || this.maxReadings < 1) throw new RangeError('intervalMs and maxReadings must be positive');
    this.now = opts.now ?? Date.now;
  }

  /** Aggregates that are open (not yet logged). */
  get pending(): number {
    return this.open.size;
  }

  /**
   * Counts one delivery (synchronous: it never delays delivery). Starts the interval timer on
   * first use.
   * @throws TypeError for a malformed delivery; Error after stop().
   */
  delivered(d: LiveDelivery): void {
    if (this.stopped) throw new Error('the live access aggregator is stopped');
    const atMs = d.atMs ?? this.now();
    // Validates every field the entry will carry (throws TypeError now, not at flush time).
    const rec = normaliseAccessRecord({ kind: 'live', researcher: d.researcher, pseudonym: d.pseudonym, patientRef: d.patientRef, grantId: d.grantId, metrics: [d.metric], fromMs: d.fromMs, toMs: d.toMs, count: d.count, firstAtMs: atMs, atMs });
    const key = JSON.stringify([d.subscription, rec.researcher, rec.patientRef, rec.pseudonym, rec.grantId.toString()]);
    let a = this.open.get(key);
    if (!a) {
      a = { key, subscription: d.subscription, record: { ...rec, metrics: new Set() }, openedAtMs: atMs };
      this.open.set(key, a);
    } else {
      const r = a.record;
      r.fromMs = Math.min(r.fromMs, rec.fromMs);
      r.toMs = Math.max(r.toMs, rec.toMs);
      r.count += rec.count;
      r.firstAtMs = Math.min(r.firstAtMs, atMs);
      r.atMs = Math.max(r.atMs, atMs);
    }
    a.record.metrics.add(d.metric);
    if (a.record.count >= this.maxReadings) this.close(a);
    this.timer ??= setInterval(() => this.tick(), Math.max(10, Math.min(250, Math.floor(this.intervalMs / 5)))).unref();
  }

  /** Logs the aggregates older than the interval. */
  tick(): void {
    const now = this.now();
    for (const a of [...this.open.values()]) if (now - a.openedAtMs >= this.intervalMs) this.close(a);
  }

  /**
   * Logs the open aggregates of a subscription now (it ended, or its grant was revoked or expired)
   * and resolves once they are durable.
   */
  async endSubscription(subscription: string): Promise<AccessEntry[]> {
    const mine = [...this.open.values()].filter((a) => a.subscription === subscription);
    return (await Promise.all(mine.map((a) => this.close(a)))).filter((e): e is AccessEntry => e !== undefined);
  }

  /** Logs every open aggregate and waits until every entry so far is durable. */
  async flush(): Promise<void> {
    for (const a of [...this.open.values()]) this.close(a);
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }

  /** Flushes and stops the timer. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
    this.stopped = true;
  }

  private close(a: Aggregate): Promise<AccessEntry | undefined> {
    this.open.delete(a.key);
    const record: AccessRecord = { ...a.record, metrics: [...a.record.metrics] };
    const p = this.log.append(record).then(
      (e) => e,
      (e: unknown) => {
        if (this.opts.onError) this.opts.onError(e as Error, record);
        return undefined;
      },
    );
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
    return p;
  }
}
