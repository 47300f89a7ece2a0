/**
 * Token buckets: the rate limits in front of expensive work an unauthenticated party can ask for
 * (a login's secp256k1 signature recovery, docs/research-api.md "Rate limits"). A bucket holds
 * up to `burst` tokens and gains `ratePerS` per second; each unit of work takes one. Time is an
 * injected clock, so tests step it instead of sleeping.
 */

export interface BucketOptions {
  /** Tokens gained per second (> 0; fractions allowed: 0.5 is one every 2 s). */
  ratePerS: number;
  /** Tokens held at most, and at the start (a positive integer). */
  burst: number;
  now?: () => number;
}

function checked(o: BucketOptions): { ratePerS: number; burst: number; now: () => number } {
  if (!(Number.isFinite(o.ratePerS) && o.ratePerS > 0)) throw new TypeError(`ratePerS must be a positive number, got ${o.ratePerS}`);
  if (!(Number.isSafeInteger(o.burst) && o.burst >= 1)) throw new TypeError(`burst must be an integer >= 1, got ${o.burst}`);
  return { ratePerS: o.ratePerS, burst: o.burst, now: o.now ?? Date.now };
}

interface Level {
  tokens: number;
  atMs: number;
}

function refill(l: Level, ratePerS: number, burst: number, now: number): void {
  if (now > l.atMs) l.tokens = Math.min(burst, l.tokens + ((now - l.atMs) * ratePerS) / 1000);
  l.atMs = now;
}

/** One bucket (a global budget). */
export class TokenBucket {
  private readonly o: ReturnType<typeof checked>;
  private readonly level: Level;

  /** @throws TypeError for a rate or burst that is not positive. */
  constructor(opts: BucketOptions) {
    this.o = checked(opts);
    this.level = { tokens: this.o.burst, atMs: this.o.now() };
  }

  /** Takes a token: true when there was one. */
  take(): boolean {
    refill(this.level, this.o.ratePerS, this.o.burst, this.o.now());
    if (this.level.tokens < 1) return false;
    this.level.tokens -= 1;
    return true;
  }

  /** Milliseconds until the next token (0 when one is there). */
  retryAfterMs(): number {
    refill(this.level, this.o.ratePerS, this.o.burst, this.o.now());
    return this.level.tokens >= 1 ? 0 : Math.ceil(((1 - this.level.tokens) * 1000) / this.o.ratePerS);
  }
}

/**
 * One bucket per key (a source address, an account), at most `maxKeys` of them: the least
 * recently used key is forgotten first. A forgotten key starts again with a full bucket, which
 * only matters to a party that spreads over more than `maxKeys` keys at once; a global
 * TokenBucket behind this one bounds that party too. Memory: O(maxKeys).
 */
export class KeyedBuckets {
  private readonly o: ReturnType<typeof checked>;
  private readonly maxKeys: number;
  private readonly levels = new Map<string, Level>();

  /** @throws TypeError for a rate, burst or maxKeys that is not positive. */
  constructor(opts: BucketOptions & { maxKeys: number }) {
    this.o = checked(opts);
    if (!(Number.isSafeInteger(opts.maxKeys) && opts.maxKeys >= 1)) throw new TypeError(`maxKeys must be an integer >= 1, got ${opts.maxKeys}`);
    this.maxKeys = opts.maxKeys;
  }

  /** Takes a token from `key`'s bucket: true when there was one. */
  take(key: string): boolean {
    const l = this.touch(key);
    if (l.tokens < 1) return false;
    l.tokens -= 1;
    return true;
  }

  /** Milliseconds until `key` has a token again (0 when it has one). */
  retryAfterMs(key: string): number {
    const l = this.touch(key);
    return l.tokens >= 1 ? 0 : Math.ceil(((1 - l.tokens) * 1000) / this.o.ratePerS);
  }

  /** Keys remembered now (≤ maxKeys). */
  get size(): number {
    return this.levels.size;
  }

  private touch(key: string): Level {
    const now = this.o.now();
    let l = this.levels.get(key);
    if (l) {
      this.levels.delete(key); // re-inserted below: Map order is least recently used first
      refill(l, this.o.ratePerS, this.o.burst, now);
    } else {
      l = { tokens: this.o.burst, atMs: now };
      while (this.levels.size >= this.maxKeys) this.levels.delete(this.levels.keys().next().value as string);
    }
    this.levels.set(key, l);
    return l;
  }
}
