/**
 * Frame decoder fuzzing (PROTOCOL.md §3.2): structure-aware mutations of valid frames, a
 * slow, obviously-correct reference reading of §3.2 to judge decodeFrame against, and the
 * `frame` target of `npm run fuzz`. test/firmware-proto/frame-fuzz.test.ts and the MQTT target (which
 * mutates frames its own devices signed) draw from the same generators.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SENSORS } from '../../firmware-proto/catalogue.js';
import { decodeFrame, encodeBody, MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import { FRAME_REASONS, ProtocolError, type FrameReason } from '../../firmware-proto/reasons.js';
import type { Rng } from './fuzz-rng.js';
import { Tally, type TargetReport } from './fuzz-report.js';

/** This repository's root (package.json and firmware-proto/ side by side), from the sources (vitest) or from dist/. */
export function repoRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'firmware-proto', 'vectors'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no repository root above ${fileURLToPath(import.meta.url)}`);
  }
}

/** firmware-proto/vectors/<sub> of this repository. */
export function vectorDir(sub: string): string {
  return join(repoRoot(), 'firmware-proto', 'vectors', sub);
}

let cached: { all: Uint8Array[]; small: Uint8Array[] } | undefined;

/** The frames of firmware-proto/vectors/frames/valid/, sorted by file name; `small`: those under 2,000 bytes. */
export function validFrames(): { all: Uint8Array[]; small: Uint8Array[] } {
  if (!cached) {
    const dir = vectorDir('frames/valid');
    const all = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => new Uint8Array(Buffer.from((JSON.parse(readFileSync(join(dir, f), 'utf8')) as { frame: string }).frame, 'hex')));
    cached = { all, small: all.filter((b) => b.length < 2000) };
  }
  return cached;
}

// ---------------------------------------------------------------- the reference reading of §3.2

export type SpecVerdict =
  | { ok: false; code: FrameReason }
  | { ok: true; seq: bigint; timestampMs: bigint; sensor: number; scale: number; intervalUs: number; count: number; samples: number[] };

function be(b: Uint8Array, off: number, n: number): bigint {
  let v = 0n;
  for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(b[off + i]!);
  return v;
}

/** §3.2 step by step, with exact integer range checks: slow, and obviously what the spec says. */
export function specDecode(b: Uint8Array): SpecVerdict {
  const len = b.length;
  if (len > 16384) return { ok: false, code: 'FRAME_OVERSIZED' }; // 1
  if (len < 33 + 4 + 64) return { ok: false, code: 'FRAME_TOO_SHORT' }; // 2
  if (b[0] !== 1) return { ok: false, code: 'UNKNOWN_VERSION' }; // 3
  const sensor = SENSORS.find((s) => s.code === b[25]); // 4
  if (!sensor) return { ok: false, code: 'UNKNOWN_SENSOR' };
  const scale = b[26]! >= 128 ? b[26]! - 256 : b[26]!; // 5: int8
  if (scale < -9 || scale > 9) return { ok: false, code: 'BAD_SCALE' };
  const count = Number(be(b, 31, 2)); // 6
  if (count === 0) return { ok: false, code: 'BAD_SAMPLE_COUNT' };
  const intervalUs = Number(be(b, 27, 4)); // 7
  if (intervalUs === 0 && count > 1) return { ok: false, code: 'BAD_INTERVAL' };
  const ch = sensor.channels.length; // 8
  if (len !== 33 + 4 * count * ch + 64) return { ok: false, code: 'LENGTH_MISMATCH' };
  const seq = be(b, 9, 8); // 9
  if (seq === 0n) return { ok: false, code: 'BAD_SEQUENCE' };
  // 10: raw × 10^scale within [min, max], in exact integer arithmetic.
  const samples: number[] = [];
  for (let i = 0; i < count * ch; i++) {
    let s = be(b, 33 + 4 * i, 4);
    if (s >= 1n << 31n) s -= 1n << 32n;
    const [lhs, lo, hi] =
      scale >= 0
        ? [s * 10n ** BigInt(scale), BigInt(sensor.min), BigInt(sensor.max)]
        : [s, BigInt(sensor.min) * 10n ** BigInt(-scale), BigInt(sensor.max) * 10n ** BigInt(-scale)];
    if (lhs < lo || lhs > hi) return { ok: false, code: 'SAMPLE_OUT_OF_RANGE' };
    samples.push(Number(s));
  }
  return { ok: true, seq, timestampMs: be(b, 17, 8), sensor: sensor.code, scale, intervalUs, count, samples };
}

// ---------------------------------------------------------------- mutations

export function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
  let o = 0;
  for (const x of parts) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}

/** Samples at and around every sensor's range boundaries, and int32's. */
const INT32_EDGES = [
  -2147483648, -2147483647, -160001, -160000, -10001, -10000, -1, 0, 1, 50, 51, 100, 101, 120, 121, 300, 301, 1000, 1001, 5000, 5001, 10000, 10001, 160000,
  160001, 2147483647,
];

/**
 * One mutation of a valid frame (mostly of `small`, sometimes of any of `all`): bit flips,
 * insertions, deletions, truncations, splices, header fields at boundary values, samples at range
 * boundaries, random bytes up to beyond MAX_FRAME_BYTES, header-consistent length changes, and
 * changes of the free fields (which must still decode and round-trip).
 */
export function mutateFrame(r: Rng, bases: { all: readonly Uint8Array[]; small: readonly Uint8Array[] } = validFrames()): Uint8Array {
  const small = bases.small;
  const base = r.next() < 0.97 ? r.pick(small) : r.pick(bases.all);
  const b = base.slice();
  const v = new DataView(b.buffer);
  switch (r.int(12)) {
    case 0: {
      // flip 1-4 bits anywhere
      for (let k = 1 + r.int(4); k > 0; k--) {
        const i = r.int(b.length);
        b[i] = b[i]! ^ (1 << r.int(8));
      }
      return b;
    }
    case 1: {
      // flip a header bit
      const i = r.int(33);
      b[i] = b[i]! ^ (1 << r.int(8));
      return b;
    }
    case 2: {
      // insert 1-4 random bytes
      const at = r.int(b.length + 1);
      return cat(b.subarray(0, at), r.bytes(1 + r.int(4)), b.subarray(at));
    }
    case 3: {
      // delete 1-4 bytes
      const at = r.int(b.length);
      return cat(b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + r.int(4))));
    }
    case 4:
      // truncate
      return b.slice(0, r.int(b.length));
    case 5: {
      // splice: a prefix of one frame and a suffix of another
      const other = r.pick(small);
      return cat(b.subarray(0, r.int(b.length + 1)), other.subarray(r.int(other.length + 1)));
    }
    case 6: {
      // random bytes of a random length, up to beyond the maximum; sometimes behind a valid header
      const n = r.next() < 0.8 ? r.int(400) : r.int(MAX_FRAME_BYTES + 200);
      const out = r.bytes(n);
      if (r.next() < 0.5) out.set(b.subarray(0, Math.min(33, n)));
      return out;
    }
    case 7: {
      // a header field at a boundary value
      switch (r.int(6)) {
        case 0:
          v.setUint8(0, r.pick([0, 1, 2, 255]));
          break;
        case 1:
          v.setUint8(25, r.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 255]));
          break;
        case 2:
          v.setInt8(26, r.pick([-128, -10, -9, -3, -1, 0, 1, 2, 9, 10, 127]));
          break;
        case 3:
          v.setUint32(27, r.pick([0, 1, 999, 0xffffffff]));
          break;
        case 4: {
          const c = v.getUint16(31);
          v.setUint16(31, r.pick([0, 1, c - 1, c + 1, c * 3, Math.floor(c / 3), 0xffff]) & 0xffff);
          break;
        }
        default:
          v.setBigUint64(9, r.pick([0n, 1n, (1n << 64n) - 1n]));
      }
      return b;
    }
    case 8: {
      // a sample at a range boundary
      const n = Math.floor((b.length - 97) / 4);
      if (n > 0) v.setInt32(33 + 4 * r.int(n), r.pick(INT32_EDGES));
      return b;
    }
    case 9: {
      // append bytes, or pad to just beyond the maximum
      const extra = r.next() < 0.7 ? 1 + r.int(100) : MAX_FRAME_BYTES + 1 - b.length + r.int(100);
      return cat(b, r.bytes(Math.max(1, extra)));
    }
    case 10: {
      // a header-consistent change of length: drop or repeat whole samples and fix the count
      const ch = SENSORS.find((s) => s.code === b[25])?.channels.length ?? 1;
      const count = v.getUint16(31);
      const body = b.subarray(33, 33 + 4 * count * ch);
      const sig = b.subarray(b.length - 64);
      const keep = 1 + r.int(Math.min(count * 2, 4000 / ch));
      const samples = new Uint8Array(4 * keep * ch);
      for (let i = 0; i < keep * ch; i++) samples.set(body.subarray((4 * i) % body.length, ((4 * i) % body.length) + 4), 4 * i);
      const out = cat(b.subarray(0, 33), samples, sig);
      new DataView(out.buffer).setUint16(31, keep);
      return out;
    }
    default: {
      // timestamp, device id and interval are free fields: any value must decode and round-trip
      v.setBigUint64(17, BigInt.asUintN(64, BigInt(r.int(2 ** 32)) * BigInt(r.int(2 ** 32))));
      for (let i = 1; i < 9; i++) b[i] = r.int(256);
      v.setUint32(27, r.int(2 ** 32) || 1);
      return b;
    }
  }
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** The outcome of one input: `decoded`, or the FrameReason thrown. */
export type FrameOutcome = { ok: true; outcome: 'decoded' | FrameReason } | { ok: false; code: string; what: string };

/**
 * Judges decodeFrame on one input: it must throw nothing but a ProtocolError with a code of
 * FRAME_REASONS, agree with `specDecode`, and whatever it decodes must re-encode to exactly the
 * input body, with body ‖ signature the input (strict decoding: one byte string per frame).
 */
export function judgeDecode(m: Uint8Array): FrameOutcome {
  const spec = specDecode(m);
  let frame: ReturnType<typeof decodeFrame>;
  try {
    frame = decodeFrame(m);
  } catch (e) {
    if (!(e instanceof ProtocolError) || !(e.code in FRAME_REASONS)) return { ok: false, code: 'UNCODED_THROW', what: `threw ${String(e)}` };
    if (spec.ok || spec.code !== e.code)
      return { ok: false, code: 'REFERENCE_DISAGREES', what: `decodeFrame says ${e.code}, §3.2 says ${spec.ok ? 'valid' : spec.code}` };
    return { ok: true, outcome: e.code };
  }
  if (!spec.ok) return { ok: false, code: 'REFERENCE_DISAGREES', what: `decodeFrame accepted what §3.2 refuses as ${spec.code}` };
  if (
    frame.seq !== spec.seq ||
    frame.timestampMs !== spec.timestampMs ||
    frame.sensor !== spec.sensor ||
    frame.scale !== spec.scale ||
    frame.intervalUs !== spec.intervalUs ||
    frame.count !== spec.count ||
    [...frame.samples].join() !== spec.samples.join()
  ) {
    return { ok: false, code: 'REFERENCE_DISAGREES', what: 'decoded fields differ from the §3.2 reading' };
  }
  const body = m.subarray(0, m.length - 64);
  if (hex(encodeBody(frame)) !== hex(body)) return { ok: false, code: 'NO_ROUND_TRIP', what: 're-encoding differs from the input body' };
  if (hex(frame.body) !== hex(body) || hex(frame.signature) !== hex(m.subarray(m.length - 64)) || frame.raw.length !== m.length)
    return { ok: false, code: 'BAD_SPLIT', what: 'body/signature split is wrong' };
  return { ok: true, outcome: 'decoded' };
}

/** The `frame` target: `inputs` mutations judged by judgeDecode. */
export function fuzzFrameDecoder(inputs: number, r: Rng, seed: number): TargetReport {
  const t0 = performance.now();
  const tally = new Tally();
  let longest = 0;
  for (let n = 0; n < inputs; n++) {
    const m = mutateFrame(r);
    longest = Math.max(longest, m.length);
    tally.inputs++;
    const v = judgeDecode(m);
    if (v.ok) tally.count(v.outcome);
    else tally.fail(n, v.code, v.what, m);
  }
  tally.units['longestInputBytes'] = longest;
  return tally.report('frame', seed, performance.now() - t0);
}
