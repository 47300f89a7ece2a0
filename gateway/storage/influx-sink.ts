/**
 * The gateway's FrameSink: accepted frames into InfluxDB 1.x, in the schema of schema.ts.
 * A write either stores every point or throws a StorageError; the spool drainer retries
 * with backoff, and because points depend only on the frames, a retry overwrites rather
 * than duplicates.
 *
 * With a quarantine, a refusal for good (isPermanentRefusal: a field type conflict, a line
 * InfluxDB cannot parse) no longer throws: the frames InfluxDB refuses are found by bisection
 * (./isolate.ts), set aside durably in the storage quarantine (./quarantine.ts) with InfluxDB's
 * message, and named in the outcome; the others are stored. Transient failures still throw.
 */
import { sensorByName } from '../../firmware-proto/catalogue.js';
import type { AcceptedFrame, FrameSink, SinkOutcome } from '../ingest/types.js';
import { isStorageError, type StorageError } from './errors.js';
import { InfluxHttp, seriesRows, type Series } from './influx-http.js';
import { writeIsolating } from './isolate.js';
import { StorageQuarantine, type QuarantinedFrame } from './quarantine.js';
import {
  ACCEPTANCES_MEASUREMENT,
  FRAMES_MEASUREMENT,
  frameToLines,
  fromStoredUint64,
  storedFramesOf,
  storedTag,
  toStoredUint64,
  type StoredFrame,
  type StoredPoint,
} from './schema.js';
import { textOf } from '../util/text.js';

/** Points per HTTP write: InfluxDB's documented sweet spot for 1.x. */
export const MAX_POINTS_PER_WRITE = 5000;

export interface InfluxSinkOptions {
  url: string;
  database: string;
  /** Which gateway accepted the frames: their `acceptances` points carry it, and reads flatten its acceptance first. */
  gatewayId: string;
  /** Default: the database's default policy. */
  retentionPolicy?: string;
  username?: string;
  password?: string;
  /** Per HTTP request. Default 10 s. */
  timeoutMs?: number;
  /** Default and maximum MAX_POINTS_PER_WRITE. */
  pointsPerWrite?: number;
  /** Where frames InfluxDB refuses for good are set aside; without one, such a write throws like any other. */
  quarantine?: StorageQuarantine;
  /** Called once per frame newly set aside, after its file is durable (count it, log it: no readings). */
  onQuarantined?: (entry: QuarantinedFrame) => void;
}

export class InfluxSink implements FrameSink {
  private readonly http: InfluxHttp;
  private readonly pointsPerWrite: number;
  /** Set once the database is known to exist; cleared when a write says it is gone. */
  private dbReady = false;

  constructor(private readonly opts: InfluxSinkOptions) {
    if (!opts.database) throw new TypeError('database must be a non-empty name');
    const n = opts.pointsPerWrite ?? MAX_POINTS_PER_WRITE;
    if (!Number.isInteger(n) || n < 1 || n > MAX_POINTS_PER_WRITE) throw new TypeError(`pointsPerWrite must be 1 … ${MAX_POINTS_PER_WRITE}, got ${n}`);
    this.pointsPerWrite = n;
    this.http = new InfluxHttp({ url: opts.url, username: opts.username, password: opts.password, timeoutMs: opts.timeoutMs });
  }

  /**
   * Creates the database when it is missing. Looks first, so a user with write but no
   * admin rights on an existing database does not need CREATE.
   * @throws StorageError
   */
  async ensureDatabase(): Promise<void> {
    const series = await this.http.query('SHOW DATABASES');
    const names = series.flatMap((s) => s.values.map((v) => String(v[0])));
    if (!names.includes(this.opts.database)) await this.http.query(`CREATE DATABASE ${ident(this.opts.database)}`);
    this.dbReady = true;
  }

