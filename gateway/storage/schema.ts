/**
 * How accepted frames become InfluxDB points (docs/storage.md has the picture).
 *
 * - One measurement per sensor, named like the catalogue (heart_rate, accelerometer, ...):
 *   one point per sample, tags device/patient/gateway, fields `value` (or x, y, z: one
 *   per channel) and `seq`, time = sampleTimeNs(frame, i).
 * - `frames`: one point per frame with the exact signed bytes, so every sample point
 *   traces back to (device, seq) and from there to a frame that can be re-verified; its
 *   fields `batch` and `leaf` say where the frame sits in its anchored Merkle batch.
 *
 * Idempotency: every tag, field and time is a function of the AcceptedFrame alone (never of
 * the time of writing), so a replayed batch overwrites identical points.
 */
import { sampleTimeNs, sampleValue } from '../../firmware-proto/frame.js';
import type { AcceptedFrame, Transport } from '../ingest/types.js';
import { float, int, pointLine, seriesKey, str, toLine, type FieldValue } from './line-protocol.js';
import { textOf } from '../util/text.js';

export const FRAMES_MEASUREMENT = 'frames';

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

/** Points a frame becomes: one per sample plus its `frames` point. */
export function pointsPerFrame(f: AcceptedFrame): number {
  return f.frame.count + 1;
}

/**
 * The line-protocol lines of one accepted frame: its samples in order, then its `frames` point.
 * @throws TypeError when the frame time is outside InfluxDB's range or a tag cannot be
 *   carried (the pipeline's clock rules and the registry keep both from happening).
 */
export function frameToLines(a: AcceptedFrame, gatewayId: string): string[] {
  const f = a.frame;
  const channels = f.spec.channels;
  const tags = { device: f.deviceId, patient: a.patient, gateway: gatewayId };
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
  lines.push(
    toLine({
      measurement: FRAMES_MEASUREMENT,
      tags: { ...tags, sensor: f.spec.name },
      fields: {
        seq,
        sha256: str(a.sha256),
        raw: str(Buffer.from(f.raw).toString('base64')),
        count: int(f.count),
        interval_us: int(f.intervalUs),
        received_at: int(a.receivedAtMs),
        transport: str(a.transport),
        lsn: int(toStoredUint64(a.lsn)),
        ...(a.placement ? { batch: int(a.placement.batch), leaf: int(a.placement.leaf) } : {}),
      },
      timeNs: f.timestampMs * 1_000_000n,
    }),
  );
  return lines;
}

/** A `frames` point as read back. */
export interface StoredFrame {
  timeNs: bigint;
  device: string;
  patient: string;
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
}

/** A sample point as read back; `values` has one entry per channel of the sensor (value, or x, y, z). */
export interface StoredPoint {
  timeNs: bigint;
  device: string;
  patient: string;
  gateway: string;
  seq: bigint;
  values: Record<string, number>;
}

/** A tag as read back: an absent tag reads back as null (line protocol cannot store an empty one), here ''. */
export function storedTag(v: unknown): string {
  return v === null || v === undefined ? '' : textOf(v);
}
