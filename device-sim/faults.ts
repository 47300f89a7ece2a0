/**
 * Fault injection: which faults a wearable commits, what each does to the bytes, and what
 * the gateway is expected to answer. Every injection is tallied by kind and expectation, so
 * a test can hold the tally against the gateway's counters.
 *
 * Rule: a fault never costs an honest reading. Each kind either sends a corrupted COPY of
 * the honest frame in addition to it, or is a frame with its OWN sequence number:
 *
 * | kind           | how                                            | expected at the gateway       |
 * | -------------- | ---------------------------------------------- | ----------------------------- |
 * | tamper         | copy, one sample changed by ±1 after signing    | BAD_SIGNATURE                 |
 * | bad_signature  | copy, one signature bit flipped                | BAD_SIGNATURE                 |
 * | malformed      | copy, truncated / extended / a header field bad | the decode reason (see below) |
 * | oversized      | copy padded past MAX_FRAME_BYTES               | FRAME_OVERSIZED               |
 * | wrong_topic    | copy, published on another device's topic      | DEVICE_MISMATCH               |
 * | replay         | an already acknowledged frame, sent again without DUP | REPLAY                 |
 * | skew           | own seq, timestamp 10 min ahead of the real clock | CLOCK_SKEW (and a seq gap)  |
 * | gap            | extra numbers taken from the counter           | accepted, gap in the seqs     |
 * | unknown_device | a non-enrolled device tries to connect         | CONNECT_UNKNOWN_DEVICE (rc 5) |
 * | disconnect     | socket destroyed mid-stream, then reconnect    | nothing lost                  |
 *
 * Over BLE (ble-link.ts) the same kinds apply, with these differences, plus radio kinds:
 *
 * | kind           | over BLE                                       | expected at the gateway       |
 * | -------------- | ---------------------------------------------- | ----------------------------- |
 * | oversized      | its first fragment declares > 16384 bytes      | FRAGMENT_OVERSIZED, disconnect |
 * | wrong_topic    | copy with a peer's id in its device id field   | DEVICE_MISMATCH               |
 * | unknown_device | not supported (runFleet refuses the rate)      | —                             |
 * | disconnect     | the radio drops the link at a frame boundary   | nothing lost                  |
 * | vanish         | stops advertising, leaves BlueZ's tree, returns | nothing lost                 |
 * | out_of_range   | link drops, connects fail for 1–5 s, backlog after | nothing lost              |
 * | bad_fragment   | a corrupted fragment stream (ble-streams.ts)   | its FRAGMENT_* reason, disconnect |
 * | stall          | a frame's first fragments, then silence        | FRAGMENT_STALLED (timer), disconnect |
 *
 * `stall` is a radio kind drawn from a stream of its own (SOLO_RADIO_FAULT_KINDS, below): a
 * copy of the honest frame's first fragments, at the connection's MTU or, where the frame fits
 * one notification there, at 20-byte fragments (ble-streams.ts stalledStream); then the link
 * holds every further notification until the central disconnects. The gateway's timer drops the
 * partial frame after `ble.stallMs` and disconnects; the honest frame goes on the next connection.
 *
 * Copies may share the honest frame's seq because the gateway checks structure, sender and
 * signature before the sequence (PROTOCOL.md §5.3), so the copy is refused for its own fault
 * whether it arrives before or after the honest frame, and never moves the device's state.
 * A skewed frame cannot be a copy: it is correctly signed, so under the honest frame's seq it
 * would be a second, different frame for one number (refused as REPLAY if it came second, or
 * displacing nothing only by luck of ordering). A device with a bad clock numbers its frames
 * as usual, so the skewed frame takes its own number, sent before the next honest frame; the
 * refused number then shows as a gap, which is what an audit should see.
 */
import { sensorByCode } from '../firmware-proto/catalogue.js';
import { HEADER_BYTES, MAX_FRAME_BYTES, MIN_FRAME_BYTES, SIGNATURE_BYTES } from '../firmware-proto/frame.js';
import type { ConnectReason, FragmentReason, FrameReason } from '../firmware-proto/reasons.js';
import type { Transport } from './link.js';
import type { Rng } from './rng.js';

