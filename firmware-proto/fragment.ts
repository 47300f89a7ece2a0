/**
 * Frames over BLE notifications: the fragmenter a device runs and the reassembler a gateway
 * runs, one per connection (PROTOCOL.md §10.5, §10.6). Pure and transport-independent: no
 * timers, no I/O, the clock is injected. Knows nothing of UUIDs or acknowledgements (gatt.ts).
 *
 * Every notification is one fragment: a 16-bit big-endian header word, then, on the first
 * fragment of a frame only, the frame's total length, then data.
 *
 *   bit 15      L  last fragment of its frame
 *   bit 14      R  retransmission: the frame was handed out before (MQTT's DUP, §6.3)
 *   bits 13-10  C  frame counter: 0 for the first frame of a connection, +1 mod 16 per frame sent
 *   bits 9-0    I  fragment index: 0 for the first fragment of a frame, +1 for each next one
 *
 *   I = 0:  H ‖ frame length (uint16 BE, 1 … 16384) ‖ data      4-byte header
 *   I > 0:  H ‖ data                                            2-byte header
 *
 * A fragment carries at least one data byte, and a notification at most
 * min(ATT_MTU − 3, 512) bytes (Core spec Vol 3 Part F §3.4.7.1 and §3.2.9).
 */
import { MAX_FRAME_BYTES } from './frame.js';
import type { FragmentReason } from './reasons.js';

/** Smallest ATT_MTU of an LE link, and its default until an MTU exchange (Core Vol 3 Part F §3.2.8). */
export const ATT_MTU_MIN = 23;
/** A Handle Value Notification spends 1 byte of opcode and 2 of handle: its value is at most ATT_MTU − 3 bytes. */
export const ATT_NOTIFICATION_OVERHEAD = 3;
/** No attribute value is longer than 512 bytes (Core Vol 3 Part F §3.2.9), whatever the MTU. */
export const MAX_NOTIFICATION_BYTES = 512;
export const FRAGMENT_HEADER_BYTES = 2;
/** The first fragment of a frame adds the frame length (uint16) to the header word. */
export const FIRST_FRAGMENT_HEADER_BYTES = 4;
export const FRAME_COUNTER_MODULO = 16;
export const MAX_FRAGMENT_INDEX = 0x3ff;
/**
 * A partial frame that receives no fragment for this long is dropped (FRAGMENT_STALLED).
 * WARNING: keep it well above the longest connection interval a device may use (up to 4 s,
 * Core Vol 6 Part B §4.5.1), or an honest slow link loses frames.
 */
export const DEFAULT_STALL_MS = 10_000;

const LAST_BIT = 0x8000;
const RETRANSMIT_BIT = 0x4000;
const COUNTER_SHIFT = 10;
const COUNTER_MASK = 0xf;

/**
 * Largest notification value at an ATT_MTU: min(mtu − 3, 512).
 * @throws RangeError for an MTU below 23 (no LE link has one) or above 65535.
 * @example notificationBytes(23) === 20; notificationBytes(517) === 512
 */
export function notificationBytes(mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < ATT_MTU_MIN || mtu > 0xffff) throw new RangeError(`ATT_MTU must be an integer in ${ATT_MTU_MIN} … 65535, got ${mtu}`);
  return Math.min(mtu - ATT_NOTIFICATION_OVERHEAD, MAX_NOTIFICATION_BYTES);
}

/** Number of notifications a frame of `frameLength` bytes takes at an ATT_MTU. */
export function fragmentCount(frameLength: number, mtu: number): number {
  const n = notificationBytes(mtu);
  const first = n - FIRST_FRAGMENT_HEADER_BYTES;
  return frameLength <= first ? 1 : 1 + Math.ceil((frameLength - first) / (n - FRAGMENT_HEADER_BYTES));
}

export interface FragmentHeader {
  last: boolean;
  retransmit: boolean;
  /** 0 … 15 */
  counter: number;
  /** 0 … 1023; 0 is the first fragment of a frame. */
  index: number;
  /** First fragments only: the total length of the frame. */
  frameLength?: number;
  /** 4 for a first fragment, 2 otherwise: the data starts there. */
  headerBytes: number;
}

