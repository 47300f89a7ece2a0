/**
 * Historical readings for a grant (docs/research-api.md, GET /research/grants/<id>/readings),
 * read from InfluxDB's `frames` measurement and served only from the signed frames themselves.
 *
 * InfluxDB is untrusted storage (docs/storage.md): a stored `frames` point is served only when
 *   - its raw bytes decode (firmware-proto/frame.ts) into the device, seq and time its tags claim,
 *   - the device is enrolled (the registry) for the patient the grant names, and
 *   - the Ed25519 signature verifies under the device's enrolled key.
 * Every reading served is then a sample of that verified frame: never a sample point, which
 * anyone with database access could edit. A frame that fails is skipped and logged (device and
 * seq only), and `vitalproof audit` tells more.
 *
 * Which samples: each sample's device time (floor to the ms) must lie in the requested range
 * (clamped to the grant's data window by the caller) and pass `allowed` (the grant's verdict for
 * that sensor and time, ConsentView.checkGrant). Samples outside are cut from a frame at its
 * edges; a frame with no sample left is not served at all.
 *
 * Order and paging: frames in (frame time, device, seq) order. A page is `limit` served frames;
 * the cursor is the (time, device, seq) of the last frame of the page, opaque to clients
 * (base64url JSON bound to the grant). InfluxDB orders by time only and cuts a LIMIT anywhere
 * inside a run of equal times, so each chunk read drops its last instant and reads that instant
 * whole with an exact-time query: no frame is skipped or repeated at a page edge.
 */
import { sampleTimeNs, sampleValue, decodeFrame, type Frame } from '../../firmware-proto/frame.js';
import { FRAME_TAG, concat } from '../../firmware-proto/signing.js';
import type { SensorSpec } from '../../firmware-proto/catalogue.js';
import type { Logger } from '../log.js';
import { sha256Hex } from '../ingest/spool-record.js';
import type { StoredFrame } from '../storage/schema.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import { KeyCache, verifyEd25519 } from '../verify/ed25519.js';

/** Frames that start this long before the requested range are read too: their later samples may lie inside it. */
export const FRAME_LOOKBACK_MS = 10 * 60_000;
/** InfluxDB's largest timestamp (ns). */
const INFLUX_MAX_NS = 9_223_372_036_854_775_806n;

export interface ReadingSample {
  /** Device time of the sample, Unix ms (fractional when the sampling interval is not whole ms). */
  timeMs: number;
  /** One value per channel (`value`, or x, y, z), decoded exactly as the signed frame carries it. */
  values: Record<string, number>;
}

/** A frame as served: its identity, where it sits in its Merkle batch, and the samples inside the grant. */
export interface ServedFrame {
  metric: string;
  sensor: number;
  deviceId: string;
  seq: bigint;
  /** SHA-256 of the exact signed bytes (computed here, not read from storage). */
  frameSha256: string;
  /** Frame time (sample 0), ns: the sort key with deviceId and seq. */
  timeNs: bigint;
  batch: bigint | undefined;
  leaf: number | undefined;
  readings: ReadingSample[];
  /** The stored point, for its proof bundle. */
  stored: StoredFrame;
}

/** The wire form of a frame (docs/research-api.md, `Frame`). */
export interface FrameJson {
  metric: string;
  deviceId: string;
  seq: string;
  frameSha256: string;
  batch: string | null;
  leaf: number | null;
  readings: ReadingSample[];
}

export interface CursorKey {
  timeNs: bigint;
  deviceId: string;
  seq: bigint;
}

export interface ReadingsDeps {
  sink: Pick<InfluxSink, 'queryPatientFrames'>;
  /** The enrolled device: its key, and the patient pseudonym it is enrolled for. */
  deviceOf: (deviceId: string) => { publicKey: Uint8Array; patient: string } | undefined;
  log?: Pick<Logger, 'warn'>;
}

export interface ReadingsRequest {
  /** The patient's pseudonym (the `patient` tag, and the registry's patient of every device served). */
  pseudonym: string;
  sensors: readonly SensorSpec[];
  /** Device time range, Unix ms, both inclusive. */
  fromMs: number;
  toMs: number;
  /** The grant's verdict for one sample. */
  allowed: (sensor: number, recordedAtMs: number) => boolean;
  /** Start after this frame (a page's cursor). */
  after?: CursorKey;
  /** Rows read from InfluxDB per query. Default 1000. */
  chunk?: number;
}

export function frameJson(f: ServedFrame): FrameJson {
  return {
    metric: f.metric,
    deviceId: f.deviceId,
    seq: f.seq.toString(),
    frameSha256: f.frameSha256,
    batch: f.batch !== undefined ? f.batch.toString() : null,
    leaf: f.leaf !== undefined ? f.leaf : null,
    readings: f.readings,
  };
}

export const CSV_HEADER = 'time_ms,metric,channel,value,device,seq,frame_sha256';

/** The CSV rows of a frame: one per sample and channel, each ending in a newline. */
export function csvRows(f: ServedFrame): string {
  let out = '';
  for (const r of f.readings) {
    for (const [ch, v] of Object.entries(r.values)) out += `${r.timeMs},${f.metric},${ch},${v},${f.deviceId},${f.seq},${f.frameSha256}\n`;
  }
  return out;
}

