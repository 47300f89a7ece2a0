/**
 * Generates the firmware-proto test vectors (PROTOCOL.md §9) as JSON files under
 * firmware-proto/vectors/. Deterministic: keys come from fixed labels, timestamps and nonces
 * are fixed, and Ed25519 signing is deterministic (RFC 8032 §5.1.6), so every run writes the
 * same bytes.
 *
 *   npm run build && node dist/scripts/gen-vectors.js            (re)write the vector files
 *   npm run build && node dist/scripts/gen-vectors.js --check    exit 1 when the files differ
 *   npm run build && node dist/scripts/gen-vectors.js --out DIR  write under DIR instead
 *
 * Frames are built here with `rawFrame`, a field-by-field encoder that validates nothing, so
 * that malformed frames can be made too; for every valid vector it must agree with the
 * codec's `encodeBody`. The expected decoded values are computed with exact decimal
 * arithmetic, not with the codec. Each vector is checked as it is made (the codec decodes or
 * refuses it with the stated reason, node:crypto accepts or refuses its signature): a
 * generator run fails loudly rather than write a vector that contradicts the spec.
 */
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { diffVectorFiles, runVectorGenerator, type VectorSet } from './lib/vector-files.js';
import { SENSORS, sensorByName, type SensorSpec } from '../firmware-proto/catalogue.js';
import { makeConnectPassword } from '../firmware-proto/connect.js';
import { decodeFrame, encodeBody, type FrameBody } from '../firmware-proto/frame.js';
import { ProtocolError, type ConnectReason, type FrameReason } from '../firmware-proto/reasons.js';
import { CONNECT_TAG, FRAME_TAG, concat, deviceIdFromKey, generateKeys, signBody, type KeyProblem } from '../firmware-proto/signing.js';
import { deviceClientId } from '../firmware-proto/topics.js';

/** Vector file path (relative to firmware-proto/vectors/) → file text. */
export type { VectorSet };

const P = 2n ** 255n - 19n;
/** Order of the prime-order subgroup (RFC 8032 §5.1: L). */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
/** 2023-11-14T22:13:20Z: the device time of most vectors. */
const T0 = 1_700_000_000_000n;

// ---------------------------------------------------------------- small helpers

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

function le32(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

function fromLE(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}

const modL = (n: bigint): bigint => ((n % L) + L) % L;

function json(v: unknown): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

/** node:crypto (OpenSSL) verdict: the gateway's rule, PROTOCOL.md §5.2. */
function opensslVerifies(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
    return cryptoVerify(null, message, key, signature);
  } catch {
    return false;
  }
}

/** Tiny deterministic PRNG (mulberry32) for sample noise. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Exact decimal value of raw × 10^scale, as the nearest double (what a JSON parser yields). */
export function exactValue(raw: number, scale: number): number {
  if (scale >= 0) return Number((BigInt(raw) * 10n ** BigInt(scale)).toString());
  const neg = raw < 0;
  const digits = Math.abs(raw)
    .toString()
    .padStart(-scale + 1, '0');
  const cut = digits.length + scale;
  return Number(`${neg ? '-' : ''}${digits.slice(0, cut)}.${digits.slice(cut)}`);
}

// ---------------------------------------------------------------- keys

interface TestKey {
  label: string;
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  deviceId: string;
}

/** Deterministic device keys: seed = SHA-256("VitalProof test vector key: " ‖ label). */
function testKey(label: string): TestKey {
  const seed = new Uint8Array(createHash('sha256').update(`VitalProof test vector key: ${label}`).digest());
  const { secretKey, publicKey } = generateKeys(seed);
  return { label, secretKey, publicKey, deviceId: deviceIdFromKey(publicKey) };
}

const DEV_A = testKey('device-a');
const DEV_B = testKey('device-b');
const DEV_C = testKey('device-c');
const OTHER = testKey('not-enrolled');

/**
 * The 8 points of the torsion subgroup E[8] (the small-order points), canonical encodings,
 * as listed in "Taming the many EdDSAs" (Chalkias et al., 2020) and libsodium's blocklist.
 */
