/** A seeded PRNG for tests (mulberry32): small, fast, and the same sequence on every run. */
export interface TestRng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  pick<T>(a: readonly T[]): T;
  bool(p: number): boolean;
}

export function prng(seed: number): TestRng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return { next, int, pick: (arr) => arr[int(arr.length)]!, bool: (p) => next() < p };
}