export function compareKeys(a: CursorKey, b: CursorKey): number {
  if (a.timeNs !== b.timeNs) return a.timeNs < b.timeNs ? -1 : 1;
  if (a.deviceId !== b.deviceId) return a.deviceId < b.deviceId ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

/** The opaque cursor after `key`, bound to `grantId`. */
export function encodeCursor(grantId: bigint, key: CursorKey): string {
  return Buffer.from(JSON.stringify({ v: 1, g: grantId.toString(), t: key.timeNs.toString(), d: key.deviceId, s: key.seq.toString() }), 'utf8').toString(
    'base64url',
  );
}

/** Reads a cursor; undefined when it is not one this gateway made for `grantId`. */
export function decodeCursor(cursor: string, grantId: bigint): CursorKey | undefined {
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(cursor)) return undefined;
  try {
    const c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { v?: unknown; g?: unknown; t?: unknown; d?: unknown; s?: unknown };
    const dec = (x: unknown): x is string => typeof x === 'string' && /^(0|[1-9][0-9]{0,19})$/.test(x);
    if (c.v !== 1 || !dec(c.g) || BigInt(c.g) !== grantId || !dec(c.t) || !dec(c.s) || typeof c.d !== 'string' || !/^[0-9a-f]{16}$/.test(c.d)) return undefined;
    return { timeNs: BigInt(c.t), deviceId: c.d, seq: BigInt(c.s) };
  } catch {
    return undefined;
  }
}

/**
 * The served frames of a request, in (time, device, seq) order, read chunk by chunk; the caller
 * stops pulling when its page is full (one more tells it there is a next page).
 * @throws StorageError when InfluxDB cannot be read.
 */
export async function* scanReadings(deps: ReadingsDeps, req: ReadingsRequest): AsyncGenerator<ServedFrame> {
  const names = [...new Set(req.sensors.map((s) => s.name))];
  const codes = new Set(req.sensors.map((s) => s.code));
  const chunk = req.chunk ?? 1000;
  const keys = new KeyCache(1000);
  const endNs = minBig(BigInt(req.toMs) * 1_000_000n, INFLUX_MAX_NS);
  let lower = req.after ? req.after.timeNs : BigInt(Math.max(0, req.fromMs - FRAME_LOOKBACK_MS)) * 1_000_000n;
  for (;;) {
    if (lower > endNs) return;
    let rows = await deps.sink.queryPatientFrames(req.pseudonym, names, { fromNs: lower, toNs: endNs }, chunk);
    if (rows.length === 0) return;
    const full = rows.length === chunk;
    const lastT = rows[rows.length - 1]!.timeNs;
    if (full) {
      // The LIMIT may have cut the last instant's frames: read that instant whole.
      rows = rows.filter((r) => r.timeNs < lastT);
      rows.push(...(await deps.sink.queryPatientFrames(req.pseudonym, names, { atNs: lastT })));
    }
    rows.sort((a, b) => compareKeys({ timeNs: a.timeNs, deviceId: a.device, seq: a.seq }, { timeNs: b.timeNs, deviceId: b.device, seq: b.seq }));
    for (const r of rows) {
      if (req.after && compareKeys({ timeNs: r.timeNs, deviceId: r.device, seq: r.seq }, req.after) <= 0) continue;
      const f = serve(r, deps, req, codes, keys);
      if (f) yield f;
    }
    if (!full) return;
    lower = lastT + 1n;
  }
}

function serve(r: StoredFrame, deps: ReadingsDeps, req: ReadingsRequest, codes: ReadonlySet<number>, keys: KeyCache): ServedFrame | undefined {
  const refuse = (why: string): undefined => {
    deps.log?.warn(
      { event: 'research_frame_skipped', device: r.device, seq: r.seq.toString(), why },
      'stored frame not served: it does not verify against its signed bytes (run vitalproof audit)',
    );
    return undefined;
  };
  let frame: Frame;
  try {
    frame = decodeFrame(r.raw);
  } catch {
    return refuse('undecodable');
  }
  if (frame.deviceId !== r.device || frame.seq !== r.seq || frame.timestampMs * 1_000_000n !== r.timeNs) return refuse('tags differ from the signed frame');
  if (!codes.has(frame.sensor)) return refuse('sensor tag differs from the signed frame');
  const dev = deps.deviceOf(frame.deviceId);
  if (!dev) return refuse('device not enrolled');
  if (dev.patient !== req.pseudonym) return refuse('device enrolled for another patient');
  if (!verifyEd25519(keys.get(dev.publicKey), concat(FRAME_TAG, frame.body), frame.signature)) return refuse('bad signature');
  const readings: ReadingSample[] = [];
  const channels = frame.spec.channels;
  for (let i = 0; i < frame.count; i++) {
    const ns = sampleTimeNs(frame, i);
    const ms = Number(ns / 1_000_000n);
    if (ms < req.fromMs || ms > req.toMs || !req.allowed(frame.sensor, ms)) continue;
    const values: Record<string, number> = {};
    for (let c = 0; c < channels.length; c++) values[channels[c]!] = sampleValue(frame, i, c);
    readings.push({ timeMs: ms + Number(ns % 1_000_000n) / 1e6, values });
  }
  if (readings.length === 0) return undefined;
  return {
    metric: frame.spec.name,
    sensor: frame.sensor,
    deviceId: frame.deviceId,
    seq: frame.seq,
    frameSha256: sha256Hex(r.raw),
    timeNs: r.timeNs,
    batch: r.batch,
    leaf: r.leaf,
    readings,
    stored: r,
  };
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