/** The header of a notification, or undefined when it is shorter than its header. Checks nothing else. */
export function parseFragmentHeader(value: Uint8Array): FragmentHeader | undefined {
  if (value.length < FRAGMENT_HEADER_BYTES) return undefined;
  const h = (value[0]! << 8) | value[1]!;
  const index = h & MAX_FRAGMENT_INDEX;
  const base = { last: (h & LAST_BIT) !== 0, retransmit: (h & RETRANSMIT_BIT) !== 0, counter: (h >> COUNTER_SHIFT) & COUNTER_MASK, index };
  if (index !== 0) return { ...base, headerBytes: FRAGMENT_HEADER_BYTES };
  if (value.length < FIRST_FRAGMENT_HEADER_BYTES) return undefined;
  return { ...base, frameLength: (value[2]! << 8) | value[3]!, headerBytes: FIRST_FRAGMENT_HEADER_BYTES };
}

export interface FragmentOptions {
  /** The connection's ATT_MTU (23 until the MTU exchange). */
  mtu: number;
  /** The frame counter of this transmission, 0 … 15 (§10.5). */
  counter: number;
  /** True when the frame was handed out before, on this connection or an earlier one (§10.7). */
  retransmit: boolean;
}

/**
 * The notifications that carry one frame, in order, each as large as the MTU allows. Lazy, so
 * that a device holds one fragment at a time.
 * @throws RangeError for an empty frame, one over MAX_FRAME_BYTES, a counter outside 0 … 15, or a bad MTU.
 */
export function* fragments(frame: Uint8Array, o: FragmentOptions): Generator<Uint8Array, void, undefined> {
  const n = notificationBytes(o.mtu);
  if (frame.length < 1 || frame.length > MAX_FRAME_BYTES) throw new RangeError(`a frame is 1 … ${MAX_FRAME_BYTES} bytes, got ${frame.length}`);
  if (!Number.isInteger(o.counter) || o.counter < 0 || o.counter >= FRAME_COUNTER_MODULO)
    throw new RangeError(`frame counter must be 0 … 15, got ${o.counter}`);
  const flags = (o.retransmit ? RETRANSMIT_BIT : 0) | (o.counter << COUNTER_SHIFT);
  let offset = 0;
  for (let index = 0; offset < frame.length; index++) {
    const header = index === 0 ? FIRST_FRAGMENT_HEADER_BYTES : FRAGMENT_HEADER_BYTES;
    const take = Math.min(n - header, frame.length - offset);
    const last = offset + take === frame.length;
    // At 20-byte notifications a 16384-byte frame takes 911 fragments: the 10-bit index never wraps.
    const h = flags | (last ? LAST_BIT : 0) | index;
    const out = new Uint8Array(header + take);
    out[0] = h >> 8;
    out[1] = h & 0xff;
    if (index === 0) {
      out[2] = frame.length >> 8;
      out[3] = frame.length & 0xff;
    }
    out.set(frame.subarray(offset, offset + take), header);
    offset += take;
    yield out;
  }
}

/** All notifications of one frame (see `fragments`). */
export function fragmentFrame(frame: Uint8Array, o: FragmentOptions): Uint8Array[] {
  return [...fragments(frame, o)];
}

// ---------------------------------------------------------------- reassembly

/** One refusal, counted once under its reason. */
export interface FragmentRejection {
  reason: FragmentReason;
  /** What was expected and what was found. */
  detail: Readonly<Record<string, number | boolean>>;
  /** Bytes of a partial frame dropped with it; 0 when no partial frame was lost. */
  droppedBytes: number;
}

interface VerdictCommon {
  /** Everything refused during this call, in order; empty when all went well. */
  rejections: FragmentRejection[];
  /**
   * A frame was lost in transit during this call: any rejection but FRAGMENT_DUPLICATE.
   * WARNING: the gateway must then pass on no further frame of this connection (this one's
   * included), acknowledge nothing more, and disconnect; the device resends everything
   * unacknowledged on the next connection (§10.7).
   */
  lost: boolean;
}

