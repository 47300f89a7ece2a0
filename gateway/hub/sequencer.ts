/**
 * Per-device order and de-duplication of the frames the hub receives from every gateway's
 * uplink (docs/fleet.md, "Live streams across the fleet").
 *
 * Each gateway publishes its frames in acceptance order, but the hub hears several gateways at
 * once: when a wearable moves from gateway A to gateway B, B's first frames can arrive before
 * A's last ones (A's uplink lags, or was down), and a frame both accepted (a resend after a lost
 * acknowledgement, a BLE wearable in range of two beds) arrives twice. What the device signed
 * settles both: its sequence number orders its frames, and (device, seq) names one frame.
 *
 *   offer(f)   seq ≤ the last released seq of its device: a duplicate (or, if it was never
 *              released, late: see below), dropped and counted. seq = last + 1, or the first
 *              frame of a device with nothing held: released at once, with any held frames
 *              that now follow without a hole. Otherwise held, waiting for the missing seqs.
 *   tick(now)  a frame held for `holdMs` is released anyway, with every held frame before it,
 *              in seq order: a hole that long is a sequence number the device used for a frame
 *              no gateway accepted (PROTOCOL.md §8.1: a refused frame keeps its number), or a
 *              gateway whose uplink is down longer than the hold (its frames then arrive
 *              `late` and are dropped from the live stream; the export and the audit have them).
 *
 * So releases are in strictly increasing seq per device, each (device, seq) at most once.
 * Bounds: at most `maxHeldPerDevice` frames held per device (beyond, the oldest hole is given up
 * and released at once), at most `maxDevices` devices remembered (the least recently heard is
 * forgotten; it starts afresh if it comes back).
 */

export interface SequencedItem {
  device: string;
  seq: bigint;
}

export interface SequencerOptions<T extends SequencedItem> {
  /** Called for each frame in the order it may be delivered. Must not throw. */
  release: (item: T) => void;
  /** How long a frame waits for a missing earlier seq. Default 2,000 ms. */
  holdMs?: number;
  maxHeldPerDevice?: number;
  maxDevices?: number;
  now?: () => number;
}

export interface SequencerStats {
  released: number;
  duplicates: number;
  late: number;
  /** Holes given up after holdMs (or at the per-device bound). */
  holesSkipped: number;
  held: number;
  devices: number;
}

interface DeviceQueue<T> {
  /** Highest seq released; undefined before the first. */
  last: bigint | undefined;
  /** Held frames by seq, each with when it arrived. */
  held: Map<bigint, { item: T; atMs: number }>;
  /** Seqs of holes given up on (the newest MAX_SKIPPED): one arriving later is `late`, not a duplicate. */
  skipped: Set<bigint>;
}

const MAX_SKIPPED = 256;

export class DeviceSequencer<T extends SequencedItem> {
  private readonly devices = new Map<string, DeviceQueue<T>>();
  private readonly holdMs: number;
  private readonly maxHeld: number;
  private readonly maxDevices: number;
  private readonly now: () => number;
  private heldCount = 0;
  private readonly counts = { released: 0, duplicates: 0, late: 0, holesSkipped: 0 };

  constructor(private readonly o: SequencerOptions<T>) {
    this.holdMs = o.holdMs ?? 2000;
    this.maxHeld = o.maxHeldPerDevice ?? 256;
    this.maxDevices = o.maxDevices ?? 100_000;
    this.now = o.now ?? Date.now;
    for (const [k, v] of [
      ['holdMs', this.holdMs],
      ['maxHeldPerDevice', this.maxHeld],
      ['maxDevices', this.maxDevices],
    ] as const) {
      if (!(Number.isSafeInteger(v) && v >= (k === 'holdMs' ? 0 : 1)))
        throw new TypeError(`${k} must be a whole number${k === 'holdMs' ? ' ≥ 0' : ' ≥ 1'}, got ${v}`);
    }
  }