/**
 * WARNING: the order is part of the seed contract: each frame draws once per kind, in this
 * order, whatever the rates. Never reorder it. Do not add kinds to it either: the draws come
 * from one sequential stream, so even a kind appended at the end adds a draw to every frame,
 * and from the second frame on every old seed chooses differently (only frame 1 keeps its
 * choices). A new kind gets a stream of its own (SOLO_RADIO_FAULT_KINDS).
 */
export const FAULT_KINDS = [
  'gap',
  'skew',
  'tamper',
  'bad_signature',
  'malformed',
  'oversized',
  'wrong_topic',
  'replay',
  'unknown_device',
  'disconnect',
] as const;

/**
 * Faults only a radio link commits (BLE). Appended after FAULT_KINDS, and drawn from a stream of
 * their own (FaultPlanner's `radioRng`): drawing them from the first stream would add draws to
 * every frame and move every old seed's choices. The same warning applies within this list:
 * it is closed too, for the same reason.
 */
export const RADIO_FAULT_KINDS = ['vanish', 'out_of_range', 'bad_fragment'] as const;

/**
 * Radio kinds added later, each drawn from a stream of ITS OWN (FaultPlanner's `soloRngs`; run.ts
 * seeds it as Rng.for(`fault-<kind>`, seed, device)), once per frame whatever the rates. The
 * alternatives both move old seeds: appended to RADIO_FAULT_KINDS it would add a draw to every
 * frame of the radio stream (every seed with a radio rate would choose differently from its
 * second frame on); drawn from the radio stream only while its rate is set, the other radio
 * kinds' choices would depend on its rate. Add new kinds here, at the end, with a stream each.
 */
export const SOLO_RADIO_FAULT_KINDS = ['stall'] as const;

export const ALL_FAULT_KINDS = [...FAULT_KINDS, ...RADIO_FAULT_KINDS, ...SOLO_RADIO_FAULT_KINDS] as const;
export type FaultKind = (typeof ALL_FAULT_KINDS)[number];
export type SoloRadioFaultKind = (typeof SOLO_RADIO_FAULT_KINDS)[number];
export type RadioFaultKind = (typeof RADIO_FAULT_KINDS)[number] | SoloRadioFaultKind;

/** What the gateway should make of an injection. */
export type Expectation = FrameReason | FragmentReason | ConnectReason | 'ACCEPTED_WITH_GAP' | 'NOTHING_LOST';

/**
 * The oversized fault's expectation by transport: an MQTT payload reaches the decoder
 * (PROTOCOL.md §3.2), a BLE frame is refused by the reassembler on its declared length (§10.6 rule 6).
 */
export const OVERSIZED_EXPECTED: Readonly<Record<Transport, Expectation>> = { mqtt: 'FRAME_OVERSIZED', ble: 'FRAGMENT_OVERSIZED' };

/** The stall fault's expectation: the gateway's timer drops the partial frame (PROTOCOL.md §10.6 rule 0). */
export const STALL_EXPECTED: FragmentReason = 'FRAGMENT_STALLED';

/** How long an out_of_range fault keeps a wearable unreachable, and a vanish keeps it away, by default (ms, min … max). */
export const DEFAULT_OUT_OF_RANGE_MS: readonly [number, number] = [1_000, 5_000];
export const DEFAULT_VANISH_MS: readonly [number, number] = [1_000, 5_000];

/** How far ahead of the real clock a skewed frame claims to be. */
export const SKEW_AHEAD_MS = 10 * 60_000;

export type FaultRates = Partial<Record<FaultKind, number>>;

export function isFaultKind(s: string): s is FaultKind {
  return (ALL_FAULT_KINDS as readonly string[]).includes(s);
}

export function isRadioFaultKind(k: FaultKind): k is RadioFaultKind {
  return (RADIO_FAULT_KINDS as readonly string[]).includes(k) || (SOLO_RADIO_FAULT_KINDS as readonly string[]).includes(k);
}

