/**
 * How accepted frames become InfluxDB points (docs/storage.md has the picture). Schema v2: a
 * reading is identified by what the device signed, not by the gateway that took it, so the
 * gateways of a hospital can share one InfluxDB (docs/fleet.md).
 *
 * - One measurement per sensor, named like the catalogue (heart_rate, accelerometer, ...):
 *   one point per sample, tags device/patient, fields `value` (or x, y, z: one per channel)
 *   and `seq`, time = sampleTimeNs(frame, i).
 * - `frames`: one point per frame with the exact signed bytes, so every sample point traces
 *   back to (device, seq) and from there to a frame that can be re-verified.
 * - `acceptances`: one point per frame and gateway that accepted it: where it sits in that
 *   gateway's spool and anchored Merkle batch (`batch`, `leaf`), when and how it arrived.
 *
 * Idempotency: every tag, field and time is a function of the AcceptedFrame alone (never of
 * the time of writing), and the sample and `frames` points are a function of the signed bytes
 * and the device's patient alone, so a replayed batch overwrites identical points and a frame
 * accepted by two gateways is stored once, with two acceptances.
 *
 * Schema v1 (before the hospital fleet) tagged every point with `gateway` and kept the
 * acceptance fields on the `frames` point; readers take both (storedFramesOf).
 */
import { sampleTimeNs, sampleValue } from '../../firmware-proto/frame.js';
import type { AcceptedFrame, Transport } from '../ingest/types.js';
import { float, int, pointLine, seriesKey, str, toLine, type FieldValue } from './line-protocol.js';
import { textOf } from '../util/text.js';

export const FRAMES_MEASUREMENT = 'frames';
export const ACCEPTANCES_MEASUREMENT = 'acceptances';

/**
 * WARNING: seq and lsn are uint64 but InfluxDB integers are int64. Values ≥ 2^63 are
 * stored as the int64 with the same 64 bits (value − 2^64, negative); read them back with
 * fromStoredUint64. No honest counter gets there, but a signed frame may carry any seq.
 */
export function toStoredUint64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

export function fromStoredUint64(v: bigint): bigint {
  return BigInt.asUintN(64, v);
}

/** Points a frame becomes: one per sample, its `frames` point and its acceptance. */
export function pointsPerFrame(f: AcceptedFrame): number {
  return f.frame.count + 2;
}

/**
 * The line-protocol lines of one accepted frame: its samples in order, its `frames` point, then
 * its acceptance by `gatewayId`.
 * @throws TypeError when the frame time is outside InfluxDB's range or a tag cannot be
 *   carried (the pipeline's clock rules and the registry keep both from happening).
 */
export function frameToLines(a: AcceptedFrame, gatewayId: string): string[] {
  const f = a.frame;
  const channels = f.spec.channels;
  const tags = { device: f.deviceId, patient: a.patient };
  const seq = int(toStoredUint64(f.seq));
  const key = seriesKey(f.spec.name, tags);
  const lines: string[] = [];
  for (let i = 0; i < f.count; i++) {
    const fields: Record<string, FieldValue> = { seq };
    // Decoded exactly as the audit and the researcher export decode it; the float64 goes
    // over the wire in its shortest round-trip form and reads back bit-identical.
    for (let c = 0; c < channels.length; c++) fields[channels[c]!] = float(sampleValue(f, i, c));
    lines.push(pointLine(key, fields, sampleTimeNs(f, i)));
  }
  const timeNs = f.timestampMs * 1_000_000n;
  const sha256 = str(a.sha256);
  lines.push(
    toLine({
      measurement: FRAMES_MEASUREMENT,
      tags: { ...tags, sensor: f.spec.name },
      fields: { seq, sha256, raw: str(Buffer.from(f.raw).toString('base64')), count: int(f.count), interval_us: int(f.intervalUs) },
      timeNs,
    }),
    toLine({
      measurement: ACCEPTANCES_MEASUREMENT,
      tags: { device: f.deviceId, sensor: f.spec.name, gateway: gatewayId },
      fields: {
        seq,
        sha256,
        lsn: int(toStoredUint64(a.lsn)),
        received_at: int(a.receivedAtMs),
        transport: str(a.transport),
        ...(a.placement ? { batch: int(a.placement.batch), leaf: int(a.placement.leaf) } : {}),
      },
      timeNs,
    }),
  );
  return lines;
}

/** One gateway's acceptance of a stored frame, as read back. */
export interface Acceptance {
  gateway: string;
  receivedAtMs: number;
  transport: Transport;
  /** The frame's position in that gateway's spool. */
  lsn: bigint;
  /** Merkle batch sequence (of that gateway) and leaf index (absent for frames stored before batching existed). */
  batch?: bigint;
  leaf?: number;
}

