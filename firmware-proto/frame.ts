/**
 * The v1 frame codec (PROTOCOL.md §3). Decoding is strict: exactly one byte string
 * decodes to a given frame, and everything else is refused with a coded reason.
 *
 *   off  len        field
 *   0    1          version          = 1
 *   1    8          device id        opaque, shown as 16 lowercase hex digits
 *   9    8          seq              uint64 BE, ≥ 1, never repeats for a device
 *   17   8          timestamp        uint64 BE, ms since the Unix epoch, time of sample 0
 *   25   1          sensor           catalogue code (§4)
 *   26   1          scale            int8, value = raw × 10^scale, −9 … 9
 *   27   4          interval         uint32 BE, µs between samples
 *   31   2          count            uint16 BE, samples per channel, ≥ 1
 *   33   4·count·ch samples          int32 BE, channel-interleaved
 *   …    64         signature        Ed25519 over FRAME_TAG ‖ bytes[0 … 33+4·count·ch)
 */
import { sensorByCode, type SensorSpec } from './catalogue.js';
import { ProtocolError } from './reasons.js';

export const FRAME_VERSION = 1;
export const HEADER_BYTES = 33;
export const SIGNATURE_BYTES = 64;
export const DEVICE_ID_BYTES = 8;
/** WARNING: a receiver must refuse anything longer before it allocates for the samples. */
export const MAX_FRAME_BYTES = 16_384;
export const MIN_FRAME_BYTES = HEADER_BYTES + 4 + SIGNATURE_BYTES;
export const MIN_SCALE = -9;
export const MAX_SCALE = 9;
const UINT64_MAX = (1n << 64n) - 1n;

/** The unsigned content of a frame: what a device measures before it signs. */
export interface FrameBody {
  /** 16 lowercase hex digits. */
  deviceId: string;
  seq: bigint;
  /** Device time of the first sample, ms since the Unix epoch. */
  timestampMs: bigint;
  sensor: number;
  scale: number;
  intervalUs: number;
  /** Raw integer samples, channel-interleaved: count × channels entries. */
  samples: Int32Array;
}

export interface Frame extends FrameBody {
  /** Everything the signature covers except the domain tag: bytes[0 … end of samples). */
  body: Uint8Array;
  signature: Uint8Array;
  /** The exact bytes received (body ‖ signature). */
  raw: Uint8Array;
  spec: SensorSpec;
  /** Samples per channel. */
  count: number;
}

export function isDeviceId(s: string): boolean {
  return /^[0-9a-f]{16}$/.test(s);
}

/**
 * Serialises the signed part of a frame.
 * @throws TypeError when a field cannot be represented (a device bug, not a wire error).
 * @example encodeBody({ deviceId: '00112233aabbccdd', seq: 1n, timestampMs: 1700000000000n,
 *   sensor: 1, scale: 0, intervalUs: 1_000_000, samples: Int32Array.of(72) })
 */
export function encodeBody(f: FrameBody): Uint8Array {
  if (!isDeviceId(f.deviceId)) throw new TypeError(`deviceId must be 16 lowercase hex digits, got "${f.deviceId}"`);
  if (f.seq < 1n || f.seq > UINT64_MAX) throw new TypeError(`seq out of range: ${f.seq}`);
  if (f.timestampMs < 0n || f.timestampMs > UINT64_MAX) throw new TypeError(`timestampMs out of range: ${f.timestampMs}`);
  const spec = sensorByCode(f.sensor);
  if (!spec) throw new TypeError(`unknown sensor code ${f.sensor}`);
  if (!Number.isInteger(f.scale) || f.scale < MIN_SCALE || f.scale > MAX_SCALE) throw new TypeError(`scale out of range: ${f.scale}`);
  if (!Number.isInteger(f.intervalUs) || f.intervalUs < 0 || f.intervalUs > 0xffff_ffff) throw new TypeError(`intervalUs out of range: ${f.intervalUs}`);
  const ch = spec.channels.length;
  if (f.samples.length === 0 || f.samples.length % ch !== 0) throw new TypeError(`samples must be a non-empty multiple of ${ch} values`);
  const count = f.samples.length / ch;
  if (count > 0xffff) throw new TypeError(`too many samples: ${count}`);
  const out = new Uint8Array(HEADER_BYTES + 4 * f.samples.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, FRAME_VERSION);
  out.set(Buffer.from(f.deviceId, 'hex'), 1);
  v.setBigUint64(9, f.seq);
  v.setBigUint64(17, f.timestampMs);
  v.setUint8(25, f.sensor);
  v.setInt8(26, f.scale);
  v.setUint32(27, f.intervalUs);
  v.setUint16(31, count);
  for (let i = 0; i < f.samples.length; i++) v.setInt32(HEADER_BYTES + 4 * i, f.samples[i]!);
  if (out.length + SIGNATURE_BYTES > MAX_FRAME_BYTES) throw new TypeError(`frame would be ${out.length + SIGNATURE_BYTES} bytes, more than ${MAX_FRAME_BYTES}`);
  return out;
}

