/**
 * The seeded PRNG every fuzzer and seeded test draws from (mulberry32): small, fast, and the
 * same sequence for the same seed on every run and every machine, so a failing input is
 * reproduced by its seed and its index alone.
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  pick<T>(a: readonly T[]): T;
  bool(p: number): boolean;
  /** n uniform bytes. */
  bytes(n: number): Uint8Array;
}

/** @example const r = prng(42); r.int(6) + 1; // a die, the same on every run */
export function prng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const bytes = (n: number): Uint8Array => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  return { next, int, pick: (arr) => arr[int(arr.length)]!, bool: (p) => next() < p, bytes };
}

/**
 * An independent seed for one part of a run (a target, a worker): the same (seed, label)
 * always gives the same stream, and changing one target's budget leaves the others' inputs as they were.
 */
export function subSeed(seed: number, label: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return prng(h).int(2 ** 32);
}