  /**
   * Stores every sample and frame point, in writes of at most pointsPerWrite points.
   * Creates the database on first use.
   * @throws StorageError on any failure (some chunks may be stored: retrying is safe);
   *   TypeError for a frame the schema cannot represent (see frameToLines).
   */
  async write(frames: readonly AcceptedFrame[]): Promise<SinkOutcome | void> {
    const q = this.opts.quarantine;
    if (!q) return this.writeLines(frames.flatMap((f) => frameToLines(f, this.opts.gatewayId)));
    const quarantined = new Set<bigint>();
    const groups: { frame: AcceptedFrame; lines: string[] }[] = [];
    for (const f of frames) {
      // Set aside before (a batch re-read after a restart, or retried after a transient failure
      // half-way through the bisection): not sent again; `vitalproof storage replay` sends it.
      if (q.has(f.lsn, f.sha256)) quarantined.add(f.lsn);
      else groups.push({ frame: f, lines: frameToLines(f, this.opts.gatewayId) });
    }
    await writeIsolating(
      groups,
      (lines) => this.writeLines(lines),
      (g, e) => {
        this.setAside(q, g.frame, g.lines, e);
        quarantined.add(g.frame.lsn);
      },
    );
    return quarantined.size ? { quarantined } : undefined;
  }

  /**
   * Writes lines as they are (the quarantine's replay sends points set aside earlier), in
   * requests of at most pointsPerWrite; creates the database on first use.
   * @throws StorageError
   */
  async writeLines(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    if (!this.dbReady) await this.ensureDatabase();
    for (let i = 0; i < lines.length; i += this.pointsPerWrite) {
      try {
        await this.http.write(this.opts.database, lines.slice(i, i + this.pointsPerWrite), this.opts.retentionPolicy);
      } catch (e) {
        if (isStorageError(e, 'INFLUX_REJECTED') && e.detail['status'] === 404) this.dbReady = false; // dropped under us: recreate on retry
        throw e;
      }
    }
  }

  /** @throws StorageError QUARANTINE_FULL, QUARANTINE_WRITE_FAILED: the frame stays in the spool, the write is retried. */
  private setAside(q: StorageQuarantine, a: AcceptedFrame, lines: string[], e: StorageError): void {
    const entry: QuarantinedFrame = {
      version: 1,
      lsn: a.lsn.toString(),
      device: a.frame.deviceId,
      seq: a.frame.seq.toString(),
      sensor: a.frame.spec.name,
      sha256: a.sha256,
      database: this.opts.database,
      ...(this.opts.retentionPolicy ? { retentionPolicy: this.opts.retentionPolicy } : {}),
      lines,
      status: e.detail['status'] as number,
      error: textOf(e.detail['error'] ?? e.message),
      quarantinedAtMs: Date.now(),
    };
    if (q.add(entry)) this.opts.onQuarantined?.(entry);
  }

  /** True when InfluxDB answers /ping; never throws. */
  ping(): Promise<boolean> {
    return this.http.ping();
  }

  /**
   * `frames` points, oldest first, optionally of one device, within [fromMs, toMs) of frame
   * time, with one sequence number, and at most `limit` of them.
   * @throws StorageError
   */
  async queryFrames(device?: string, fromMs?: number, toMs?: number, seq?: bigint, limit?: number): Promise<StoredFrame[]> {
    const where: string[] = [];
    const params: Record<string, string> = {};
    if (seq !== undefined) where.push(`"seq" = ${toStoredUint64(seq)}`);
    if (device !== undefined) {
      where.push('"device" = $device');
      params['device'] = device;
    }
    if (fromMs !== undefined) where.push(`time >= ${msToNs(fromMs)}`);
    if (toMs !== undefined) where.push(`time < ${msToNs(toMs)}`);
    return this.withAcceptances(seriesRows(await this.select(FRAMES_MEASUREMENT, where, params, limit)));
  }

  /**
   * `frames` points of one patient (the `patient` tag: a pseudonym) and some sensors, oldest
   * first, with frame time (time of sample 0) in [fromNs, toNs] (both inclusive), or exactly at
   * `atNs`, at most `limit` of them. The researcher export (gateway/research/readings.ts) pages
   * with it. InfluxDB is untrusted: callers re-check every frame against its signed bytes.
   * @throws TypeError for an empty sensor list or a bad limit; StorageError
   */
  async queryPatientFrames(
    patient: string,
    sensors: readonly string[],
    range: { fromNs?: bigint; toNs?: bigint; atNs?: bigint },
    limit?: number,
  ): Promise<StoredFrame[]> {
    if (sensors.length === 0) throw new TypeError('at least one sensor is needed');
    const params: Record<string, string> = { patient };
    const where: string[] = ['"patient" = $patient'];
    where.push(
      `(${sensors
        .map((name, i) => {
          params[`s${i}`] = sensorByName(name).name;
          return `"sensor" = $s${i}`;
        })
        .join(' OR ')})`,
    );
    const ns = (v: bigint): string => {
      if (v < 0n || v > 9_223_372_036_854_775_806n) throw new TypeError(`time bound out of range: ${v}`);
      return v.toString();
    };
    if (range.atNs !== undefined) where.push(`time = ${ns(range.atNs)}`);
    if (range.fromNs !== undefined) where.push(`time >= ${ns(range.fromNs)}`);
    if (range.toNs !== undefined) where.push(`time <= ${ns(range.toNs)}`);
    return this.withAcceptances(seriesRows(await this.select(FRAMES_MEASUREMENT, where, params, limit)));
  }