/**
 * Strict decode of a received frame (PROTOCOL.md §3.2). Checks structure only; the
 * signature is checked by the receiver against the enrolled key (§5).
 * @throws ProtocolError with the first rule the bytes break, in the order of §3.2.
 */
export function decodeFrame(raw: Uint8Array): Frame {
  if (raw.length > MAX_FRAME_BYTES) throw new ProtocolError('FRAME_OVERSIZED', { max: MAX_FRAME_BYTES, got: raw.length });
  if (raw.length < MIN_FRAME_BYTES) throw new ProtocolError('FRAME_TOO_SHORT', { min: MIN_FRAME_BYTES, got: raw.length });
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const version = v.getUint8(0);
  if (version !== FRAME_VERSION) throw new ProtocolError('UNKNOWN_VERSION', { expected: FRAME_VERSION, got: version });
  const sensor = v.getUint8(25);
  const spec = sensorByCode(sensor);
  if (!spec) throw new ProtocolError('UNKNOWN_SENSOR', { got: sensor });
  const scale = v.getInt8(26);
  if (scale < MIN_SCALE || scale > MAX_SCALE) throw new ProtocolError('BAD_SCALE', { min: MIN_SCALE, max: MAX_SCALE, got: scale });
  const intervalUs = v.getUint32(27);
  const count = v.getUint16(31);
  if (count === 0) throw new ProtocolError('BAD_SAMPLE_COUNT', { got: 0 });
  if (intervalUs === 0 && count > 1) throw new ProtocolError('BAD_INTERVAL', { count, got: 0 });
  const ch = spec.channels.length;
  const bodyLen = HEADER_BYTES + 4 * count * ch;
  const expected = bodyLen + SIGNATURE_BYTES;
  if (raw.length !== expected) throw new ProtocolError('LENGTH_MISMATCH', { expected, got: raw.length });
  const seq = v.getBigUint64(9);
  if (seq === 0n) throw new ProtocolError('BAD_SEQUENCE', { got: 0 });
  const samples = new Int32Array(count * ch);
  const lo = spec.min / 10 ** scale;
  const hi = spec.max / 10 ** scale;
  for (let i = 0; i < samples.length; i++) {
    const s = v.getInt32(HEADER_BYTES + 4 * i);
    if (s < lo || s > hi) throw new ProtocolError('SAMPLE_OUT_OF_RANGE', { index: i, min: spec.min, max: spec.max, got: s * 10 ** scale });
    samples[i] = s;
  }
  return {
    deviceId: Buffer.from(raw.subarray(1, 9)).toString('hex'),
    seq,
    timestampMs: v.getBigUint64(17),
    sensor,
    scale,
    intervalUs,
    samples,
    body: raw.subarray(0, bodyLen),
    signature: raw.subarray(bodyLen),
    raw,
    spec,
    count,
  };
}

/**
 * Device id, sequence number and timestamp of a frame already known to be valid (one the
 * gateway accepted), read straight from the header (§3.1) without checking or decoding the rest.
 * @throws RangeError when `raw` is shorter than a header.
 */
export function frameIdentity(raw: Uint8Array): { deviceId: string; seq: bigint; timestampMs: bigint } {
  if (raw.length < HEADER_BYTES) throw new RangeError(`a frame header is ${HEADER_BYTES} bytes, got ${raw.length}`);
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return { deviceId: Buffer.from(raw.subarray(1, 9)).toString('hex'), seq: v.getBigUint64(9), timestampMs: v.getBigUint64(17) };
}

/** The device id of a frame, or undefined when the bytes are too short to carry one. */
export function peekDeviceId(raw: Uint8Array): string | undefined {
  return raw.length >= 9 ? Buffer.from(raw.subarray(1, 9)).toString('hex') : undefined;
}

/** Decoded value of sample i of channel c: raw × 10^scale, rounded to the scale's precision. */
export function sampleValue(f: Pick<Frame, 'samples' | 'scale' | 'spec'>, i: number, c = 0): number {
  const raw = f.samples[i * f.spec.channels.length + c]!;
  return f.scale < 0 ? Number((raw * 10 ** f.scale).toFixed(-f.scale)) : raw * 10 ** f.scale;
}

/** Time of sample i in ns since the epoch: timestamp + i × interval. */
export function sampleTimeNs(f: Pick<Frame, 'timestampMs' | 'intervalUs'>, i: number): bigint {
  return f.timestampMs * 1_000_000n + BigInt(i) * BigInt(f.intervalUs) * 1000n;
}

/** End of a frame's time span in ms: the time of its last sample. */
export function frameEndMs(f: Pick<Frame, 'timestampMs' | 'intervalUs' | 'count'>): bigint {
  return f.timestampMs + (BigInt(f.count - 1) * BigInt(f.intervalUs)) / 1000n;
}
