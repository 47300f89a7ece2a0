/**
 * What the gateway remembers per device to judge freshness (PROTOCOL.md §5.3): the highest
 * accepted sequence number, the end time of the last accepted frame per sensor, and the
 * hashes of the most recent frames (to recognise an honest retransmission).
 *
 * The same `apply` builds the live view (at acceptance) and the checkpoint view (as frames
 * are drained), so a restart rebuilds exactly the durable state: checkpoint + spool tail.
 */
import type { Frame } from '../../firmware-proto/frame.js';
import { frameEndMs } from '../../firmware-proto/frame.js';

/** How many recent frames per device are remembered for duplicate detection. */
export const DEDUP_WINDOW = 256;
/**
 * How many of them the checkpoint keeps, so that an honest resend after a restart (its
 * acknowledgement was lost with the process) is still a duplicate, not a REPLAY. A device
 * resends only what was not acknowledged (PROTOCOL.md §8.2): the newest frames, at most its
 * in-flight window (the simulator's default is 32).
 */
export const CHECKPOINT_RECENT = 32;

export interface DeviceState {
  highestSeq: bigint;
  /** sensor code → end time (ms) of the last accepted frame of that sensor */
  lastEndMs: Map<number, bigint>;
  /** seq → sha256 hex, the last DEDUP_WINDOW accepted frames */
  recent: Map<bigint, string>;
}

export interface Checkpoint {
  version: 1;
  lsn: string;
  /** `recent`: seq → sha256 hex of the newest CHECKPOINT_RECENT frames (absent in checkpoints written before it existed). */
  devices: Record<string, { highestSeq: string; lastEndMs: Record<string, string>; recent?: Record<string, string> }>;
}

export class DeviceStates {
  private readonly states = new Map<string, DeviceState>();

  get(deviceId: string): DeviceState | undefined {
    return this.states.get(deviceId);
  }

  /** Records an accepted frame. Returns how many sequence numbers it skipped (0 when none). */
  apply(frame: Frame, sha256: string): bigint {
    let s = this.states.get(frame.deviceId);
    if (!s) {
      s = { highestSeq: 0n, lastEndMs: new Map(), recent: new Map() };
      this.states.set(frame.deviceId, s);
    }
    const gap = frame.seq > s.highestSeq + 1n && s.highestSeq > 0n ? frame.seq - s.highestSeq - 1n : 0n;
    if (frame.seq > s.highestSeq) s.highestSeq = frame.seq;
    const end = frameEndMs(frame);
    // Monotonic: re-applying an older frame (a re-drain after a crash) never moves time back.
    if ((s.lastEndMs.get(frame.sensor) ?? -1n) < end) s.lastEndMs.set(frame.sensor, end);
    s.recent.set(frame.seq, sha256);
    if (s.recent.size > DEDUP_WINDOW) s.recent.delete(s.recent.keys().next().value as bigint);
    return gap;
  }

  /**
   * Raises what is known of a device with what the hospital's shared store knows of it
   * (gateway/ingest/handoff.ts): highestSeq and each sensor's end only go up, and hashes are
   * added, the newest DEDUP_WINDOW by seq kept (a hash already known for a seq stays). It never
   * lowers anything, so merging knowledge that is stale, or already known, changes nothing.
   * @returns whether anything was raised or added.
   */
  merge(deviceId: string, known: { highestSeq: bigint; lastEndMs: ReadonlyMap<number, bigint>; recent: ReadonlyMap<bigint, string> }): boolean {
    let s = this.states.get(deviceId);
    if (!s) {
      s = { highestSeq: 0n, lastEndMs: new Map(), recent: new Map() };
      this.states.set(deviceId, s);
    }
    let changed = false;
    if (known.highestSeq > s.highestSeq) {
      s.highestSeq = known.highestSeq;
      changed = true;
    }
    for (const [sensor, end] of known.lastEndMs) {
      if ((s.lastEndMs.get(sensor) ?? -1n) < end) {
        s.lastEndMs.set(sensor, end);
        changed = true;
      }
    }
    const added = [...known.recent].filter(([seq]) => !s.recent.has(seq));
    if (added.length) {
      // Rebuilt in seq order: `apply` evicts the first entry, which must stay the oldest.
      const all = [...s.recent, ...added].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).slice(-DEDUP_WINDOW);
      s.recent = new Map(all);
      changed = true;
    }
    return changed;
  }

  toCheckpoint(lsn: bigint): Checkpoint {
    const devices: Checkpoint['devices'] = {};
    for (const [id, s] of this.states) {
      devices[id] = {
        highestSeq: s.highestSeq.toString(),
        lastEndMs: Object.fromEntries([...s.lastEndMs].map(([k, v]) => [String(k), v.toString()])),
        recent: Object.fromEntries([...s.recent].slice(-CHECKPOINT_RECENT).map(([k, v]) => [k.toString(), v])),
      };
    }
    return { version: 1, lsn: lsn.toString(), devices };
  }

  static fromCheckpoint(c: Checkpoint | undefined): DeviceStates {
    const d = new DeviceStates();
    if (!c) return d;
    for (const [id, s] of Object.entries(c.devices)) {
      d.states.set(id, {
        highestSeq: BigInt(s.highestSeq),
        lastEndMs: new Map(Object.entries(s.lastEndMs).map(([k, v]) => [Number(k), BigInt(v)])),
        recent: new Map(Object.entries(s.recent ?? {}).map(([k, v]) => [BigInt(k), v])),
      });
    }
    return d;
  }
}