  /** Takes one received frame; releases what may go now. */
  offer(item: T): void {
    const q = this.queue(item.device);
    if ((q.last !== undefined && item.seq <= q.last) || q.held.has(item.seq)) {
      // Released or held already (a duplicate), or a hole given up on while this frame was on its way (late).
      if (q.skipped.delete(item.seq)) this.counts.late++;
      else this.counts.duplicates++;
      return;
    }
    if (q.held.size === 0 && (q.last === undefined || item.seq === q.last + 1n)) {
      this.emit(q, item);
      return;
    }
    q.held.set(item.seq, { item, atMs: this.now() });
    this.heldCount++;
    this.drain(q);
    if (q.held.size > this.maxHeld) this.giveUp(q, this.lowest(q));
  }

  /** Releases frames that have waited `holdMs` (and everything before them). Call on a timer. */
  tick(now = this.now()): void {
    for (const q of this.devices.values()) {
      if (q.held.size === 0) continue;
      let oldest: bigint | undefined;
      for (const [seq, h] of q.held) if (now - h.atMs >= this.holdMs && (oldest === undefined || seq > oldest)) oldest = seq;
      if (oldest !== undefined) this.giveUp(q, oldest);
    }
  }

  stats(): SequencerStats {
    return { ...this.counts, held: this.heldCount, devices: this.devices.size };
  }

  /** Releases every held frame, in order per device (at shutdown). */
  flush(): void {
    for (const q of this.devices.values()) if (q.held.size > 0) this.giveUp(q, this.highest(q));
  }

  private queue(device: string): DeviceQueue<T> {
    let q = this.devices.get(device);
    if (q) {
      // Most recently heard last: Map order is the eviction order.
      this.devices.delete(device);
      this.devices.set(device, q);
      return q;
    }
    q = { last: undefined, held: new Map(), skipped: new Set() };
    this.devices.set(device, q);
    if (this.devices.size > this.maxDevices) {
      const [oldId, old] = this.devices.entries().next().value as [string, DeviceQueue<T>];
      if (old.held.size > 0) this.giveUp(old, this.highest(old));
      this.devices.delete(oldId);
    }
    return q;
  }

  /** Releases held frames that follow the last released one without a hole. */
  private drain(q: DeviceQueue<T>): void {
    if (q.last === undefined) return;
    for (;;) {
      const next = q.held.get(q.last + 1n);
      if (!next) return;
      q.held.delete(q.last + 1n);
      this.heldCount--;
      this.emit(q, next.item);
    }
  }

  /** Gives up on every hole up to `upTo`: releases the held frames ≤ upTo in seq order, then what follows on. */
  private giveUp(q: DeviceQueue<T>, upTo: bigint): void {
    const ready = [...q.held.keys()].filter((s) => s <= upTo).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const seq of ready) {
      const h = q.held.get(seq)!;
      q.held.delete(seq);
      this.heldCount--;
      if (q.last !== undefined && seq !== q.last + 1n) {
        this.counts.holesSkipped++;
        for (let s = q.last + 1n; s < seq && s < q.last + 1n + BigInt(MAX_SKIPPED); s++) q.skipped.add(s);
        for (const old of q.skipped) {
          if (q.skipped.size <= MAX_SKIPPED) break;
          q.skipped.delete(old);
        }
      }
      this.emit(q, h.item);
    }
    this.drain(q);
  }

  private emit(q: DeviceQueue<T>, item: T): void {
    q.last = item.seq;
    this.counts.released++;
    this.o.release(item);
  }

  private lowest(q: DeviceQueue<T>): bigint {
    let m: bigint | undefined;
    for (const s of q.held.keys()) if (m === undefined || s < m) m = s;
    return m!;
  }

  private highest(q: DeviceQueue<T>): bigint {
    let m: bigint | undefined;
    for (const s of q.held.keys()) if (m === undefined || s > m) m = s;
    return m!;
  }
}