/**
 * Refuses rates a transport cannot carry out: the radio kinds over MQTT, and unknown_device over
 * BLE (a non-enrolled peripheral is never connected by the gateway, so no refusal comes back to
 * count; tests add a rogue peripheral instead, ble-rogue.ts).
 * @throws TypeError naming the kind.
 */
export function checkFaultsForTransport(rates: FaultRates, transport: Transport): void {
  for (const [kind, rate] of Object.entries(rates) as [FaultKind, number][]) {
    if (!(rate > 0)) continue;
    if (transport === 'mqtt' && isRadioFaultKind(kind)) throw new TypeError(`fault ${kind} needs a radio: use it with transport ble`);
    if (transport === 'ble' && kind === 'unknown_device')
      throw new TypeError('fault unknown_device is not supported over BLE: a non-enrolled peripheral is simply never connected');
  }
}

/**
 * Parses `tamper=0.01,skew=0.02`: a probability per frame for each kind.
 * @throws TypeError for an unknown kind or a rate outside [0, 1].
 */
export function parseFaultRates(spec: string): FaultRates {
  const rates: FaultRates = {};
  for (const part of spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [kind, value, ...rest] = part.split('=');
    const rate = Number(value);
    if (!kind || !isFaultKind(kind)) throw new TypeError(`unknown fault "${kind}"; known: ${ALL_FAULT_KINDS.join(', ')}`);
    if (rest.length || value === undefined || value.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw new TypeError(`fault rate for ${kind} must be a probability in [0, 1], got "${part}"`);
    }
    rates[kind] = rate;
  }
  return rates;
}

/** Decides, frame by frame, which faults to commit. */
export class FaultPlanner {
  /**
   * @param rng draws FAULT_KINDS; `radioRng` draws RADIO_FAULT_KINDS, and is needed only when one
   *   of them has a rate; `soloRngs` has one stream per SOLO_RADIO_FAULT_KINDS kind, needed only
   *   for a kind with a rate.
   * @throws TypeError for a radio kind's rate without its stream.
   */
  constructor(
    private readonly rates: FaultRates,
    private readonly rng: Rng,
    private readonly radioRng?: Rng,
    private readonly soloRngs: Partial<Record<SoloRadioFaultKind, Rng>> = {},
  ) {
    if (!radioRng && RADIO_FAULT_KINDS.some((k) => (rates[k] ?? 0) > 0)) throw new TypeError('radio fault rates need a radio Rng stream');
    for (const k of SOLO_RADIO_FAULT_KINDS) if (!soloRngs[k] && (rates[k] ?? 0) > 0) throw new TypeError(`the ${k} fault rate needs an Rng stream of its own`);
  }

  /**
   * The faults for the next frame. Draws once per kind (from each stream given) even when its
   * rate is 0, so one kind's choices do not shift when another kind's rate changes.
   */
  next(): FaultKind[] {
    const out: FaultKind[] = [];
    for (const kind of FAULT_KINDS) {
      const draw = this.rng.float();
      if (draw < (this.rates[kind] ?? 0)) out.push(kind);
    }
    if (this.radioRng) {
      for (const kind of RADIO_FAULT_KINDS) {
        const draw = this.radioRng.float();
        if (draw < (this.rates[kind] ?? 0)) out.push(kind);
      }
    }
    for (const kind of SOLO_RADIO_FAULT_KINDS) {
      const r = this.soloRngs[kind];
      if (r && r.float() < (this.rates[kind] ?? 0)) out.push(kind);
    }
    return out;
  }
}

// ---- corruptions of a signed frame (raw = body ‖ signature). Each returns a new array. ----

interface Layout {
  count: number;
  channels: number;
  lo: number;
  hi: number;
}

/** The fields a corruption needs, read from a well-formed frame this simulator signed. */
function layout(raw: Uint8Array): Layout {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const spec = sensorByCode(v.getUint8(25));
  if (!spec) throw new TypeError('layout of a frame with an unknown sensor');
  const scale = v.getInt8(26);
  return { count: v.getUint16(31), channels: spec.channels.length, lo: Math.ceil(spec.min / 10 ** scale), hi: Math.floor(spec.max / 10 ** scale) };
}