/** What became of one notification. */
export type ReassemblyOutcome =
  | {
      status: 'frame';
      /** The exact frame bytes; decode and verify them as any frame (§3.2, §5.3). */
      frame: Uint8Array;
      /** The R flag: pass it on as the retransmission flag (MQTT's DUP). */
      retransmit: boolean;
      counter: number;
      fragments: number;
    }
  | { status: 'incomplete' }
  | { status: 'rejected'; reason: FragmentReason }
  /** A continuation fragment of a frame already refused: dropped without a count of its own. */
  | { status: 'discarded' };

export type ReassemblyVerdict = ReassemblyOutcome & VerdictCommon;

export interface ReassemblerStats {
  notifications: number;
  /** Fragments that became part of a frame in progress or completed one. */
  fragments: number;
  frames: number;
  frameBytes: number;
  /** Continuation fragments of refused frames, dropped without a count of their own. */
  discarded: number;
  rejected: Record<FragmentReason, number>;
}

export interface ReassemblerOptions {
  /** Drop a partial frame that gets no fragment for longer than this. Default DEFAULT_STALL_MS. */
  stallMs?: number;
  /** Milliseconds; default Date.now. Only differences matter. */
  now?: () => number;
}

interface PartialFrame {
  buf: Uint8Array;
  received: number;
  nextIndex: number;
  counter: number;
  retransmit: boolean;
  lastAt: number;
}

