/**
 * Notification streams a simulated wearable sends besides GattDeviceSession's honest frames
 * (PROTOCOL.md §10.5, §10.6): the frame counter of a merged stream, faulty frames as their own
 * transmissions, and corrupted fragment streams that the gateway's reassembler must refuse.
 * Pure; ble-link.ts sends them.
 *
 * Every corrupted stream is built so that the reassembler counts exactly ONE rejection, under the
 * reason it names, and is left clean for the next honest frame: no partial frame in progress
 * (else that frame would add FRAGMENT_INTERRUPTED), and the counter used up exactly as the
 * reassembler uses it up (`countersUsed`, else the next frame would add FRAGMENT_COUNTER_GAP).
 * The fragments are cut at 20 bytes (ATT_MTU 23) whatever the connection's MTU, which the
 * receiver accepts (§10.1), so that every frame has enough fragments to corrupt.
 *
 * The stalled stream (stalledStream) is the exception to "one rejection within the stream": it is
 * complete in itself only together with the sender's silence after it; the receiver's timer
 * refuses it (FRAGMENT_STALLED) and the gateway disconnects.
 */
import { DEVICE_ID_BYTES, MAX_FRAME_BYTES } from '../firmware-proto/frame.js';
import { ATT_MTU_MIN, FIRST_FRAGMENT_HEADER_BYTES, FRAME_COUNTER_MODULO, fragmentCount, fragmentFrame, notificationBytes } from '../firmware-proto/fragment.js';
import type { FragmentReason } from '../firmware-proto/reasons.js';

const LAST_BIT = 0x8000;
const RETRANSMIT_BIT = 0x4000;
const COUNTER_SHIFT = 10;
const COUNTER_BITS = 0xf << COUNTER_SHIFT;

/** A stream of notifications that goes out as one unit, never interleaved with a frame. */
export interface FragmentStream {
  notifications: Uint8Array[];
  /** Frame counter values it uses up at the reassembler (§10.6 rule 5): the next frame takes counter + this. */
  countersUsed: 0 | 1;
}

/** A corrupted stream and the one rejection it causes. */
export interface BadStream extends FragmentStream {
  expected: FragmentReason;
}

/**
 * The fragment with its frame counter C (header bits 13-10) replaced. GattDeviceSession numbers
 * only the frames it hands out; a link that puts its own frames between them (faulty copies, §10.5
 * rule 3 counts every transmission) renumbers the merged stream with this.
 */
export function withCounter(fragment: Uint8Array, counter: number): Uint8Array {
  if (!Number.isInteger(counter) || counter < 0 || counter >= FRAME_COUNTER_MODULO) throw new RangeError(`frame counter must be 0 … 15, got ${counter}`);
  if (fragment.length < 2) throw new RangeError('a fragment has a 2-byte header');
  const out = fragment.slice();
  const h = (((out[0]! << 8) | out[1]!) & ~COUNTER_BITS) | (counter << COUNTER_SHIFT);
  out[0] = h >> 8;
  out[1] = h & 0xff;
  return out;
}

/**
 * A copy of a frame naming another device (device id, bytes 1-8, §3.1): over BLE the channel is
 * the connection, bound to the id the info characteristic gave (§10.7 step 5), so this is the
 * wrong_topic fault there. Its signature no longer verifies, but the gateway checks the sender
 * first (§5.3 step 2): DEVICE_MISMATCH.
 */
export function withDeviceId(raw: Uint8Array, deviceId: string): Uint8Array {
  if (!/^[0-9a-f]{16}$/.test(deviceId)) throw new TypeError(`deviceId must be 16 lowercase hex digits, got "${deviceId}"`);
  if (raw.length < 1 + DEVICE_ID_BYTES) throw new RangeError('frame too short to carry a device id');
  const out = raw.slice();
  out.set(Buffer.from(deviceId, 'hex'), 1);
  return out;
}

/** A frame as one transmission: its fragments at this MTU, first transmission (R = 0, §10.5 rule 4). */
export function frameStream(raw: Uint8Array, counter: number, mtu: number): FragmentStream {
  return { notifications: fragmentFrame(raw, { mtu, counter, retransmit: false }), countersUsed: 1 };
}

/**
 * A frame longer than MAX_FRAME_BYTES (the oversized fault) as a device would start sending it:
 * its first fragment declares the length, and the reassembler refuses it there (§10.6 rule 6),
 * before allocating anything. The rest is never sent: the gateway disconnects on the loss.
 */
export function oversizedStream(payload: Uint8Array, counter: number, mtu: number): BadStream {
  if (payload.length <= MAX_FRAME_BYTES || payload.length > 0xffff)
    throw new RangeError(`an oversized frame is ${MAX_FRAME_BYTES + 1} … 65535 bytes, got ${payload.length}`);
  const first = new Uint8Array(notificationBytes(mtu));
  const h = counter << COUNTER_SHIFT; // index 0, not last, first transmission
  first.set([h >> 8, h & 0xff, payload.length >> 8, payload.length & 0xff]);
  first.set(payload.subarray(0, first.length - FIRST_FRAGMENT_HEADER_BYTES), FIRST_FRAGMENT_HEADER_BYTES);
  return { notifications: [first], countersUsed: 1, expected: 'FRAGMENT_OVERSIZED' };
}