export const SMALL_ORDER_POINTS: readonly { name: string; order: number; hex: string }[] = [
  { name: 'identity', order: 1, hex: '0100000000000000000000000000000000000000000000000000000000000000' },
  { name: 'order-2', order: 2, hex: 'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f' },
  { name: 'order-4-a', order: 4, hex: '0000000000000000000000000000000000000000000000000000000000000000' },
  { name: 'order-4-b', order: 4, hex: '0000000000000000000000000000000000000000000000000000000000000080' },
  { name: 'order-8-a', order: 8, hex: '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05' },
  { name: 'order-8-b', order: 8, hex: '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85' },
  { name: 'order-8-c', order: 8, hex: 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a' },
  { name: 'order-8-d', order: 8, hex: 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa' },
];

function pointOf(h: string): ed.Point {
  return ed.Point.fromBytes(unhex(h), false);
}

function orderOf(p: ed.Point): number {
  let q = p;
  for (let n = 1; n <= 8; n++) {
    if (q.is0()) return n;
    q = q.add(p);
  }
  return Infinity;
}

// ---------------------------------------------------------------- frames

/** Header fields of a frame as raw wire values; nothing is validated (PROTOCOL.md §3.1). */
interface RawFields {
  version: number;
  deviceId: string;
  seq: bigint;
  timestampMs: bigint;
  sensor: number;
  scale: number;
  intervalUs: number;
  count: number;
  samples: readonly number[];
}

/** The body (header ‖ samples) exactly as §3.1 lays it out, big-endian throughout. */
function rawBody(f: RawFields): Uint8Array {
  const out = new Uint8Array(33 + 4 * f.samples.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, f.version);
  out.set(unhex(f.deviceId), 1);
  v.setBigUint64(9, f.seq);
  v.setBigUint64(17, f.timestampMs);
  v.setUint8(25, f.sensor);
  v.setInt8(26, f.scale);
  v.setUint32(27, f.intervalUs);
  v.setUint16(31, f.count);
  f.samples.forEach((s, i) => v.setInt32(33 + 4 * i, s));
  return out;
}

function signed(body: Uint8Array, key: TestKey): Uint8Array {
  return concat(body, signBody(body, key.secretKey));
}

interface ValidSpec {
  name: string;
  desc: string;
  key: TestKey;
  sensor: string;
  seq: bigint;
  timestampMs?: bigint;
  scale?: number;
  intervalUs?: number;
  /** Channel-interleaved raw samples. */
  samples: readonly number[];
}

interface BuiltFrame {
  spec: ValidSpec;
  sensor: SensorSpec;
  fields: RawFields;
  body: Uint8Array;
  raw: Uint8Array;
}

function buildValid(s: ValidSpec): BuiltFrame {
  const sensor = sensorByName(s.sensor);
  const fields: RawFields = {
    version: 1,
    deviceId: s.key.deviceId,
    seq: s.seq,
    timestampMs: s.timestampMs ?? T0,
    sensor: sensor.code,
    scale: s.scale ?? sensor.defaultScale,
    intervalUs: s.intervalUs ?? sensor.defaultIntervalUs,
    count: s.samples.length / sensor.channels.length,
    samples: s.samples,
  };
  const body = rawBody(fields);
  // The codec's encoder must agree with the field-by-field layout of §3.1.
  const codecBody = encodeBody(toFrameBody(fields));
  if (hex(codecBody) !== hex(body)) throw new Error(`${s.name}: encodeBody disagrees with the §3.1 layout`);
  return { spec: s, sensor, fields, body, raw: signed(body, s.key) };
}

function toFrameBody(f: RawFields): FrameBody {
  return {
    deviceId: f.deviceId,
    seq: f.seq,
    timestampMs: f.timestampMs,
    sensor: f.sensor,
    scale: f.scale,
    intervalUs: f.intervalUs,
    samples: Int32Array.from(f.samples),
  };
}

function ecgTrace(n: number, seed: number): number[] {
  // One beat per second at 4 ms per sample (250 samples), in µV: P wave, QRS complex, T wave.
  const knots: [number, number][] = [
    [0, 0],
    [20, 0],
    [32, 150],
    [45, 0],
    [90, 0],
    [95, -120],
    [100, 1400],
    [105, -350],
    [110, 0],
    [150, 0],
    [175, 300],
    [200, 0],
    [250, 0],
  ];
  const rnd = prng(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = i % 250;
    let v = 0;
    for (let k = 1; k < knots.length; k++) {
      const [t0, v0] = knots[k - 1]!;
      const [t1, v1] = knots[k]!;
      if (t >= t0 && t < t1) {
        v = v0 + Math.trunc(((v1 - v0) * (t - t0)) / (t1 - t0));
        break;
      }
    }
    out.push(v + Math.floor(rnd() * 11) - 5);
  }
  return out;
}

function accelTrace(n: number, seed: number): number[] {
  // Wrist at rest with small movements, mm/s² per channel (scale −3 → m/s²), x y z interleaved.
  const rnd = prng(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    out.push(Math.floor(rnd() * 801) - 400, Math.floor(rnd() * 601) - 1500, 9810 + Math.floor(rnd() * 201) - 100);
  }
  return out;
}

const VALID: ValidSpec[] = [
  // One frame per sensor with the catalogue defaults (§4).
  {
    name: 'heart-rate-default',
    desc: 'heart_rate, catalogue defaults: 5 samples, 1 s apart, scale 0',
    key: DEV_A,
    sensor: 'heart_rate',
    seq: 1n,
    samples: [72, 73, 75, 74, 72],
  },
  {
    name: 'spo2-default',
    desc: 'spo2, catalogue defaults: 5 samples, scale -1 (tenths of a percent)',
    key: DEV_A,
    sensor: 'spo2',
    seq: 2n,
    samples: [978, 975, 981, 990, 968],
  },
  {
    name: 'skin-temperature-default',
    desc: 'skin_temperature, catalogue defaults: 1 sample, scale -2 (hundredths of a degree Celsius)',
    key: DEV_A,
    sensor: 'skin_temperature',
    seq: 3n,
    samples: [3352],
  },
  {
    name: 'respiration-rate-default',
    desc: 'respiration_rate, catalogue defaults: 1 sample, scale -1',
    key: DEV_A,
    sensor: 'respiration_rate',
    seq: 4n,
    samples: [162],
  },
  {
    name: 'accelerometer-default',
    desc: 'accelerometer, catalogue defaults: 25 samples of 3 channels (x y z interleaved), 40 ms apart, scale -3, negative values',
    key: DEV_A,
    sensor: 'accelerometer',
    seq: 5n,
    samples: accelTrace(25, 5),
  },
  {
    name: 'ecg-default',
    desc: 'ecg, catalogue defaults: 250 samples 4 ms apart (one heartbeat), scale -3 (µV), negative values in the Q and S waves',
    key: DEV_A,
    sensor: 'ecg',
    seq: 6n,
    samples: ecgTrace(250, 6),
  },
  { name: 'steps-default', desc: 'steps, catalogue defaults: 1 sample per minute, scale 0', key: DEV_A, sensor: 'steps', seq: 7n, samples: [112] },
  // Physical range limits (§4): both ends are inclusive.
  {
    name: 'heart-rate-min-max',
    desc: 'heart_rate at both ends of its range: 0 and 300 beats/min',
    key: DEV_B,
    sensor: 'heart_rate',
    seq: 100n,
    samples: [0, 300],
  },
  {
    name: 'spo2-min-max',
    desc: 'spo2 at both ends of its range at scale -1: raw 0 and 1000 (0 % and 100.0 %)',
    key: DEV_B,
    sensor: 'spo2',
    seq: 101n,
    samples: [0, 1000],
  },
  {
    name: 'skin-temperature-min-max',
    desc: 'skin_temperature at both ends of its range at scale -2: raw 0 and 5000 (0 and 50.00 °C)',
    key: DEV_B,
    sensor: 'skin_temperature',
    seq: 102n,
    intervalUs: 10_000_000,
    samples: [0, 5000],
  },
  {
    name: 'respiration-rate-min-max',
    desc: 'respiration_rate at both ends of its range at scale -1: raw 0 and 1200',
    key: DEV_B,
    sensor: 'respiration_rate',
    seq: 103n,
    samples: [0, 1200],
  },
  {
    name: 'accelerometer-min-max',
    desc: 'accelerometer at both ends of its range on every channel at scale -3: ±160000 (±160 m/s²)',
    key: DEV_B,
    sensor: 'accelerometer',
    seq: 104n,
    samples: [-160000, 160000, 0, 160000, -160000, -1],
  },
  {
    name: 'ecg-min-max',
    desc: 'ecg at both ends of its range at scale -3: ±10000 (±10 mV), and ±1',
    key: DEV_B,
    sensor: 'ecg',
    seq: 105n,
    samples: [-10000, 10000, -1, 1],
  },
  { name: 'steps-min-max', desc: 'steps at both ends of its range: 0 and 1000', key: DEV_B, sensor: 'steps', seq: 106n, samples: [0, 1000] },
  {
    name: 'accelerometer-negative-samples',
    desc: "accelerometer with every sample negative (two's complement int32 big-endian)",
    key: DEV_B,
    sensor: 'accelerometer',
    seq: 107n,
    samples: [-1, -2, -9810, -256, -65536, -159999],
  },
  // Sample and scale extremes.
  {
    name: 'ecg-int32-extremes-scale-minus-9',
    desc: 'ecg at scale -9 (the smallest): every int32 is in range, including -2147483648 and 2147483647 (±2.147483648 mV)',
    key: DEV_C,
    sensor: 'ecg',
    seq: 200n,
    scale: -9,
    samples: [-2147483648, 2147483647, -1, 0, 1],
  },
  {
    name: 'heart-rate-scale-minus-9',
    desc: 'heart_rate at scale -9 (the smallest) with the largest int32: 2.147483647 beats/min',
    key: DEV_C,
    sensor: 'heart_rate',
    seq: 201n,
    scale: -9,
    samples: [0, 2147483647],
  },
  {
    name: 'heart-rate-scale-plus-2',
    desc: 'heart_rate at scale 2: raw 0 1 2 3 decode to 0 100 200 300',
    key: DEV_C,
    sensor: 'heart_rate',
    seq: 202n,
    scale: 2,
    samples: [0, 1, 2, 3],
  },
  {
    name: 'steps-scale-plus-9',
    desc: 'steps at scale 9 (the largest): only raw 0 is in range',
    key: DEV_C,
    sensor: 'steps',
    seq: 203n,
    scale: 9,
    samples: [0],
  },
  // Timing and counter extremes.
  {
    name: 'single-sample-interval-0',
    desc: 'a single-sample frame may carry interval 0 (§3.2 rule 6 only refuses interval 0 when count > 1)',
    key: DEV_C,
    sensor: 'heart_rate',
    seq: 204n,
    intervalUs: 0,
    samples: [64],
  },
  {
    name: 'interval-max-uint32',
    desc: 'interval 4294967295 µs (the largest uint32, about 71.6 minutes)',
    key: DEV_C,
    sensor: 'heart_rate',
    seq: 205n,
    intervalUs: 0xffff_ffff,
    samples: [60, 61],
  },
  {
    name: 'seq-max-uint64',
    desc: 'seq 18446744073709551615, the largest uint64 (decodes; must be printed as a decimal string, not a double)',
    key: DEV_C,
    sensor: 'heart_rate',
    seq: (1n << 64n) - 1n,
    samples: [70],
  },
  {
    name: 'timestamp-zero',
    desc: 'timestamp 0 (1970-01-01): decodes; a gateway refuses it later as CLOCK_SKEW (§5.3), not as malformed',
    key: DEV_C,
    sensor: 'heart_rate',
    seq: 206n,
    timestampMs: 0n,
    samples: [70],
  },
  {
    name: 'timestamp-max-uint64',
    desc: 'timestamp 18446744073709551615 ms: decodes; a gateway refuses it later as CLOCK_SKEW (§5.3)',
    key: DEV_C,
    sensor: 'heart_rate',
    seq: 207n,
    timestampMs: (1n << 64n) - 1n,
    samples: [70],
  },
  // Size limit (§3.1: MAX_FRAME_BYTES = 16384).
  {
    name: 'largest-ecg-4071-samples',
    desc: 'the largest single-channel frame: 4071 samples, 16381 bytes (4072 would be 16385 > 16384)',
    key: DEV_C,
    sensor: 'ecg',
    seq: 300n,
    samples: ecgTrace(4071, 300),
  },
  {
    name: 'largest-accelerometer-1357-samples',
    desc: 'the largest 3-channel frame: 1357 samples × 3 channels, 16381 bytes',
    key: DEV_C,
    sensor: 'accelerometer',
    seq: 301n,
    samples: accelTrace(1357, 301),
  },
];

function validVector(b: BuiltFrame): unknown {
  const { spec: s, sensor, fields } = b;
  const ch = sensor.channels.length;
  const values: Record<string, number[]> = {};
  sensor.channels.forEach((c, ci) => {
    values[c] = [];
    for (let i = 0; i < fields.count; i++) values[c]!.push(exactValue(fields.samples[i * ch + ci]!, fields.scale));
  });
  return {
    desc: s.desc,
    secretKey: hex(s.key.secretKey),
    publicKey: hex(s.key.publicKey),
    frame: hex(b.raw),
    signedMessage: hex(concat(FRAME_TAG, b.body)),
    expected: {
      deviceId: fields.deviceId,
      seq: fields.seq.toString(),
      timestampMs: fields.timestampMs.toString(),
      sensor: { name: sensor.name, code: sensor.code },
      scale: fields.scale,
      intervalUs: fields.intervalUs,
      count: fields.count,
      samples: [...fields.samples],
      values,
    },
  };
}

// ---------------------------------------------------------------- invalid frames

interface InvalidSpec {
  name: string;
  desc: string;
  key: TestKey;
  frame: Uint8Array;
  wantReason: FrameReason;
  stage: 'decode' | 'verify';
  /** Verifiers using the cofactored equation ([8]SB = [8]R + [8]kA) accept this signature. */
  cofactoredVerifiersAccept?: true;
}

function edit(raw: Uint8Array, f: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const b = raw.slice();
  f(new DataView(b.buffer), b);
  return b;
}

/** Changes header/sample bytes, then signs the result again so that only the named fault remains. */
function editAndResign(raw: Uint8Array, key: TestKey, f: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const body = edit(raw.subarray(0, raw.length - 64), f);
  return signed(body, key);
}

/** A signature with R = [r]B + T for a torsion point T: valid under the cofactored equation only. */
function torsionSignature(message: Uint8Array, key: TestKey, torsion: ed.Point): Uint8Array {
  const e = ed.utils.getExtendedPublicKey(key.secretKey);
  const r = modL(fromLE(sha512(concat(e.prefix, message))));
  const R = ed.Point.BASE.multiply(r).add(torsion).toBytes();
  const k = modL(fromLE(sha512(concat(R, e.pointBytes, message))));
  const S = modL(r + k * e.scalar);
  return concat(R, le32(S));
}

function buildInvalid(frames: Map<string, BuiltFrame>): InvalidSpec[] {
  const get = (n: string): BuiltFrame => {
    const f = frames.get(n);
    if (!f) throw new Error(`no valid frame ${n}`);
    return f;
  };
  const hr = get('heart-rate-default');
  const hr1 = get('single-sample-interval-0');
  const ecg = get('ecg-default');
  const acc = get('accelerometer-default');
  const big = get('largest-ecg-4071-samples');
  const A = DEV_A;
  const C = DEV_C;
  const out: InvalidSpec[] = [];
  const dec = (name: string, desc: string, key: TestKey, frame: Uint8Array, wantReason: FrameReason): void => {
    out.push({ name, desc, key, frame, wantReason, stage: 'decode' });
  };
  const ver = (name: string, desc: string, key: TestKey, frame: Uint8Array, extra: Partial<InvalidSpec> = {}): void => {
    out.push({ name, desc, key, frame, wantReason: 'BAD_SIGNATURE', stage: 'verify', ...extra });
  };
  const hrBody = hr.body;
  const hrSig = hr.raw.subarray(hr.raw.length - 64);

  // §3.2 rule 1-2: length bounds.
  dec('empty', 'zero bytes', A, new Uint8Array(0), 'FRAME_TOO_SHORT');
  dec('header-only', 'the 33-byte header of heart-rate-default alone', A, hrBody.slice(0, 33), 'FRAME_TOO_SHORT');
  dec(
    'truncated-below-minimum',
    'single-sample-interval-0 without its last byte: 100 bytes, one less than the 101-byte minimum',
    C,
    hr1.raw.slice(0, 100),
    'FRAME_TOO_SHORT',
  );
  dec(
    'count-0-no-samples',
    'a header with count 0, no samples, and a signature: 97 bytes, shorter than the minimum, so FRAME_TOO_SHORT comes before BAD_SAMPLE_COUNT',
    A,
    signed(rawBody({ ...hr.fields, count: 0, samples: [] }), A),
    'FRAME_TOO_SHORT',
  );
  dec('signature-missing-short-frame', 'heart-rate-default without its signature: 53 bytes', A, hrBody.slice(), 'FRAME_TOO_SHORT');
  dec(
    'oversized-16385',
    'a self-consistent, signed ecg frame of 4072 samples: 16385 bytes, one more than MAX_FRAME_BYTES',
    C,
    signed(rawBody({ ...big.fields, count: 4072, samples: [...big.fields.samples, 0] }), C),
    'FRAME_OVERSIZED',
  );
  dec(
    'oversized-zero-padded',
    'heart-rate-default followed by zero bytes up to 16385 bytes',
    A,
    concat(hr.raw, new Uint8Array(16385 - hr.raw.length)),
    'FRAME_OVERSIZED',
  );
  // Rule 3: version.
  for (const v of [0, 2, 255])
    dec(
      `version-${v}`,
      `heart-rate-default with version byte ${v}, signed again`,
      A,
      editAndResign(hr.raw, A, (d) => d.setUint8(0, v)),
      'UNKNOWN_VERSION',
    );
  // Rule 4: sensor.
  for (const s of [0, 8, 255])
    dec(
      `sensor-${s}`,
      `heart-rate-default with sensor code ${s} (not in the catalogue), signed again`,
      A,
      editAndResign(hr.raw, A, (d) => d.setUint8(25, s)),
      'UNKNOWN_SENSOR',
    );
  // Rule 5: scale.
  for (const [n, s] of [
    ['scale-10', 10],
    ['scale-minus-10', -10],
    ['scale-127', 127],
    ['scale-minus-128', -128],
  ] as const) {
    dec(
      n,
      `heart-rate-default with scale ${s} (allowed: -9 … 9), signed again`,
      A,
      editAndResign(hr.raw, A, (d) => d.setInt8(26, s)),
      'BAD_SCALE',
    );
  }
  // Rule 6-7: count and interval.
  dec(
    'count-0',
    'heart-rate-default with count 0 but its 5 samples still present, signed again',
    A,
    editAndResign(hr.raw, A, (d) => d.setUint16(31, 0)),
    'BAD_SAMPLE_COUNT',
  );
  dec(
    'interval-0-count-2',
    'heart-rate-min-max (2 samples) with interval 0, signed again: two samples cannot share one instant',
    DEV_B,
    editAndResign(get('heart-rate-min-max').raw, DEV_B, (d) => d.setUint32(27, 0)),
    'BAD_INTERVAL',
  );
  // Rule 8: exact length.
  dec(
    'length-header-says-more',
    'heart-rate-default with count 6 while 5 samples follow, signed again',
    A,
    editAndResign(hr.raw, A, (d) => d.setUint16(31, 6)),
    'LENGTH_MISMATCH',
  );
  dec(
    'length-header-says-less',
    'heart-rate-default with count 4 while 5 samples follow, signed again',
    A,
    editAndResign(hr.raw, A, (d) => d.setUint16(31, 4)),
    'LENGTH_MISMATCH',
  );
  dec(
    'count-65535',
    'heart-rate-default with count 65535 while 5 samples follow, signed again',
    A,
    editAndResign(hr.raw, A, (d) => d.setUint16(31, 0xffff)),
    'LENGTH_MISMATCH',
  );
  dec(
    'sensor-relabelled-to-3-channels',
    'heart-rate-default relabelled as accelerometer (3 channels): 5 counts need 60 sample bytes, 20 follow',
    A,
    editAndResign(hr.raw, A, (d) => d.setUint8(25, 5)),
    'LENGTH_MISMATCH',
  );
  dec(
    'accelerometer-partial-sample',
    'accelerometer-default with one extra int32 (a sample of one channel only) before the signature, signed again',
    A,
    signed(concat(acc.body, new Uint8Array(4)), A),
    'LENGTH_MISMATCH',
  );
  dec('trailing-byte', 'heart-rate-default followed by one 0x00 byte', A, concat(hr.raw, Uint8Array.of(0)), 'LENGTH_MISMATCH');
  dec('trailing-signature', 'heart-rate-default followed by its signature a second time', A, concat(hr.raw, hrSig), 'LENGTH_MISMATCH');
  dec('truncated-signature', 'heart-rate-default without the last byte of its signature', A, hr.raw.slice(0, -1), 'LENGTH_MISMATCH');
  dec(
    'signature-missing',
    'ecg-default without its signature: long enough for the minimum, 64 bytes short of its header',
    A,
    ecg.body.slice(),
    'LENGTH_MISMATCH',
  );
  // Rule 9: seq.
  dec(
    'seq-0',
    'heart-rate-default with seq 0 (reserved), signed again',
    A,
    editAndResign(hr.raw, A, (d) => d.setBigUint64(9, 0n)),
    'BAD_SEQUENCE',
  );
  // Rule 10: physical range.
  const sample = (i: number, v: number) => (d: DataView) => d.setInt32(33 + 4 * i, v);
  dec(
    'sample-above-range',
    'heart-rate-default with sample 2 = 301 beats/min (max 300), signed again',
    A,
    editAndResign(hr.raw, A, sample(2, 301)),
    'SAMPLE_OUT_OF_RANGE',
  );
  dec(
    'sample-below-range',
    'heart-rate-default with sample 4 = -1 beats/min (min 0), signed again',
    A,
    editAndResign(hr.raw, A, sample(4, -1)),
    'SAMPLE_OUT_OF_RANGE',
  );
  dec(
    'sample-int32-min',
    'heart-rate-default with sample 0 = -2147483648, signed again',
    A,
    editAndResign(hr.raw, A, sample(0, -2147483648)),
    'SAMPLE_OUT_OF_RANGE',
  );
  dec(
    'spo2-above-100-percent',
    'spo2-default with sample 1 = 1001 at scale -1 (100.1 %), signed again',
    A,
    editAndResign(get('spo2-default').raw, A, sample(1, 1001)),
    'SAMPLE_OUT_OF_RANGE',
  );
  dec(
    'accelerometer-z-below-range',
    'accelerometer-default with channel z of sample 7 = -160001 at scale -3 (-160.001 m/s²), signed again',
    A,
    editAndResign(acc.raw, A, sample(7 * 3 + 2, -160001)),
    'SAMPLE_OUT_OF_RANGE',
  );
  dec(
    'ecg-above-range-scale-0',
    'ecg-min-max at scale 0: raw 10000 would be 10000 mV (max 10), signed again',
    DEV_B,
    editAndResign(get('ecg-min-max').raw, DEV_B, (d) => d.setInt8(26, 0)),
    'SAMPLE_OUT_OF_RANGE',
  );
  dec(
    'heart-rate-scale-plus-9-sample-1',
    'heart_rate at scale 9 with raw 1 (10^9 beats/min), signed again',
    C,
    editAndResign(get('steps-scale-plus-9').raw, C, (d) => {
      d.setUint8(25, 1);
      d.setInt32(33, 1);
    }),
    'SAMPLE_OUT_OF_RANGE',
  );
  dec(
    'steps-scale-plus-3-sample-2',
    'steps at scale 3 with raw 2 (2000 steps, max 1000), signed again',
    C,
    editAndResign(get('steps-scale-plus-9').raw, C, (d) => {
      d.setInt8(26, 3);
      d.setInt32(33, 2);
    }),
    'SAMPLE_OUT_OF_RANGE',
  );
  // Several faults at once: the first rule of §3.2 that the bytes break decides the reason.
  dec(
    'oversized-and-version-2',
    'oversized-zero-padded with version 2 as well: rule 1 (size) comes first',
    A,
    edit(concat(hr.raw, new Uint8Array(16385 - hr.raw.length)), (d) => d.setUint8(0, 2)),
    'FRAME_OVERSIZED',
  );
  dec(
    'too-short-and-version-2',
    'truncated-below-minimum with version 2 as well: rule 2 (minimum size) comes first',
    C,
    edit(hr1.raw.slice(0, 100), (d) => d.setUint8(0, 2)),
    'FRAME_TOO_SHORT',
  );
  dec(
    'version-2-and-sensor-0',
    'version 2 and sensor 0: rule 3 (version) comes first',
    A,
    editAndResign(hr.raw, A, (d) => {
      d.setUint8(0, 2);
      d.setUint8(25, 0);
    }),
    'UNKNOWN_VERSION',
  );
  dec(
    'sensor-0-and-scale-10',
    'sensor 0 and scale 10: rule 4 (sensor) comes first',
    A,
    editAndResign(hr.raw, A, (d) => {
      d.setUint8(25, 0);
      d.setInt8(26, 10);
    }),
    'UNKNOWN_SENSOR',
  );
  dec(
    'scale-10-and-count-0',
    'scale 10 and count 0: rule 5 (scale) comes first',
    A,
    editAndResign(hr.raw, A, (d) => {
      d.setInt8(26, 10);
      d.setUint16(31, 0);
    }),
    'BAD_SCALE',
  );
  dec(
    'count-0-and-seq-0',
    'count 0 and seq 0: rule 6 (count) comes first',
    A,
    editAndResign(hr.raw, A, (d) => {
      d.setUint16(31, 0);
      d.setBigUint64(9, 0n);
    }),
    'BAD_SAMPLE_COUNT',
  );
  dec(
    'interval-0-count-2-and-trailing-byte',
    'interval-0-count-2 followed by one byte: rule 7 (interval) comes before rule 8 (length)',
    DEV_B,
    concat(
      editAndResign(get('heart-rate-min-max').raw, DEV_B, (d) => d.setUint32(27, 0)),
      Uint8Array.of(0),
    ),
    'BAD_INTERVAL',
  );
  dec(
    'trailing-byte-and-seq-0',
    'seq-0 followed by one byte: rule 8 (length) comes before rule 9 (seq)',
    A,
    concat(
      editAndResign(hr.raw, A, (d) => d.setBigUint64(9, 0n)),
      Uint8Array.of(0),
    ),
    'LENGTH_MISMATCH',
  );
  dec(
    'seq-0-and-sample-above-range',
    'seq 0 and a sample of 301: rule 9 (seq) comes before rule 10 (range)',
    A,
    editAndResign(hr.raw, A, (d) => {
      d.setBigUint64(9, 0n);
      d.setInt32(33, 301);
    }),
    'BAD_SEQUENCE',
  );

  // §5: frames that decode but whose signature must not verify.
  const flip = (off: number, bit: number) => (_d: DataView, b: Uint8Array) => {
    b[off] = b[off]! ^ (1 << bit);
  };
  const sigAt = hrBody.length;
  ver('signature-bit-flip', 'heart-rate-default with bit 0 of signature byte 0 (in R) flipped', A, edit(hr.raw, flip(sigAt, 0)));
  ver('signature-s-bit-flip', 'heart-rate-default with bit 0 of signature byte 32 (in S) flipped', A, edit(hr.raw, flip(sigAt + 32, 0)));
  ver('signature-zero', 'heart-rate-default with an all-zero signature', A, concat(hrBody, new Uint8Array(64)));
  const S = fromLE(hrSig.subarray(32));
  ver(
    'signature-s-plus-l',
    'heart-rate-default with S replaced by S + L (a malleated signature): RFC 8032 §5.1.7 requires S < L',
    A,
    concat(hrBody, hrSig.subarray(0, 32), le32(S + L)),
  );
  ver(
    'signature-r-plus-torsion',
    'heart-rate-default signed with R = [r]B + T, T a point of order 8, and S computed honestly for that R: the cofactored equation accepts it, the cofactorless one (OpenSSL, the protocol rule of §5.2) does not',
    A,
    concat(hrBody, torsionSignature(frameMessage(hrBody), A, pointOf(SMALL_ORDER_POINTS[4]!.hex))),
    { cofactoredVerifiersAccept: true },
  );
  ver(
    'sample-bit-flip-after-signing',
    'heart-rate-default with bit 0 of sample 2 flipped after signing (75 → 74: still in range)',
    A,
    edit(hr.raw, flip(33 + 4 * 2 + 3, 0)),
  );
  ver(
    'seq-changed-after-signing',
    'heart-rate-default with seq 2 written over seq 1 after signing',
    A,
    edit(hr.raw, (d) => d.setBigUint64(9, 2n)),
  );
  ver(
    'timestamp-changed-after-signing',
    'heart-rate-default with the timestamp moved 1 ms after signing',
    A,
    edit(hr.raw, (d) => d.setBigUint64(17, T0 + 1n)),
  );
  ver(
    'scale-changed-after-signing',
    'heart-rate-default with scale -1 written over scale 0 after signing (values still in range)',
    A,
    edit(hr.raw, (d) => d.setInt8(26, -1)),
  );
  ver(
    'interval-changed-after-signing',
    'heart-rate-default with interval 2 s written over 1 s after signing',
    A,
    edit(hr.raw, (d) => d.setUint32(27, 2_000_000)),
  );
  ver(
    'wrong-domain-tag',
    'heart-rate-default body signed under CONNECT_TAG instead of FRAME_TAG',
    A,
    concat(hrBody, ed.sign(concat(CONNECT_TAG, hrBody), A.secretKey)),
  );
  ver('no-domain-tag', 'heart-rate-default body signed without any domain tag', A, concat(hrBody, ed.sign(hrBody, A.secretKey)));
  ver(
    'domain-tag-without-nul',
    'heart-rate-default body signed under "VitalProof/frame/v1" without the trailing 0x00',
    A,
    concat(hrBody, ed.sign(concat(FRAME_TAG.subarray(0, FRAME_TAG.length - 1), hrBody), A.secretKey)),
  );
  ver(
    'signed-by-other-key',
    "heart-rate-default body signed with another device's key; publicKey is the enrolled key of the device the frame names",
    A,
    concat(hrBody, signBody(hrBody, OTHER.secretKey)),
  );
  ver(
    'signature-from-other-frame',
    'heart-rate-default body with the (valid) signature of spo2-default from the same device',
    A,
    concat(hrBody, get('spo2-default').raw.subarray(-64)),
  );
  return out;
}

function frameMessage(body: Uint8Array): Uint8Array {
  return concat(FRAME_TAG, body);
}

function checkInvalid(v: InvalidSpec): void {
  let decoded: ReturnType<typeof decodeFrame> | undefined;
  try {
    decoded = decodeFrame(v.frame);
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
    if (v.stage !== 'decode' || e.code !== v.wantReason)
      throw new Error(`${v.name}: decodeFrame says ${e.code}, the vector says ${v.stage} ${v.wantReason}`, { cause: e });
    return;
  }
  if (v.stage === 'decode') throw new Error(`${v.name}: decodeFrame accepted a frame the vector says is ${v.wantReason}`);
  if (opensslVerifies(v.key.publicKey, frameMessage(decoded.body), decoded.signature)) throw new Error(`${v.name}: node:crypto accepts the signature`);
  const cofactored = ed.verify(decoded.signature, frameMessage(decoded.body), v.key.publicKey, { zip215: false });
  if (cofactored !== (v.cofactoredVerifiersAccept === true)) throw new Error(`${v.name}: @noble/ed25519 (cofactored) says ${cofactored}`);
}

// ---------------------------------------------------------------- keys

interface KeyVector {
  name: string;
  desc: string;
  publicKey: string;
  wantProblem: KeyProblem | null;
  secretKey?: string;
  universalForgery?: { message: string; signature: string };
}

function buildKeys(): KeyVector[] {
  const out: KeyVector[] = [];
  for (const k of [DEV_A, DEV_B, DEV_C]) {
    out.push({
      name: `good-${k.label}`,
      desc: `an honest key from the 32-byte seed SHA-256("VitalProof test vector key: ${k.label}")`,
      publicKey: hex(k.publicKey),
      wantProblem: null,
      secretKey: hex(k.secretKey),
    });
  }
  out.push({
    name: 'good-rfc8032-test-1',
    desc: 'RFC 8032 §7.1 TEST 1 key',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    wantProblem: null,
    secretKey: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
  });
  out.push({
    name: 'good-base-point',
    desc: 'the base point B itself (prime order L); a legitimate point, though no RFC 8032 seed yields it',
    publicKey: hex(ed.Point.BASE.toBytes()),
    wantProblem: null,
  });

  for (const s of SMALL_ORDER_POINTS) {
    const p = pointOf(s.hex);
    if (orderOf(p) !== s.order) throw new Error(`small-order point ${s.name} has order ${orderOf(p)}`);
    const v: KeyVector = {
      name: `small-order-${s.name}`,
      desc: `a point of order ${s.order} (E[8], canonical encoding)`,
      publicKey: s.hex,
      wantProblem: 'SMALL_ORDER',
    };
    if (s.name === 'identity') {
      // R = identity, S = 0 satisfies [S]B = R + [k]A for every message when A is the identity.
      const message = new TextEncoder().encode('any message at all');
      const signature = concat(unhex(s.hex), new Uint8Array(32));
      if (!opensslVerifies(unhex(s.hex), message, signature)) throw new Error('expected OpenSSL to accept the identity-key forgery');
      v.desc +=
        '. node:crypto (OpenSSL 3) accepts universalForgery.signature = identity ‖ 0³² for every message under this key; that is why enrolment refuses small-order keys';
      v.universalForgery = { message: hex(message), signature: hex(signature) };
    }
    out.push(v);
  }

  // Non-canonical encodings: y ≥ p, or x = 0 with the sign bit set (RFC 8032 §5.1.3 steps 1 and 4).
  const nonCanonical: [string, string, Uint8Array][] = [
    ['non-canonical-y-p', 'y = p (≡ 0): a non-canonical encoding of an order-4 point', le32(P)],
    ['non-canonical-identity-y-p-plus-1', 'y = p + 1 (≡ 1): a non-canonical encoding of the identity. OpenSSL 3 accepts it as a key', le32(P + 1n)],
    ['non-canonical-y-p-plus-3', 'y = p + 3 (≡ 3): a non-canonical encoding of a mixed-order point', le32(P + 3n)],
    ['non-canonical-y-p-plus-18', 'y = p + 18 (≡ 18, the largest y below 2^255): a non-canonical encoding of a mixed-order point', le32(P + 18n)],
    [
      'non-canonical-identity-negative-zero',
      'y = 1 with the sign bit set although x = 0',
      edit(le32(1n), (_d, b) => {
        b[31] = b[31]! | 0x80;
      }),
    ],
    [
      'non-canonical-order-2-negative-zero',
      'y = p − 1 with the sign bit set although x = 0',
      edit(le32(P - 1n), (_d, b) => {
        b[31] = b[31]! | 0x80;
      }),
    ],
    ['non-canonical-all-ff', '32 bytes of 0xff: y = 2^255 − 1 = p + 18 with the sign bit set', unhex('ff'.repeat(32))],
  ];
  for (const [name, desc, b] of nonCanonical) out.push({ name, desc, publicKey: hex(b), wantProblem: 'NON_CANONICAL' });

  out.push({
    name: 'not-on-curve-y-2',
    desc: 'y = 2: (y² − 1)/(d·y² + 1) has no square root mod p, so no point has this y',
    publicKey: hex(le32(2n)),
    wantProblem: 'NOT_ON_CURVE',
  });
  out.push({
    name: 'not-on-curve-y-p-plus-2',
    desc: 'y = p + 2 (≡ 2): not on the curve, whatever the encoding',
    publicKey: hex(le32(P + 2n)),
    wantProblem: 'NOT_ON_CURVE',
  });

  const honest = ed.Point.fromBytes(DEV_A.publicKey, false);
  for (const t of ['order-2', 'order-4-a', 'order-8-a']) {
    const T = pointOf(SMALL_ORDER_POINTS.find((s) => s.name === t)!.hex);
    out.push({
      name: `mixed-order-plus-${t}`,
      desc: `the key of device-a plus the small-order point ${t}: on the curve, canonical, but not in the prime-order subgroup`,
      publicKey: hex(honest.add(T).toBytes()),
      wantProblem: 'MIXED_ORDER',
    });
  }

  out.push({ name: 'wrong-length-0', desc: 'no bytes', publicKey: '', wantProblem: 'WRONG_LENGTH' });
  out.push({
    name: 'wrong-length-31',
    desc: 'the key of device-a without its last byte',
    publicKey: hex(DEV_A.publicKey.subarray(0, 31)),
    wantProblem: 'WRONG_LENGTH',
  });
  out.push({
    name: 'wrong-length-33',
    desc: 'the key of device-a with a 0x00 appended',
    publicKey: hex(concat(DEV_A.publicKey, Uint8Array.of(0))),
    wantProblem: 'WRONG_LENGTH',
  });
  out.push({
    name: 'wrong-length-64-seed-and-key',
    desc: 'seed ‖ public key (the 64-byte "secret key" of NaCl/libsodium) given in place of the public key',
    publicKey: hex(concat(DEV_A.secretKey, DEV_A.publicKey)),
    wantProblem: 'WRONG_LENGTH',
  });
  return out;
}

/**
 * The enrolment rule of PROTOCOL.md §2.2, step by step, to check the key vectors against the
 * spec independently of signing.ts: length, decodes to a point (y taken mod p), canonical
 * encoding, not small order, in the prime-order subgroup.
 */
function specKeyProblem(pub: Uint8Array): KeyProblem | null {
  if (pub.length !== 32) return 'WRONG_LENGTH';
  let p: ed.Point;
  try {
    p = ed.Point.fromBytes(pub, true); // accepts y ≥ p and x = 0 with the sign bit: judged next
  } catch {
    return 'NOT_ON_CURVE';
  }
  if (hex(p.toBytes()) !== hex(pub)) return 'NON_CANONICAL';
  if (p.multiply(8n, false).is0()) return 'SMALL_ORDER';
  if (
    !p
      .multiply(L - 1n, false)
      .add(p)
      .is0()
  )
    return 'MIXED_ORDER';
  return null;
}

// ---------------------------------------------------------------- connect tokens

const NOW = 1_700_000_000_000;
const HOUR = 3_600_000;

interface ConnectVector {
  name: string;
  desc: string;
  gateway: {
    nowMs: string;
    startedAtMs: string;
    windowMs: number;
    devices: { deviceId: string; publicKey: string; revokedAtMs: string | null }[];
    usedNonces: string[];
  };
  connect: { clientId: string; username: string; password: string };
  token?: { secretKey: string; deviceId: string; clientId: string; timestampMs: string; nonce: string };
  wantReason: ConnectReason | null;
  connackReturnCode: 0 | 4 | 5;
}

const CONNACK: Record<ConnectReason, 4 | 5> = {
  CONNECT_MALFORMED: 4,
  CONNECT_BAD_SIGNATURE: 4,
  CONNECT_STALE: 4,
  CONNECT_REPLAYED: 4,
  CONNECT_UNKNOWN_DEVICE: 5,
  CONNECT_REVOKED: 5,
};

function nonceOf(label: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`VitalProof test vector nonce: ${label}`).digest().subarray(0, 16));
}

