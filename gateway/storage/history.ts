/**
 * What the shared InfluxDB knows of one device's past: the freshness state of PROTOCOL.md §5.3
 * (highest seq, per sensor the end of the last frame, the hashes of the newest frames) as
 * every gateway of the hospital stored it. A gateway a wearable moves to reads it here
 * (gateway/ingest/handoff.ts, docs/fleet.md), so that it continues where the last one stopped.
 *
 * Only the `frames` measurement is read, and only what both schema versions have: tags
 * `device` and `sensor`, fields `seq`, `sha256`, `count`, `interval_us`, time = the frame's
 * device timestamp (docs/storage.md). v1 points (with a `gateway` tag) and v2 points (without)
 * of one frame are separate series; both are read, and a frame stored twice counts once.
 *
 * Every request is bounded: one query per device (the newest CHECKPOINT_RECENT frames of
 * each sensor, read from the end of each series), one pinned to a single timestamp per
 * frame, each with a deadline. InfluxDB is untrusted for what it says of a frame's content;
 * what is learned here only raises the freshness bar (a stored hash only answers "was this
 * exact frame stored", which the caller checks against the bytes it holds).
 */
import { SENSORS } from '../../firmware-proto/catalogue.js';
import { frameEndMs } from '../../firmware-proto/frame.js';
import { CHECKPOINT_RECENT } from '../ingest/device-state.js';
import { isStorageError } from './errors.js';
import { InfluxHttp, seriesRows, type Series } from './influx-http.js';
import { FRAMES_MEASUREMENT, fromStoredUint64, toStoredUint64 } from './schema.js';
import { textOf } from '../util/text.js';

export interface HistoryOptions {
  url: string;
  database: string;
  username?: string;
  password?: string;
  /** Deadline of each request (ms): a lookup must not hold a device's frames for long. Default 1500. */
  timeoutMs?: number;
}

/** One device's freshness state as the shared store holds it (PROTOCOL.md §5.3). */
export interface StoredDeviceState {
  /** The highest seq stored by any gateway. */
  highestSeq: bigint;
  /** sensor code → end (ms, §3.3) of the newest stored frame of that sensor. */
  lastEndMs: Map<number, bigint>;
  /** seq → sha256 hex of the newest frames (at most CHECKPOINT_RECENT), oldest first. */
  recent: Map<bigint, string>;
}

/**
 * How many of a device's newest frames a lookup brings back. CHECKPOINT_RECENT, not
 * DEDUP_WINDOW: after a move a device resends only what was not acknowledged (PROTOCOL.md
 * §8.2), at most its in-flight window, which is why the checkpoint keeps as many; an older
 * resend is answered by `holds` (one point). It also keeps the answer small: at most this
 * many rows per sensor.
 */
export const HISTORY_RECENT = CHECKPOINT_RECENT;

export class FrameHistory {
  private readonly http: InfluxHttp;

  constructor(private readonly opts: HistoryOptions) {
    if (!opts.database) throw new TypeError('database must be a non-empty name');
    this.http = new InfluxHttp({ url: opts.url, username: opts.username, password: opts.password, timeoutMs: opts.timeoutMs ?? 1500 });
  }

  /**
   * The device's state as stored, or undefined when no frame of it is stored (or the
   * database does not exist yet: no gateway has written).
   *
   * One query: per sensor series the newest HISTORY_RECENT frames, read from the end. Since a
   * device numbers each sensor's frames in time order (PROTOCOL.md §8.3: a higher seq with an
   * earlier time is refused), a sensor's newest frame has its highest seq and its latest end;
   * the highest seq of the device is the highest of those, and its newest HISTORY_RECENT
   * frames by seq are all among the rows returned.
   * @throws StorageError (INFLUX_TIMEOUT past the deadline, INFLUX_UNREACHABLE, ...)
   */
  async device(deviceId: string): Promise<StoredDeviceState | undefined> {
    const q =
      `SELECT "seq", "sha256", "count", "interval_us", "sensor" FROM "${FRAMES_MEASUREMENT}" WHERE "device" = $device ` +
      `GROUP BY "sensor" ORDER BY time DESC LIMIT ${HISTORY_RECENT}`;
    const rows = seriesRows(await this.query(q, { device: deviceId }));
    if (rows.length === 0) return undefined;
    let highestSeq = 0n;
    const lastEndMs = new Map<number, bigint>();
    const hashes = new Map<bigint, string>();
    for (const r of rows) {
      const seq = fromStoredUint64(BigInt(r['seq'] as string | number));
      if (seq > highestSeq) highestSeq = seq;
      hashes.set(seq, textOf(r['sha256']));
      const code = sensorCodeOf(r['sensor']);
      if (code === undefined) continue; // a sensor this gateway does not know: its frames would be refused anyway
      const end = frameEndMs({
        timestampMs: BigInt(r['time'] as string | number) / 1_000_000n,
        count: Number(r['count']),
        intervalUs: Number(r['interval_us']),
      });
      if ((lastEndMs.get(code) ?? -1n) < end) lastEndMs.set(code, end);
    }
    const newest = [...hashes.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).slice(-HISTORY_RECENT);
    return { highestSeq, lastEndMs, recent: new Map(newest.map((s) => [s, hashes.get(s)!])) };
  }

  /**
   * Whether the store holds the frame (device, seq) with this sha256. The frame's timestamp
   * pins the query to one instant (a stored frame with the same bytes has the same time), so
   * InfluxDB reads one point per series instead of the device's whole history.
   * @throws StorageError
   */
  async holds(deviceId: string, seq: bigint, timestampMs: bigint, sha256: string): Promise<boolean> {
    if (timestampMs < 0n || timestampMs > 9_223_372_036_854n) return false; // outside InfluxDB's time range: never stored
    const q = `SELECT "sha256" FROM "${FRAMES_MEASUREMENT}" WHERE "device" = $device AND time = ${timestampMs * 1_000_000n} AND "seq" = ${toStoredUint64(seq)} LIMIT 4`;
    return seriesRows(await this.query(q, { device: deviceId })).some((r) => textOf(r['sha256']) === sha256);
  }

  /** A missing database means that no gateway has stored anything yet, not a failure. */
  private async query(q: string, params: Record<string, string>): Promise<Series[]> {
    try {
      return await this.http.query(q, { database: this.opts.database, params });
    } catch (e) {
      if (isStorageError(e, 'INFLUX_REJECTED') && textOf(e.detail['error']).startsWith('database not found')) return [];
      throw e;
    }
  }
}

const SENSOR_CODES = new Map(SENSORS.map((s) => [s.name, s.code]));

function sensorCodeOf(v: unknown): number | undefined {
  return typeof v === 'string' ? SENSOR_CODES.get(v) : undefined;
}