/**
 * The corruptions of the bad_fragment fault, each with the reassembler rule it breaks:
 * - out_of_order: fragment 2 right after fragment 0 (rule 7);
 * - too_short: a first fragment with a header and no data (rule 3; its counter is not used up,
 *   since rule 5 comes later);
 * - wrong_last: the first fragment of a multi-fragment frame flagged last (rule 6);
 * - zero_length: a first fragment declaring a frame of 0 bytes (rule 6);
 * - retransmit_flip: fragment 1 with R set while fragment 0 has it clear (rule 8).
 */
export const BAD_FRAGMENT_VARIANTS = ['out_of_order', 'too_short', 'wrong_last', 'zero_length', 'retransmit_flip'] as const;
export type BadFragmentVariant = (typeof BAD_FRAGMENT_VARIANTS)[number];

export const BAD_FRAGMENT_EXPECTED: Readonly<Record<BadFragmentVariant, FragmentReason>> = {
  out_of_order: 'FRAGMENT_OUT_OF_ORDER',
  too_short: 'FRAGMENT_TOO_SHORT',
  wrong_last: 'FRAGMENT_LENGTH_MISMATCH',
  zero_length: 'FRAGMENT_MALFORMED',
  retransmit_flip: 'FRAGMENT_MALFORMED',
};

function setBits(fragment: Uint8Array, bits: number): Uint8Array {
  const out = fragment.slice();
  out[0] = out[0]! | (bits >> 8);
  out[1] = out[1]! | (bits & 0xff);
  return out;
}

/**
 * A corrupted fragment stream made from a frame (at least 3 fragments at ATT_MTU 23, which every
 * valid frame of 101 bytes or more has).
 * @throws RangeError for a frame too short to corrupt this way.
 */
export function badFragmentStream(raw: Uint8Array, variant: BadFragmentVariant, counter: number): BadStream {
  const frags = fragmentFrame(raw, { mtu: ATT_MTU_MIN, counter, retransmit: false });
  if (frags.length < 3) throw new RangeError(`a frame of ${raw.length} bytes has too few fragments to corrupt`);
  const expected = BAD_FRAGMENT_EXPECTED[variant];
  const h = counter << COUNTER_SHIFT;
  switch (variant) {
    case 'out_of_order':
      return { notifications: [frags[0]!, frags[2]!], countersUsed: 1, expected };
    case 'too_short':
      return { notifications: [Uint8Array.of(h >> 8, h & 0xff, raw.length >> 8, raw.length & 0xff)], countersUsed: 0, expected };
    case 'wrong_last':
      return { notifications: [setBits(frags[0]!, LAST_BIT)], countersUsed: 1, expected };
    case 'zero_length':
      return { notifications: [Uint8Array.of((h | LAST_BIT) >> 8, h & 0xff, 0, 0, raw[0]!)], countersUsed: 1, expected };
    case 'retransmit_flip':
      return { notifications: [frags[0]!, setBits(frags[1]!, RETRANSMIT_BIT)], countersUsed: 1, expected };
  }
}

/** A stalled stream: the first fragments of a frame, never its last. */
export interface StalledStream extends BadStream {
  /** The ATT_MTU the fragments were cut for: the connection's, or ATT_MTU_MIN where the frame fits one notification there. */
  fragmentMtu: number;
  /** How many fragments the whole frame has at that size; `notifications` holds the first ⌊n/2⌋ (at least one). */
  fragmentsOfFrame: number;
}

/**
 * The stall fault's stream (§10.6 rule 0): the first half of a frame's fragments (at least one,
 * never the last), from a device that then goes silent. The sender must hold every further
 * notification until the central disconnects (BleLink does): the partial frame then gets no
 * fragment for longer than the gateway's `stallMs`, and its timer (`expire()`) refuses it as
 * FRAGMENT_STALLED, once; nothing else is refused, since nothing else arrives.
 *
 * The frame must take several fragments. At the connection's MTU it is cut there when it does;
 * when it fits one notification at that MTU (a 117-byte heart-rate frame at ATT_MTU 247), it is
 * cut at ATT_MTU_MIN (20-byte notifications) instead, which the receiver accepts at any MTU
 * (§10.5 rule 2: any size up to the MTU's; §10.1). Its first fragment uses counter C (rule 5).
 * @throws RangeError for a frame that fits one 20-byte notification (16 bytes or fewer: no valid frame).
 */
export function stalledStream(raw: Uint8Array, counter: number, mtu: number): StalledStream {
  const fragmentMtu = fragmentCount(raw.length, mtu) >= 2 ? mtu : ATT_MTU_MIN;
  const frags = fragmentFrame(raw, { mtu: fragmentMtu, counter, retransmit: false });
  if (frags.length < 2) throw new RangeError(`a frame of ${raw.length} bytes fits one notification: it cannot stall mid-frame`);
  const sent = Math.max(1, Math.floor(frags.length / 2));
  return { notifications: frags.slice(0, sent), countersUsed: 1, expected: 'FRAGMENT_STALLED', fragmentMtu, fragmentsOfFrame: frags.length };
}