function emptyCounts(): Record<FragmentReason, number> {
  return {
    FRAGMENT_TOO_SHORT: 0,
    FRAGMENT_OVERSIZED: 0,
    FRAGMENT_MALFORMED: 0,
    FRAGMENT_OUT_OF_ORDER: 0,
    FRAGMENT_DUPLICATE: 0,
    FRAGMENT_INTERRUPTED: 0,
    FRAGMENT_LENGTH_MISMATCH: 0,
    FRAGMENT_COUNTER_GAP: 0,
    FRAGMENT_STALLED: 0,
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The gateway's reassembler for one BLE connection (PROTOCOL.md §10.6): notifications in,
 * exact frame bytes out. It never throws on what it is fed and returns a verdict instead; it
 * holds at most one partial frame (≤ MAX_FRAME_BYTES, allocated only once its declared length
 * passed the checks) and a copy of the previous notification (≤ 512 bytes). After any
 * rejection it drops the rest of the refused frame and starts again at the next first fragment.
 *
 * @example
 *   const r = new Reassembler();
 *   characteristic.on('valuechanged', (v) => {
 *     const verdict = r.push(v);
 *     if (verdict.lost) disconnect();
 *     else if (verdict.status === 'frame') ingest(verdict.frame, { retransmit: verdict.retransmit });
 *   });
 */
export class Reassembler {
  readonly stallMs: number;
  private readonly now: () => number;
  private partial: PartialFrame | undefined;
  /** Continuation fragments are dropped without a count until the next first fragment. */
  private discarding = false;
  private expectedCounter = 0;
  private previous: Uint8Array | undefined;
  private everLost = false;
  private readonly counts: ReassemblerStats = { notifications: 0, fragments: 0, frames: 0, frameBytes: 0, discarded: 0, rejected: emptyCounts() };

  constructor(o: ReassemblerOptions = {}) {
    const stallMs = o.stallMs ?? DEFAULT_STALL_MS;
    if (!(stallMs > 0)) throw new RangeError(`stallMs must be positive, got ${stallMs}`);
    this.stallMs = stallMs;
    this.now = o.now ?? Date.now;
  }

  /** Counters since the connection began (a copy). */
  get stats(): ReassemblerStats {
    return { ...this.counts, rejected: { ...this.counts.rejected } };
  }

  /** True once any frame was lost on this connection (any rejection but FRAGMENT_DUPLICATE). */
  get lost(): boolean {
    return this.everLost;
  }

  /** The frame being reassembled, if any. */
  get inProgress(): { counter: number; retransmit: boolean; frameLength: number; received: number; fragments: number } | undefined {
    const p = this.partial;
    return p && { counter: p.counter, retransmit: p.retransmit, frameLength: p.buf.length, received: p.received, fragments: p.nextIndex };
  }

  /** Bytes held: the partial frame's buffer and the copy of the previous notification. */
  get bufferedBytes(): number {
    return (this.partial?.buf.length ?? 0) + (this.previous?.length ?? 0);
  }

  /**
   * Drops the partial frame if it has waited longer than `stallMs` for its next fragment. Call
   * it from a timer; `push` applies the same rule first. A returned rejection (FRAGMENT_STALLED)
   * means a frame was lost, as a verdict's `lost` does: disconnect.
   */
  expire(): FragmentRejection | undefined {
    const p = this.partial;
    if (!p) return undefined;
    const idle = this.now() - p.lastAt;
    if (idle <= this.stallMs) return undefined;
    return this.dropPartial('FRAGMENT_STALLED', { stallMs: this.stallMs, idleMs: idle, received: p.received, frameLength: p.buf.length });
  }

  /** Takes one notification value of the frame characteristic, in the order received. Never throws. */
  push(value: Uint8Array): ReassemblyVerdict {
    this.counts.notifications++;
    const rejections: FragmentRejection[] = [];
    const stalled = this.expire();
    if (stalled) rejections.push(stalled);
    const done = (v: ReassemblyOutcome): ReassemblyVerdict => ({ ...v, rejections, lost: rejections.some((r) => r.reason !== 'FRAGMENT_DUPLICATE') });
    const refuse = (r: FragmentRejection): ReassemblyVerdict => {
      rejections.push(r);
      return done({ status: 'rejected', reason: r.reason });
    };

    // 1. Longer than any notification can be: not stored, not compared.
    if (value.length > MAX_NOTIFICATION_BYTES) {
      this.previous = undefined;
      return refuse(this.dropPartial('FRAGMENT_OVERSIZED', { maxNotificationBytes: MAX_NOTIFICATION_BYTES, got: value.length }));
    }
    // 2. The same bytes as the previous notification: a copy made on the way (BlueZ has been seen
    //    to signal one notification twice). An honest device never sends two equal notifications in
    //    a row: the index or the counter always differs. Nothing else changes.
    if (this.previous && sameBytes(value, this.previous)) {
      return refuse(this.count({ reason: 'FRAGMENT_DUPLICATE', detail: { bytes: value.length }, droppedBytes: 0 }));
    }
    this.previous = new Uint8Array(value); // a copy: a Buffer's slice() would share its memory
    // 3. A header and at least one data byte: 5 bytes for a first fragment (index 0), 3 for any other.
    const first = value.length >= FRAGMENT_HEADER_BYTES && (((value[0]! << 8) | value[1]!) & MAX_FRAGMENT_INDEX) === 0;
    const min = (first ? FIRST_FRAGMENT_HEADER_BYTES : FRAGMENT_HEADER_BYTES) + 1;
    if (value.length < min) return refuse(this.dropPartial('FRAGMENT_TOO_SHORT', { min, got: value.length }));
    const h = parseFragmentHeader(value)!;
    const data = value.subarray(h.headerBytes);
    const now = this.now();

    if (h.index === 0) {
      // 4. A first fragment ends any frame in progress.
      const p = this.partial;
      if (p) rejections.push(this.dropPartial('FRAGMENT_INTERRUPTED', { counter: p.counter, received: p.received, frameLength: p.buf.length }));
      this.discarding = false;
      // 5. The counter must follow the previous frame's: otherwise whole frames went missing.
      if (h.counter !== this.expectedCounter) {
        rejections.push(
          this.count({
            reason: 'FRAGMENT_COUNTER_GAP',
            detail: {
              expected: this.expectedCounter,
              got: h.counter,
              missing: (h.counter - this.expectedCounter + FRAME_COUNTER_MODULO) % FRAME_COUNTER_MODULO,
            },
            droppedBytes: 0,
          }),
        );
      }
      this.expectedCounter = (h.counter + 1) % FRAME_COUNTER_MODULO;
      // 6. The declared length, checked before anything is allocated for it.
      const length = h.frameLength!;
      if (length === 0) return refuse(this.dropPartial('FRAGMENT_MALFORMED', { frameLength: 0 }));
      if (length > MAX_FRAME_BYTES) return refuse(this.dropPartial('FRAGMENT_OVERSIZED', { max: MAX_FRAME_BYTES, frameLength: length }));
      if (data.length > length) return refuse(this.dropPartial('FRAGMENT_OVERSIZED', { frameLength: length, got: data.length }));
      if (h.last !== (data.length === length))
        return refuse(this.dropPartial('FRAGMENT_LENGTH_MISMATCH', { frameLength: length, got: data.length, last: h.last }));
      const buf = new Uint8Array(length);
      buf.set(data);
      this.counts.fragments++;
      if (h.last) return done(this.complete(buf, h.counter, h.retransmit, 1));
      this.partial = { buf, received: data.length, nextIndex: 1, counter: h.counter, retransmit: h.retransmit, lastAt: now };
      return done({ status: 'incomplete' });
    }

    // 7. A continuation fragment belongs to the frame in progress, as its next fragment.
    const p = this.partial;
    if (!p) {
      if (this.discarding) {
        this.counts.discarded++;
        return done({ status: 'discarded' });
      }
      // Its first fragment never came: that frame is lost, and it used up its counter.
      this.expectedCounter = (h.counter + 1) % FRAME_COUNTER_MODULO;
      return refuse(this.dropPartial('FRAGMENT_OUT_OF_ORDER', { expectedIndex: 0, gotIndex: h.index, gotCounter: h.counter }));
    }
    if (h.counter !== p.counter || h.index !== p.nextIndex) {
      if (h.counter !== p.counter) this.expectedCounter = (h.counter + 1) % FRAME_COUNTER_MODULO;
      return refuse(
        this.dropPartial('FRAGMENT_OUT_OF_ORDER', { expectedCounter: p.counter, gotCounter: h.counter, expectedIndex: p.nextIndex, gotIndex: h.index }),
      );
    }
    // 8. The retransmission flag is a property of the whole frame.
    if (h.retransmit !== p.retransmit) return refuse(this.dropPartial('FRAGMENT_MALFORMED', { expectedRetransmit: p.retransmit, gotRetransmit: h.retransmit }));
    // 9. Exactly the declared length, with the last-fragment flag on the fragment that reaches it.
    const total = p.received + data.length;
    if (total > p.buf.length) return refuse(this.dropPartial('FRAGMENT_OVERSIZED', { frameLength: p.buf.length, got: total }));
    if (h.last !== (total === p.buf.length))
      return refuse(this.dropPartial('FRAGMENT_LENGTH_MISMATCH', { frameLength: p.buf.length, got: total, last: h.last }));
    p.buf.set(data, p.received);
    p.received = total;
    p.nextIndex++;
    p.lastAt = now;
    this.counts.fragments++;
    if (!h.last) return done({ status: 'incomplete' });
    this.partial = undefined;
    return done(this.complete(p.buf, p.counter, p.retransmit, p.nextIndex));
  }

  private complete(frame: Uint8Array, counter: number, retransmit: boolean, fragments: number): ReassemblyOutcome {
    this.counts.frames++;
    this.counts.frameBytes += frame.length;
    return { status: 'frame', frame, retransmit, counter, fragments };
  }

  /** Counts a rejection; drops the partial frame with it and discards the refused frame's other fragments. */
  private dropPartial(reason: FragmentReason, detail: Record<string, number | boolean>): FragmentRejection {
    const droppedBytes = this.partial?.received ?? 0;
    this.partial = undefined;
    this.discarding = true;
    return this.count({ reason, detail, droppedBytes });
  }

  private count(r: FragmentRejection): FragmentRejection {
    this.counts.rejected[r.reason]++;
    if (r.reason !== 'FRAGMENT_DUPLICATE') this.everLost = true;
    return r;
  }
}
