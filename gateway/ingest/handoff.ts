/**
 * Wearables that move between gateways (docs/fleet.md, "Wearables that move between
 * gateways"). Each gateway decides freshness (PROTOCOL.md §5.3) for the devices that talk to
 * it, from its own DeviceStates; a patient who moves from the emergency department to a ward
 * takes the wearable to another gateway, which has never seen it. Every gateway of a hospital
 * writes to one InfluxDB, so the gateway the device moves to reads there what the others
 * accepted (gateway/storage/history.ts) and continues from it: no false REPLAY, no
 * TIME_OVERLAP, no gap, and a frame another gateway already accepted is a duplicate.
 *
 * The pipeline asks here, inside the device's decision chain (so at most one lookup per
 * device is in flight, and the frames after it wait for it), before decide():
 *   (a) first appearance: no state for the device (none in the checkpoint, none since start);
 *   (b) a resend (flagged as one, §6.3) of a seq at or below the highest known whose hash is
 *       not known here: if the store holds exactly this frame, it was accepted elsewhere and
 *       is a duplicate (acknowledged, stored nothing, counted). Unflagged, §5.3 makes it a
 *       REPLAY whatever the store says, so no lookup is spent on it;
 *   (c) a frame that skips sequence numbers: the device may have sent them elsewhere; learning
 *       them keeps the seq-gap count hospital-wide.
 *
 * Bounds: (a) and (c) at most once per device per minIntervalMs; at most maxConcurrent
 * lookups in flight for all devices (beyond: decided locally, counted as skipped, and a
 * device met for the first time is asked about again on its next frame); each request with
 * the store's deadline (ingest.handoffTimeoutMs); none while InfluxDB is known down.
 *
 * On any failure the frame is decided on what is known here, and so (usually) accepted:
 * storage is idempotent across gateways, so the worst case is one frame stored once and
 * anchored by two gateways, which the design allows (docs/storage.md). Failures are counted.
 *
 * What is learned goes into the live DeviceStates only. The checkpoint view is built from
 * the frames this gateway drained into storage (gateway/storage/writer.ts), and must stay
 * exactly what its own spool holds; after a restart the lookup simply happens again.
 *
 * The window: a frame gateway A accepted but has not yet written to InfluxDB (its storage
 * lag, usually under 1 s) is unknown to B. If the device resends it to B in that window, B
 * accepts it too; it is stored once (the same point, schema v2) and anchored by both.
 */
import type { Frame } from '../../firmware-proto/frame.js';
import type { StoredDeviceState } from '../storage/history.js';
import type { Metrics } from '../status/metrics.js';
import type { DeviceStates } from './device-state.js';

/** The store a lookup reads (gateway/storage/history.ts FrameHistory). */
export interface DeviceHistory {
  device(deviceId: string): Promise<StoredDeviceState | undefined>;
  holds(deviceId: string, seq: bigint, timestampMs: bigint, sha256: string): Promise<boolean>;
}

export interface HandoffOptions {
  history: DeviceHistory;
  /** The live view the pipeline decides with. */
  states: DeviceStates;
  metrics: Metrics;
  /** True while InfluxDB is known down (health probe, failing writes): no lookup is tried. */
  storeDown: () => boolean;
  /** Least time between two state lookups (a, c) of one device, ms. Default 10 s. */
  minIntervalMs?: number;
  /** Lookups in flight at once, all devices together. Default 8. */
  maxConcurrent?: number;
  /** A lookup failed (its error has a code): log it. */
  onFailure?: (e: Error, deviceId: string) => void;
  now?: () => number;
}

/** What the store said about a frame before decide(): a duplicate of a frame accepted elsewhere, or go on. */
export type HandoffVerdict = 'duplicate-elsewhere' | 'decide';

/** Devices tracked at most (last lookup time, not yet learned); beyond, old lookup times are dropped and no more are marked. */
const MAX_TRACKED = 100_000;

export class Handoff {
  /** When each device's last request was made (the interval of triggers a and c). */
  private readonly lastLookupMs = new Map<string, number>();
  /** Devices met with no state whose state lookup was not made or failed: asked again on a later frame. */
  private readonly unlearned = new Set<string>();
  private inFlight = 0;
  private readonly minIntervalMs: number;
  private readonly maxConcurrent: number;
  private readonly now: () => number;

  constructor(private readonly o: HandoffOptions) {
    this.minIntervalMs = o.minIntervalMs ?? 10_000;
    this.maxConcurrent = o.maxConcurrent ?? 8;
    this.now = o.now ?? Date.now;
  }

  /**
   * Consults the store when one of the triggers (a, b, c) holds, raises the live state with
   * what it learns, and says whether the frame is a duplicate of one accepted elsewhere.
   * Call inside the device's decision chain, with an authentic frame. Never rejects.
   */
  async before(frame: Frame, sha256: string, retransmission: boolean): Promise<HandoffVerdict> {
    const { states } = this.o;
    const id = frame.deviceId;
    const state = states.get(id);
    // (a), also for a device whose first lookup was not made or failed; (c)
    const wantsState = state === undefined || this.unlearned.has(id) || (state.highestSeq > 0n && frame.seq > state.highestSeq + 1n);
    if (wantsState && this.due(id)) {
      const got = await this.lookup(id, () => this.o.history.device(id));
      if (got.answered) {
        this.unlearned.delete(id);
        if (got.value && states.merge(id, got.value)) this.o.metrics.handoff.learned++;
      } else if (state === undefined && this.unlearned.size < MAX_TRACKED) this.unlearned.add(id);
    }
    const s = states.get(id);
    if (!retransmission || !s || frame.seq > s.highestSeq || s.recent.has(frame.seq)) return 'decide';
    const held = await this.lookup(id, () => this.o.history.holds(id, frame.seq, frame.timestampMs, sha256));
    if (!held.answered || !held.value) return 'decide';
    // Known from now on: a further resend of it is recognised here without asking again.
    states.merge(id, { highestSeq: 0n, lastEndMs: new Map(), recent: new Map([[frame.seq, sha256]]) });
    this.o.metrics.handoff.duplicatesElsewhere++;
    return 'duplicate-elsewhere';
  }

  /** Whether a state lookup of this device is allowed now: none made within minIntervalMs. */
  private due(id: string): boolean {
    const last = this.lastLookupMs.get(id);
    return last === undefined || this.now() - last >= this.minIntervalMs;
  }

  /**
   * One bounded request. Not made (counted as skipped) at the cap or while the store is known
   * down; a skip does not count against the device's interval, a request made does.
   */
  private async lookup<T>(id: string, ask: () => Promise<T>): Promise<{ answered: true; value: T } | { answered: false }> {
    const h = this.o.metrics.handoff;
    if (this.inFlight >= this.maxConcurrent || this.o.storeDown()) {
      h.skipped++;
      return { answered: false };
    }
    const now = this.now();
    if (this.lastLookupMs.size >= MAX_TRACKED) {
      for (const [k, t] of this.lastLookupMs) if (now - t >= this.minIntervalMs) this.lastLookupMs.delete(k);
    }
    this.lastLookupMs.set(id, now);
    this.inFlight++;
    h.lookups++;
    try {
      return { answered: true, value: await ask() };
    } catch (e) {
      h.failures++;
      this.o.onFailure?.(e as Error, id);
      return { answered: false };
    } finally {
      this.inFlight--;
    }
  }
}
