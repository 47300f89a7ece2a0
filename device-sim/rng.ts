/**
 * Deterministic randomness for the simulator. Two kinds, for two jobs:
 *
 * - `Rng` (xoshiro128**): a sequential stream for choices made in order, such as which
 *   frame gets which fault. Same seed, same sequence of choices.
 * - `hash01` / `valueNoise`: counter-based noise, a pure function of (key, index). The
 *   physiology uses it so that a signal at time t does not depend on how the samples
 *   before t were chunked into frames, or whether they were generated at all.
 *
 * Not cryptographic: device keys come from SHA-256 (`seedBytes`), never from these.
 */
import { createHash } from 'node:crypto';

/**
 * 32 bytes from a labelled list of parts. JSON keeps the parts unambiguous
 * (["ab","c"] and ["a","bc"] differ), the label separates uses of the same seed.
 * @example seedBytes('device', '42', 0) // the key seed of device 0 in fleet seed "42"
 */
export function seedBytes(label: string, ...parts: (string | number)[]): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`VitalProof/sim/${label}/v1`).update(JSON.stringify(parts)).digest());
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** xoshiro128** (Blackman & Vigna): small, fast, and good enough for simulation choices. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** @throws TypeError when the seed has fewer than 16 bytes. */
  constructor(seed: Uint8Array) {
    if (seed.length < 16) throw new TypeError(`Rng seed needs 16 bytes, got ${seed.length}`);
    const v = new DataView(seed.buffer, seed.byteOffset, 16);
    this.s0 = v.getUint32(0);
    this.s1 = v.getUint32(4);
    this.s2 = v.getUint32(8);
    this.s3 = v.getUint32(12);
    // The all-zero state is a fixed point of xoshiro; SHA-256 output makes it practically impossible, but be sure.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 0x9e3779b9;
  }

  /** A stream for one purpose, e.g. `Rng.for('faults', seed, deviceIndex)`. */
  static for(label: string, ...parts: (string | number)[]): Rng {
    return new Rng(seedBytes(label, ...parts));
  }

  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 0x1_0000_0000;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** @throws RangeError for an empty list. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(0, items.length - 1)]!;
  }
}

/** A 32-bit key for counter-based noise streams, derived from a name and a parent key. */
export function streamKey(parent: number, name: string): number {
  let h = parent ^ 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return fmix(h >>> 0);
}

/** MurmurHash3's finaliser: every input bit affects every output bit. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Uniform in [0, 1) as a pure function of (key, index, salt). `index` may be any integer a
 * double holds exactly (sample indices since the epoch exceed 2^32).
 */
export function hash01(key: number, index: number, salt = 0): number {
  const lo = index >>> 0;
  const hi = Math.floor(index / 0x1_0000_0000) >>> 0;
  let h = fmix(key ^ Math.imul(lo, 0x9e3779b1));
  h = fmix(h ^ Math.imul(hi + 0x7f4a7c15, 0x85ebca6b));
  h = fmix(h ^ Math.imul(salt + 0x165667b1, 0xc2b2ae35));
  return h / 0x1_0000_0000;
}

/**
 * Approximately standard normal, bounded to ±2√3 (Irwin–Hall of 4 uniforms): bounded noise
 * keeps every signal provably inside its physical range.
 */
export function hashNormal(key: number, index: number): number {
  const s = hash01(key, index, 1) + hash01(key, index, 2) + hash01(key, index, 3) + hash01(key, index, 4);
  return (s - 2) * Math.sqrt(3);
}

/**
 * Smooth noise in [0, 1]: random values at knots every `periodMs`, joined by smoothstep.
 * A pure function of time, so a signal is the same however it is sampled.
 */
export function valueNoise(key: number, tMs: number, periodMs: number): number {
  const x = tMs / periodMs;
  const k = Math.floor(x);
  const f = x - k;
  const s = f * f * (3 - 2 * f);
  return hash01(key, k) * (1 - s) + hash01(key, k + 1) * s;
}

export function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}