/** Changes one sample by ±1 after signing, staying inside the sensor's range so only the signature can catch it. */
export function tamperSample(raw: Uint8Array, rng: Rng): Uint8Array {
  const { count, channels, hi } = layout(raw);
  const out = raw.slice();
  const v = new DataView(out.buffer);
  const off = HEADER_BYTES + 4 * rng.int(0, count * channels - 1);
  const s = v.getInt32(off);
  v.setInt32(off, s + 1 <= hi ? s + 1 : s - 1);
  return out;
}

/** Flips one bit of the signature. */
export function flipSignatureBit(raw: Uint8Array, rng: Rng): Uint8Array {
  const out = raw.slice();
  const bit = rng.int(0, SIGNATURE_BYTES * 8 - 1);
  const i = raw.length - SIGNATURE_BYTES + (bit >> 3);
  out[i] = out[i]! ^ (1 << (bit & 7));
  return out;
}

/** Pads a frame past the size limit; the receiver must refuse it before reading it. */
export function oversize(raw: Uint8Array, rng: Rng): Uint8Array {
  const out = new Uint8Array(MAX_FRAME_BYTES + 1 + rng.int(0, 511));
  out.set(raw);
  return out;
}

export const MALFORMATIONS = ['truncate', 'append', 'version', 'sensor', 'scale', 'count_zero', 'interval_zero', 'seq_zero', 'sample_range'] as const;
export type Malformation = (typeof MALFORMATIONS)[number];

export interface Malformed {
  bytes: Uint8Array;
  variant: Malformation;
  /** The reason a strict decoder gives (PROTOCOL.md §3.2: the first rule the bytes break). */
  expected: FrameReason;
}

/**
 * A structurally broken copy of a frame: one variant, chosen by `rng` among those that
 * apply to this frame (a zero interval is legal for a single sample).
 */
export function malform(raw: Uint8Array, rng: Rng): Malformed {
  const { count, channels } = layout(raw);
  const variants = MALFORMATIONS.filter((m) => m !== 'interval_zero' || count > 1);
  const variant = rng.pick(variants);
  const sized = (bytes: Uint8Array): Malformed => ({
    bytes,
    variant,
    expected: bytes.length > MAX_FRAME_BYTES ? 'FRAME_OVERSIZED' : bytes.length < MIN_FRAME_BYTES ? 'FRAME_TOO_SHORT' : 'LENGTH_MISMATCH',
  });
  switch (variant) {
    case 'truncate':
      return sized(raw.slice(0, raw.length - rng.int(1, 64)));
    case 'append': {
      const out = new Uint8Array(raw.length + rng.int(1, 64));
      out.set(raw);
      for (let i = raw.length; i < out.length; i++) out[i] = rng.int(0, 255);
      return sized(out);
    }
    default: {
      const out = raw.slice();
      const v = new DataView(out.buffer);
      const expected = rewriteField(v, variant, rng, count * channels);
      return { bytes: out, variant, expected };
    }
  }
}

function rewriteField(v: DataView, variant: Exclude<Malformation, 'truncate' | 'append'>, rng: Rng, samples: number): FrameReason {
  switch (variant) {
    case 'version':
      v.setUint8(0, rng.pick([0, 2, 0xff]));
      return 'UNKNOWN_VERSION';
    case 'sensor':
      v.setUint8(25, rng.pick([0, 0x63, 0xff]));
      return 'UNKNOWN_SENSOR';
    case 'scale':
      v.setInt8(26, rng.pick([10, -10, 127, -128]));
      return 'BAD_SCALE';
    case 'count_zero':
      v.setUint16(31, 0);
      return 'BAD_SAMPLE_COUNT';
    case 'interval_zero':
      v.setUint32(27, 0);
      return 'BAD_INTERVAL';
    case 'seq_zero':
      v.setBigUint64(9, 0n);
      return 'BAD_SEQUENCE';
    case 'sample_range':
      v.setInt32(HEADER_BYTES + 4 * rng.int(0, samples - 1), rng.pick([0x7fff_ffff, -0x8000_0000]));
      return 'SAMPLE_OUT_OF_RANGE';
  }
}