/**
 * A stored frame as read back: its `frames` point, with the acceptance of the reading gateway
 * (or else the first) flattened in (`gateway` … `leaf`) and every gateway's in `acceptances`.
 */
export interface StoredFrame {
  timeNs: bigint;
  device: string;
  patient: string;
  /** The gateway of the flattened acceptance; '' when no acceptance is stored. */
  gateway: string;
  sensor: string;
  seq: bigint;
  sha256: string;
  /** The exact signed frame bytes. */
  raw: Uint8Array;
  count: number;
  intervalUs: number;
  receivedAtMs: number;
  transport: Transport;
  lsn: bigint;
  /** Merkle batch sequence and leaf index (absent for frames stored before batching existed). */
  batch?: bigint;
  leaf?: number;
  /** Every gateway that accepted the frame, the flattened one first. */
  acceptances: Acceptance[];
}

/** A sample point as read back; `values` has one entry per channel of the sensor (value, or x, y, z). */
export interface StoredPoint {
  timeNs: bigint;
  device: string;
  patient: string;
  /** '' for schema v2 points (no gateway tag). */
  gateway: string;
  seq: bigint;
  values: Record<string, number>;
}

/** A tag as read back: an absent tag reads back as null (line protocol cannot store an empty one), here ''. */
export function storedTag(v: unknown): string {
  return v === null || v === undefined ? '' : textOf(v);
}

/** An `acceptances` row (or the acceptance fields of a v1 `frames` row) as an Acceptance. */
function acceptanceOf(r: Record<string, unknown>): Acceptance {
  return {
    gateway: storedTag(r['gateway']),
    receivedAtMs: Number(r['received_at']),
    transport: String(r['transport']) as Transport,
    lsn: fromStoredUint64(BigInt(r['lsn'] as string | number)),
    ...(r['batch'] !== null && r['batch'] !== undefined ? { batch: BigInt(r['batch'] as string | number), leaf: Number(r['leaf']) } : {}),
  };
}

/** Where a frame point and its acceptances meet: the frame's device, sensor, time and hash. */
function frameKey(r: Record<string, unknown>): string {
  return `${storedTag(r['device'])}|${storedTag(r['sensor'])}|${textOf(r['time'])}|${textOf(r['sha256'])}`;
}

/**
 * Stored frames from `frames` rows and the `acceptances` rows of the same devices and times,
 * in the order of `frameRows`. A v1 `frames` row (it has a `gateway` tag and an `lsn` field)
 * is its own acceptance; a frame stored in both schemas (written again after the upgrade) is
 * one frame with both acceptances. `prefer` names the gateway whose acceptance is flattened
 * into the StoredFrame (the reading gateway's own), when it has one.
 */
export function storedFramesOf(frameRows: Record<string, unknown>[], acceptanceRows: Record<string, unknown>[], prefer?: string): StoredFrame[] {
  const accepted = new Map<string, Acceptance[]>();
  const add = (k: string, a: Acceptance): void => {
    const list = accepted.get(k) ?? [];
    if (!list.some((x) => x.gateway === a.gateway && x.lsn === a.lsn)) list.push(a);
    accepted.set(k, list);
  };
  for (const r of acceptanceRows) add(frameKey(r), acceptanceOf(r));
  const rows = new Map<string, Record<string, unknown>>();
  for (const r of frameRows) {
    const k = frameKey(r);
    if (r['lsn'] !== null && r['lsn'] !== undefined) add(k, acceptanceOf(r));
    if (!rows.has(k)) rows.set(k, r);
  }
  return [...rows].map(([k, r]) => {
    const list = accepted.get(k) ?? [];
    const own = prefer === undefined ? -1 : list.findIndex((a) => a.gateway === prefer);
    if (own > 0) list.unshift(...list.splice(own, 1));
    const first = list[0];
    return {
      timeNs: BigInt(r['time'] as string | number),
      device: storedTag(r['device']),
      patient: storedTag(r['patient']),
      sensor: storedTag(r['sensor']),
      seq: fromStoredUint64(BigInt(r['seq'] as string | number)),
      sha256: String(r['sha256']),
      raw: new Uint8Array(Buffer.from(String(r['raw']), 'base64')),
      count: Number(r['count']),
      intervalUs: Number(r['interval_us']),
      gateway: first?.gateway ?? '',
      receivedAtMs: first?.receivedAtMs ?? 0,
      transport: first?.transport ?? ('' as Transport),
      lsn: first?.lsn ?? 0n,
      ...(first?.batch !== undefined ? { batch: first.batch, leaf: first.leaf } : {}),
      acceptances: list,
    };
  });
}