function buildConnect(): ConnectVector[] {
  const out: ConnectVector[] = [];
  interface Opts {
    key?: TestKey;
    /** Device id and client id the token is signed for. */
    signedFor?: { deviceId: string; clientId: string };
    username?: string;
    clientId?: string;
    tsMs?: number;
    startedAtMs?: number;
    enrolled?: { key: TestKey; revokedAtMs?: number }[];
    usedNonces?: Uint8Array[];
    password?: (pw: Uint8Array) => Uint8Array;
    honest?: boolean;
  }
  const add = (name: string, desc: string, want: ConnectReason | null, o: Opts = {}): void => {
    const key = o.key ?? DEV_A;
    const signedFor = o.signedFor ?? { deviceId: key.deviceId, clientId: deviceClientId(key.deviceId) };
    const ts = o.tsMs ?? NOW - 1500;
    const nonce = nonceOf(name);
    let pw = makeConnectPassword(signedFor.deviceId, signedFor.clientId, key.secretKey, ts, nonce);
    if (o.password) pw = o.password(pw);
    const enrolled = o.enrolled ?? [{ key: DEV_A }, { key: DEV_B }];
    const v: ConnectVector = {
      name,
      desc,
      gateway: {
        nowMs: String(NOW),
        startedAtMs: String(o.startedAtMs ?? NOW - HOUR),
        windowMs: 30_000,
        devices: enrolled.map((e) => ({
          deviceId: e.key.deviceId,
          publicKey: hex(e.key.publicKey),
          revokedAtMs: e.revokedAtMs === undefined ? null : String(e.revokedAtMs),
        })),
        usedNonces: (o.usedNonces ?? []).map(hex),
      },
      connect: { clientId: o.clientId ?? signedFor.clientId, username: o.username ?? signedFor.deviceId, password: hex(pw) },
      wantReason: want,
      connackReturnCode: want === null ? 0 : CONNACK[want],
    };
    if (o.honest !== false && !o.password) {
      v.token = { secretKey: hex(key.secretKey), deviceId: signedFor.deviceId, clientId: signedFor.clientId, timestampMs: String(ts), nonce: hex(nonce) };
    }
    out.push(v);
  };
  const flipBit = (i: number) => (pw: Uint8Array) =>
    edit(pw, (_d, b) => {
      b[i] = b[i]! ^ 1;
    });
  const A = DEV_A;
  const aClient = deviceClientId(A.deviceId);

  add('valid', 'an honest token made 1.5 s before the gateway clock', null);
  add('valid-window-edge-past', 'token time exactly 30 s before the gateway clock (the window is inclusive)', null, { tsMs: NOW - 30_000 });
  add('valid-window-edge-future', 'token time exactly 30 s after the gateway clock (the window is inclusive)', null, { tsMs: NOW + 30_000 });
  add('valid-at-gateway-start', 'token time equal to the instant the gateway process started (5 s ago)', null, { startedAtMs: NOW - 5000, tsMs: NOW - 5000 });
  add('valid-revocation-in-future', 'the device is revoked from 1 ms after the gateway clock: not yet in effect', null, {
    enrolled: [{ key: A, revokedAtMs: NOW + 1 }],
  });
  add('valid-second-device', 'an honest token of device-b', null, { key: DEV_B });

  add('username-uppercase', 'username is the device id in upper-case hex', 'CONNECT_MALFORMED', { username: A.deviceId.toUpperCase() });
  add('username-15-digits', 'username is the device id without its last digit', 'CONNECT_MALFORMED', { username: A.deviceId.slice(0, 15) });
  add('username-empty', 'empty username', 'CONNECT_MALFORMED', { username: '' });
  add('password-87-bytes', 'the password without its last byte', 'CONNECT_MALFORMED', { password: (pw) => pw.slice(0, 87) });
  add('password-89-bytes', 'the password with one byte appended', 'CONNECT_MALFORMED', { password: (pw) => concat(pw, Uint8Array.of(0)) });
  add('password-empty', 'an empty password', 'CONNECT_MALFORMED', { password: () => new Uint8Array(0) });
  add('client-id-not-device-client-id', 'client id "wearable-1" instead of "vp-dev-<device id>" (the token is signed for "wearable-1")', 'CONNECT_MALFORMED', {
    signedFor: { deviceId: A.deviceId, clientId: 'wearable-1' },
  });

  add('unknown-device', 'an honest token of a device that is not enrolled', 'CONNECT_UNKNOWN_DEVICE', { key: OTHER });
  add('revoked-device', 'device-a was revoked an hour ago', 'CONNECT_REVOKED', { enrolled: [{ key: A, revokedAtMs: NOW - HOUR }] });
  add('revoked-at-now', 'device-a is revoked from exactly the gateway clock (revocation takes effect at its instant)', 'CONNECT_REVOKED', {
    enrolled: [{ key: A, revokedAtMs: NOW }],
  });

  add('signature-bit-flip', 'the token with bit 0 of its first signature byte flipped', 'CONNECT_BAD_SIGNATURE', { password: flipBit(24) });
  add('timestamp-changed', 'the token with its timestamp changed by 1 ms after signing', 'CONNECT_BAD_SIGNATURE', {
    password: (pw) => edit(pw, (d) => d.setBigUint64(0, BigInt(NOW - 1499))),
  });
  add('nonce-changed', 'the token with bit 0 of its nonce flipped after signing', 'CONNECT_BAD_SIGNATURE', { password: flipBit(8) });
  add('signed-by-other-key', "device-a's id and client id, signed with a key that is not device-a's", 'CONNECT_BAD_SIGNATURE', {
    key: OTHER,
    signedFor: { deviceId: A.deviceId, clientId: aClient },
    honest: false,
  });
  add('token-of-other-device', "device-a's honest token presented as device-b (username and client id of device-b)", 'CONNECT_BAD_SIGNATURE', {
    username: DEV_B.deviceId,
    clientId: deviceClientId(DEV_B.deviceId),
    honest: false,
  });
  add('signed-for-other-client-id', 'device-a signed the token for client id "vp-dev-<id>-2" but connects as "vp-dev-<id>"', 'CONNECT_BAD_SIGNATURE', {
    signedFor: { deviceId: A.deviceId, clientId: `${aClient}-2` },
    clientId: aClient,
    honest: false,
  });
  out.push(wrongTagToken());

  add('stale-past', 'token time 30.001 s before the gateway clock', 'CONNECT_STALE', { tsMs: NOW - 30_001 });
  add('stale-future', 'token time 30.001 s after the gateway clock', 'CONNECT_STALE', { tsMs: NOW + 30_001 });
  add('before-gateway-start', 'token time 1 ms before the gateway process started (5 s ago): a token captured before a restart', 'CONNECT_STALE', {
    startedAtMs: NOW - 5000,
    tsMs: NOW - 5001,
  });
  add('replayed-nonce', 'an honest, fresh token whose nonce the gateway has already accepted', 'CONNECT_REPLAYED', { usedNonces: [nonceOf('replayed-nonce')] });

  // Several faults at once: the first check of §6.1 that fails decides the reason.
  add('unknown-device-and-stale', 'not enrolled and stale: the registry check comes first', 'CONNECT_UNKNOWN_DEVICE', { key: OTHER, tsMs: NOW - HOUR });
  add('revoked-and-bad-signature', 'revoked and a flipped signature bit: revocation comes first', 'CONNECT_REVOKED', {
    enrolled: [{ key: A, revokedAtMs: NOW - HOUR }],
    password: flipBit(24),
  });
  add('bad-signature-and-stale', 'stale and a flipped signature bit: the signature comes first', 'CONNECT_BAD_SIGNATURE', {
    tsMs: NOW - HOUR,
    password: flipBit(24),
  });
  add('stale-and-replayed', 'stale, with a nonce already accepted: staleness comes first', 'CONNECT_STALE', {
    tsMs: NOW - HOUR,
    usedNonces: [nonceOf('stale-and-replayed')],
  });
  return out;

  function wrongTagToken(): ConnectVector {
    // A token signed under FRAME_TAG instead of CONNECT_TAG: same layout otherwise.
    const ts = BigInt(NOW - 1500);
    const nonce = nonceOf('wrong-domain-tag');
    const cid = new TextEncoder().encode(aClient);
    const head = new Uint8Array(10);
    head.set(unhex(A.deviceId), 0);
    new DataView(head.buffer).setUint16(8, cid.length);
    const tsb = new Uint8Array(8);
    new DataView(tsb.buffer).setBigUint64(0, ts);
    const sig = ed.sign(concat(FRAME_TAG, head, cid, tsb, nonce), A.secretKey);
    return {
      name: 'wrong-domain-tag',
      desc: 'the token signature made over FRAME_TAG instead of CONNECT_TAG',
      gateway: {
        nowMs: String(NOW),
        startedAtMs: String(NOW - HOUR),
        windowMs: 30_000,
        devices: [DEV_A, DEV_B].map((k) => ({ deviceId: k.deviceId, publicKey: hex(k.publicKey), revokedAtMs: null })),
        usedNonces: [],
      },
      connect: { clientId: aClient, username: A.deviceId, password: hex(concat(tsb, nonce, sig)) },
      wantReason: 'CONNECT_BAD_SIGNATURE',
      connackReturnCode: 4,
    };
  }
}