  /**
   * Sample points of one sensor (a catalogue name), oldest first, optionally of one device
   * and within [fromMs, toMs) of sample time.
   * @throws TypeError for a sensor name not in the catalogue; StorageError
   */
  async queryPoints(sensor: string, device?: string, fromMs?: number, toMs?: number): Promise<StoredPoint[]> {
    const spec = sensorByName(sensor);
    const params: Record<string, string> = {};
    const where: string[] = [];
    if (device !== undefined) {
      where.push('"device" = $device');
      params['device'] = device;
    }
    if (fromMs !== undefined) where.push(`time >= ${msToNs(fromMs)}`);
    if (toMs !== undefined) where.push(`time < ${msToNs(toMs)}`);
    const rows = seriesRows(await this.select(spec.name, where, params));
    return rows.map((r) => ({
      timeNs: BigInt(r['time'] as string | number),
      device: storedTag(r['device']),
      patient: storedTag(r['patient']),
      gateway: storedTag(r['gateway']),
      seq: fromStoredUint64(BigInt(r['seq'] as string | number)),
      values: Object.fromEntries(spec.channels.map((ch) => [ch, Number(r[ch])])),
    }));
  }

  /**
   * Rows of another measurement of this database (the `batches` points, ./batch-points.ts),
   * oldest first: `where` holds InfluxQL conditions with $name placeholders for `params`.
   * @throws StorageError
   */
  async queryRows(measurement: string, where: string[], params: Record<string, string> = {}, limit?: number): Promise<Record<string, unknown>[]> {
    return seriesRows(await this.select(measurement, where, params, limit));
  }

  /**
   * The stored frames of `rows` (`frames` rows) with every gateway's acceptance of each: one
   * more query, over the devices and the time span of the rows.
   * @throws StorageError
   */
  private async withAcceptances(rows: Record<string, unknown>[]): Promise<StoredFrame[]> {
    if (rows.length === 0) return [];
    const devices = [...new Set(rows.map((r) => storedTag(r['device'])))];
    let lo = BigInt(rows[0]!['time'] as string | number);
    let hi = lo;
    for (const r of rows) {
      const t = BigInt(r['time'] as string | number);
      if (t < lo) lo = t;
      if (t > hi) hi = t;
    }
    const params: Record<string, string> = {};
    const who = devices.map((d, i) => {
      params[`d${i}`] = d;
      return `"device" = $d${i}`;
    });
    // Many devices (a read across all of them): one scan of the time span instead of a long OR.
    const where = [...(devices.length <= 64 ? [`(${who.join(' OR ')})`] : []), `time >= ${lo}`, `time <= ${hi}`];
    const accepted = seriesRows(await this.select(ACCEPTANCES_MEASUREMENT, where, params));
    return storedFramesOf(rows, accepted, this.opts.gatewayId);
  }

  private select(measurement: string, where: string[], params: Record<string, string>, limit?: number): Promise<Series[]> {
    const from = this.opts.retentionPolicy ? `${ident(this.opts.retentionPolicy)}.${ident(measurement)}` : ident(measurement);
    if (limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) throw new TypeError(`limit must be a positive integer, got ${limit}`);
    const q = `SELECT * FROM ${from}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY time ASC${limit !== undefined ? ` LIMIT ${limit}` : ''}`;
    return this.http.query(q, { database: this.opts.database, params });
  }
}

/** InfluxQL double-quoted identifier. */
function ident(name: string): string {
  return `"${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function msToNs(ms: number): bigint {
  if (!Number.isSafeInteger(ms)) throw new TypeError(`time bound must be an integer number of ms, got ${ms}`);
  return BigInt(ms) * 1_000_000n;
}