// ---------------------------------------------------------------- assembly

/** Every vector file, keyed by its path under firmware-proto/vectors/. */
export function buildVectors(): VectorSet {
  const files: VectorSet = new Map();
  const frames = new Map<string, BuiltFrame>();
  for (const s of VALID) {
    if (frames.has(s.name)) throw new Error(`duplicate vector name ${s.name}`);
    const b = buildValid(s);
    const d = decodeFrame(b.raw); // throws if the codec refuses a valid vector
    if (d.seq !== b.fields.seq) throw new Error(`${s.name}: decoded seq differs`);
    if (!opensslVerifies(s.key.publicKey, frameMessage(b.body), d.signature)) throw new Error(`${s.name}: node:crypto refuses the signature`);
    frames.set(s.name, b);
    files.set(`frames/valid/${s.name}.json`, json(validVector(b)));
  }
  for (const sensor of SENSORS) {
    if (![...frames.values()].some((f) => f.sensor.code === sensor.code)) throw new Error(`no valid vector for sensor ${sensor.name}`);
  }
  for (const v of buildInvalid(frames)) {
    checkInvalid(v);
    const path = `frames/invalid/${v.name}.json`;
    if (files.has(path)) throw new Error(`duplicate vector name ${v.name}`);
    files.set(
      path,
      json({
        desc: v.desc,
        publicKey: hex(v.key.publicKey),
        frame: hex(v.frame),
        wantReason: v.wantReason,
        stage: v.stage,
        ...(v.cofactoredVerifiersAccept ? { cofactoredVerifiersAccept: true } : {}),
      }),
    );
  }
  for (const v of buildKeys()) {
    const problem = specKeyProblem(unhex(v.publicKey));
    if (problem !== v.wantProblem) throw new Error(`key ${v.name}: the §2.2 rule says ${problem}, the vector says ${v.wantProblem}`);
    const { name, ...rest } = v;
    const path = `keys/${name}.json`;
    if (files.has(path)) throw new Error(`duplicate vector name ${name}`);
    files.set(path, json(rest));
  }
  for (const v of buildConnect()) {
    const { name, ...rest } = v;
    const path = `connect/${name}.json`;
    if (files.has(path)) throw new Error(`duplicate vector name ${name}`);
    files.set(path, json(rest));
  }
  return files;
}

/** The folders the generator owns; README.md next to them is written by hand. */
export const VECTOR_DIRS = ['frames/valid', 'frames/invalid', 'keys', 'connect'] as const;

/** Files that differ between a vector set and a directory (missing, changed, or extra). */
export function diffVectors(files: VectorSet, outDir: string): string[] {
  return diffVectorFiles(files, outDir, VECTOR_DIRS);
}

function main(argv: string[]): number {
  return runVectorGenerator(argv, import.meta.url, {
    build: buildVectors,
    dirs: VECTOR_DIRS,
    what: 'vector',
    summary: (count) =>
      `${count('frames/valid/')} valid frames, ${count('frames/invalid/')} invalid frames, ${count('keys/')} keys, ${count('connect/')} connect tokens`,
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
