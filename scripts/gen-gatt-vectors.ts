/**
 * Generates the GATT test vectors (PROTOCOL.md §10.10) as JSON files under
 * firmware-proto/vectors/gatt/. Deterministic: the frames are the valid frame vectors of
 * scripts/gen-vectors.ts (fixed seeds, deterministic Ed25519), the keys its test keys, and
 * everything else is fixed here, so every run writes the same bytes.
 *
 *   npm run build && node dist/scripts/gen-gatt-vectors.js            (re)write the vector files
 *   npm run build && node dist/scripts/gen-gatt-vectors.js --check    exit 1 when the files differ
 *   npm run build && node dist/scripts/gen-gatt-vectors.js --out DIR  write under DIR instead
 *
 * Fragments are laid out here bit by bit (`specFragment`), independently of fragment.ts, and
 * the fragmenter must agree with that layout byte for byte. Every reassembly vector states its
 * expected outcome by hand, step by step; the reassembler must reach exactly that, or the
 * generator fails loudly rather than write a vector that contradicts the spec. UUIDs are
 * derived here from their label as §10.2 says and must equal the constants of gatt.ts.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { diffVectorFiles, runVectorGenerator, type VectorSet } from './lib/vector-files.js';
import { isError } from '../firmware-proto/coded-error.js';
import { decodeFrame } from '../firmware-proto/frame.js';
import { fragmentFrame, notificationBytes, Reassembler, type ReassemblyVerdict } from '../firmware-proto/fragment.js';
import {
  CONTROL_CHARACTERISTIC_UUID,
  FRAME_CHARACTERISTIC_UUID,
  GATT_BASE_UUID,
  GATT_PROFILE,
  GATT_UUID_LABEL,
  INFO_CHARACTERISTIC_UUID,
  VITALPROOF_SERVICE_UUID,
  ATT_ERROR_FOR,
  decodeControl,
  decodeInfo,
  encodeAck,
  encodeInfo,
  infoMatchesKey,
  GattValueError,
  type GattValueErrorCode,
} from '../firmware-proto/gatt.js';
import { ALL_FRAGMENT_REASONS, type FragmentReason } from '../firmware-proto/reasons.js';
import { deviceIdFromKey, keyFingerprint } from '../firmware-proto/signing.js';
import { buildVectors } from './gen-vectors.js';

/** Vector file path (relative to firmware-proto/vectors/) → file text. */
export type { VectorSet };

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

/** The MTUs every fragmentation vector is made at: the LE default, the LL default payload, and common negotiated values. */
export const GATT_MTUS = [23, 27, 185, 247, 517] as const;
/** Frames of frames/valid/ the fragmentation vectors carry: 101, 117, 397, 1097 and 16381 bytes. */
export const GATT_FRAMES = ['single-sample-interval-0', 'heart-rate-default', 'accelerometer-default', 'ecg-default', 'largest-ecg-4071-samples'] as const;
const STALL_MS = 10_000;

// ---------------------------------------------------------------- inputs from the frame vectors

interface Inputs {
  frames: Map<string, Uint8Array>;
  keys: Map<string, Uint8Array>;
}

function inputs(): Inputs {
  const base = buildVectors();
  const frames = new Map<string, Uint8Array>();
  const keys = new Map<string, Uint8Array>();
  for (const [path, text] of base) {
    const m = /^frames\/valid\/(.+)\.json$/.exec(path);
    if (m) frames.set(m[1]!, unhex((JSON.parse(text) as { frame: string }).frame));
    const k = /^keys\/good-(device-[abc])\.json$/.exec(path);
    if (k) keys.set(k[1]!, unhex((JSON.parse(text) as { publicKey: string }).publicKey));
  }
  return { frames, keys };
}

function need<T>(m: Map<string, T>, k: string): T {
  const v = m.get(k);
  if (v === undefined) throw new Error(`no input ${k}`);
  return v;
}

// ---------------------------------------------------------------- §10.5 layout, bit by bit

interface SpecFragment {
  last: boolean;
  retransmit: boolean;
  counter: number;
  index: number;
  /** Present on first fragments: the declared frame length. */
  frameLength?: number;
  data: Uint8Array;
}

/** H = L·2¹⁵ + R·2¹⁴ + C·2¹⁰ + I, big-endian; then the uint16 frame length when I = 0; then data. Validates nothing. */
function specFragment(f: SpecFragment): Uint8Array {
  const h = (f.last ? 1 << 15 : 0) + (f.retransmit ? 1 << 14 : 0) + f.counter * (1 << 10) + f.index;
  const head = f.frameLength === undefined ? [h >> 8, h & 0xff] : [h >> 8, h & 0xff, f.frameLength >> 8, f.frameLength & 0xff];
  const out = new Uint8Array(head.length + f.data.length);
  out.set(head);
  out.set(f.data, head.length);
  return out;
}

/** A frame cut into fragments whose data parts have the given sizes (the last size takes the rest). */
function specFragments(frame: Uint8Array, sizes: (i: number) => number, o: { counter: number; retransmit: boolean }): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let off = 0, i = 0; off < frame.length; i++) {
    const take = Math.min(sizes(i), frame.length - off);
    out.push(
      specFragment({
        last: off + take === frame.length,
        retransmit: o.retransmit,
        counter: o.counter,
        index: i,
        frameLength: i === 0 ? frame.length : undefined,
        data: frame.subarray(off, off + take),
      }),
    );
    off += take;
  }
  return out;
}

/** Fragments as §10.5 makes them at an MTU: data of min(MTU − 3, 512) − 4 bytes in the first, − 2 in the others. */
function specFragmentsAtMtu(frame: Uint8Array, mtu: number, counter: number, retransmit: boolean): Uint8Array[] {
  const n = Math.min(mtu - 3, 512);
  return specFragments(frame, (i) => (i === 0 ? n - 4 : n - 2), { counter, retransmit });
}

// ---------------------------------------------------------------- UUIDs (§10.2)

function specUuid(n: number): string {
  const b = createHash('sha256').update(GATT_UUID_LABEL).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  b[2] = n >> 8;
  b[3] = n & 0xff;
  const h = b.toString('hex');
  return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join('-');
}

function buildUuids(): unknown {
  const want = {
    base: GATT_BASE_UUID,
    service: VITALPROOF_SERVICE_UUID,
    frame: FRAME_CHARACTERISTIC_UUID,
    control: CONTROL_CHARACTERISTIC_UUID,
    info: INFO_CHARACTERISTIC_UUID,
  };
  const got = { base: specUuid(0), service: specUuid(1), frame: specUuid(2), control: specUuid(3), info: specUuid(4) };
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`gatt.ts UUIDs differ from the §10.2 derivation: ${JSON.stringify(got)}`);
  return {
    desc: 'the VitalProof GATT service and characteristic UUIDs (§10.2): the first 16 bytes of SHA-256(label) made an RFC 9562 version 8 UUID (byte 6 = 0x8X, byte 8 = 0b10XXXXXX), with bytes 2-3 set to n',
    label: GATT_UUID_LABEL,
    labelSha256: createHash('sha256').update(GATT_UUID_LABEL).digest('hex'),
    uuids: [
      { n: 0, name: 'base', uuid: got.base },
      { n: 1, name: 'service', uuid: got.service },
      { n: 2, name: 'frame', uuid: got.frame, flags: GATT_PROFILE.frame.flags },
      { n: 3, name: 'control', uuid: got.control, flags: GATT_PROFILE.control.flags },
      { n: 4, name: 'info', uuid: got.info, flags: GATT_PROFILE.info.flags },
    ],
  };
}

// ---------------------------------------------------------------- fragmentation vectors

interface FragmentVector {
  name: string;
  desc: string;
  frameVector: string;
  mtu: number;
  counter: number;
  retransmit: boolean;
}

function fragmentSpecs(): FragmentVector[] {
  const out: FragmentVector[] = [];
  for (const f of GATT_FRAMES) {
    for (const mtu of GATT_MTUS)
      out.push({
        name: `${f}-mtu-${mtu}`,
        desc: `frames/valid/${f} at ATT_MTU ${mtu} (notifications of at most ${Math.min(mtu - 3, 512)} bytes), the first frame of a connection`,
        frameVector: f,
        mtu,
        counter: 0,
        retransmit: false,
      });
  }
  out.push({
    name: 'heart-rate-default-mtu-23-retransmit-counter-15',
    desc: 'heart-rate-default at ATT_MTU 23 as the 16th frame of a connection (counter 15) and handed out before (R = 1)',
    frameVector: 'heart-rate-default',
    mtu: 23,
    counter: 15,
    retransmit: true,
  });
  out.push({
    name: 'accelerometer-default-mtu-185-counter-9',
    desc: 'accelerometer-default at ATT_MTU 185 with frame counter 9',
    frameVector: 'accelerometer-default',
    mtu: 185,
    counter: 9,
    retransmit: false,
  });
  out.push({
    name: 'single-sample-interval-0-mtu-108-exactly-one-fragment',
    desc: 'the 101-byte frame at ATT_MTU 108: 105-byte notifications, so the 4-byte first header and the whole frame fill exactly one',
    frameVector: 'single-sample-interval-0',
    mtu: 108,
    counter: 0,
    retransmit: false,
  });
  out.push({
    name: 'single-sample-interval-0-mtu-107-last-fragment-1-byte',
    desc: 'the 101-byte frame at ATT_MTU 107: the first fragment carries 100 bytes, the second 1',
    frameVector: 'single-sample-interval-0',
    mtu: 107,
    counter: 0,
    retransmit: false,
  });
  out.push({
    name: 'ecg-default-mtu-1024-capped-at-512',
    desc: 'ecg-default at ATT_MTU 1024: no notification value exceeds 512 bytes (the longest attribute value), whatever the MTU',
    frameVector: 'ecg-default',
    mtu: 1024,
    counter: 0,
    retransmit: false,
  });
  return out;
}

function buildFragmentVector(v: FragmentVector, frames: Map<string, Uint8Array>): unknown {
  const frame = need(frames, v.frameVector);
  const spec = specFragmentsAtMtu(frame, v.mtu, v.counter, v.retransmit);
  const codec = fragmentFrame(frame, { mtu: v.mtu, counter: v.counter, retransmit: v.retransmit });
  if (spec.length !== codec.length || spec.some((s, i) => hex(s) !== hex(codec[i]!)))
    throw new Error(`${v.name}: fragmentFrame disagrees with the §10.5 layout`);
  const limit = notificationBytes(v.mtu);
  if (spec.some((s) => s.length > limit)) throw new Error(`${v.name}: a notification is over ${limit} bytes`);
  if (spec.length - 1 > 0x3ff) throw new Error(`${v.name}: index overflow`);
  // The reassembler, at the counter the vector states, gives the frame back byte for byte.
  const r = new Reassembler({ now: () => 0 });
  for (let c = 0; c < v.counter; c++) {
    const single = r.push(specFragment({ last: true, retransmit: false, counter: c, index: 0, frameLength: 1, data: Uint8Array.of(c) }));
    if (single.status !== 'frame') throw new Error(`${v.name}: warm-up frame ${c} refused`);
  }
  let last: ReassemblyVerdict | undefined;
  for (const s of spec) last = r.push(s);
  if (last?.status !== 'frame' || hex(last.frame) !== hex(frame) || last.retransmit !== v.retransmit || r.lost)
    throw new Error(`${v.name}: the reassembler does not give the frame back`);
  decodeFrame(frame);
  return {
    desc: v.desc,
    frameVector: `frames/valid/${v.frameVector}.json`,
    frame: hex(frame),
    mtu: v.mtu,
    notificationBytes: limit,
    counter: v.counter,
    retransmit: v.retransmit,
    fragments: spec.map(hex),
  };
}

// ---------------------------------------------------------------- reassembly vectors

type Step = { atMs: number; notification: Uint8Array; expect: string } | { atMs: number; expire: true; expect: string };

interface ReassemblyVector {
  name: string;
  desc: string;
  steps: Step[];
}

interface StepWant {
  status?: 'frame' | 'incomplete' | 'rejected' | 'discarded';
  reason?: FragmentReason;
  rejections: { reason: FragmentReason; droppedBytes: number }[];
  lost?: boolean;
  frame?: string;
  retransmit?: boolean;
}

/**
 * Expectations are written as "REASON … > outcome": the rejections of the step in order, then
 * the status ('frame', 'incomplete', 'discarded', 'none' for an expire step that drops nothing);
 * a step whose last token is a reason is rejected with it. Reasons drop their FRAGMENT_ prefix,
 * and may carry ":n", the bytes of a partial frame dropped with them.
 */
function parseExpect(s: string): { status?: StepWant['status']; reason?: FragmentReason; rejections: { reason: FragmentReason; droppedBytes: number }[] } {
  const parts = s.split(' > ').map((p) => p.trim());
  const outcome = parts[parts.length - 1]!;
  const rejection = (p: string): { reason: FragmentReason; droppedBytes: number } => {
    const [r, n] = p.split(':');
    const reason = `FRAGMENT_${r}` as FragmentReason;
    if (!ALL_FRAGMENT_REASONS.includes(reason)) throw new Error(`unknown reason in expectation "${s}"`);
    return { reason, droppedBytes: n === undefined ? 0 : Number(n) };
  };
  const rejections = parts.slice(0, -1).map(rejection);
  if (['frame', 'incomplete', 'discarded'].includes(outcome)) return { status: outcome as StepWant['status'], rejections };
  if (outcome === 'none') return { rejections };
  const r = rejection(outcome);
  return { status: 'rejected', reason: r.reason, rejections: [...rejections, r] };
}

function buildReassemblyVector(v: ReassemblyVector): unknown {
  let now = 0;
  const r = new Reassembler({ stallMs: STALL_MS, now: () => now });
  const steps = v.steps.map((s, i) => {
    now = s.atMs;
    const exp = parseExpect(s.expect);
    const want: StepWant = { rejections: exp.rejections };
    if ('expire' in s) {
      const got = r.expire();
      const gotList = got ? [{ reason: got.reason, droppedBytes: got.droppedBytes }] : [];
      if (JSON.stringify(gotList) !== JSON.stringify(exp.rejections) || exp.status)
        throw new Error(`${v.name} step ${i}: expire() gives ${JSON.stringify(gotList)}, the vector says "${s.expect}"`);
      return { atMs: s.atMs, expire: true, want };
    }
    const got = r.push(s.notification);
    const gotRejections = got.rejections.map((x) => ({ reason: x.reason, droppedBytes: x.droppedBytes }));
    const gotReason = got.status === 'rejected' ? got.reason : undefined;
    if (got.status !== exp.status || gotReason !== exp.reason || JSON.stringify(gotRejections) !== JSON.stringify(exp.rejections)) {
      throw new Error(
        `${v.name} step ${i}: the reassembler says ${got.status} ${gotReason ?? ''} ${JSON.stringify(gotRejections)}, the vector says "${s.expect}"`,
      );
    }
    want.status = got.status;
    if (gotReason) want.reason = gotReason;
    want.lost = got.lost;
    if (got.status === 'frame') {
      want.frame = hex(got.frame);
      want.retransmit = got.retransmit;
    }
    return { atMs: s.atMs, notification: hex(s.notification), want: sortWant(want) };
  });
  return { desc: v.desc, stallMs: STALL_MS, steps };
}

function sortWant(w: StepWant): StepWant {
  const { status, reason, rejections, lost, frame, retransmit } = w;
  return { status, ...(reason ? { reason } : {}), rejections, lost, ...(frame !== undefined ? { frame, retransmit } : {}) };
}

function reassemblySpecs(frames: Map<string, Uint8Array>): ReassemblyVector[] {
  const hr = need(frames, 'heart-rate-default'); // 117 bytes: 7 fragments at MTU 23 (16 + 6 × 18 … the last carries 11)
  const spo2 = need(frames, 'spo2-default');
  const steps1 = need(frames, 'steps-default');
  const acc = need(frames, 'accelerometer-default');
  const at23 = (f: Uint8Array, counter = 0, retransmit = false): Uint8Array[] => specFragmentsAtMtu(f, 23, counter, retransmit);
  const at247 = (f: Uint8Array, counter = 0, retransmit = false): Uint8Array[] => specFragmentsAtMtu(f, 247, counter, retransmit);
  const frag = (f: Partial<SpecFragment> & { data: Uint8Array }): Uint8Array => specFragment({ last: false, retransmit: false, counter: 0, index: 0, ...f });
  const H = at23(hr); // 7 fragments
  if (H.length !== 7) throw new Error('heart-rate-default should take 7 fragments at MTU 23');
  const hrRest = (n: number) => H.slice(n).map((notification) => ({ atMs: 0, notification, expect: 'discarded' }));
  const seq = (list: Uint8Array[], expects: string[], atMs = 0): Step[] =>
    list.map((notification, i) => ({ atMs, notification, expect: expects[i] ?? expects[expects.length - 1]! }));
  const whole = (list: Uint8Array[], atMs = 0): Step[] =>
    list.map((notification, i) => ({ atMs, notification, expect: i === list.length - 1 ? 'frame' : 'incomplete' }));
  const get = (list: Uint8Array[], i: number): Uint8Array => {
    const x = list[i];
    if (!x) throw new Error(`no fragment ${i}`);
    return x;
  };
  const flipIndex = (f: Uint8Array, index: number): Uint8Array => {
    const b = f.slice();
    b[0] = (b[0]! & 0xfc) | (index >> 8);
    b[1] = index & 0xff;
    return b;
  };
  const withByte = (f: Uint8Array, at: number, v: number): Uint8Array => {
    const b = f.slice();
    b[at] = v;
    return b;
  };
  const out: ReassemblyVector[] = [];
  const add = (name: string, desc: string, steps: Step[]): void => {
    out.push({ name, desc, steps });
  };
  const received = (n: number): number => 16 + 18 * (n - 1); // heart-rate-default bytes held after n fragments at MTU 23

  // Honest streams.
  add('valid-one-frame-mtu-23', 'heart-rate-default (117 bytes) in 7 notifications at ATT_MTU 23: incomplete six times, then the frame', whole(H));
  add('valid-three-frames-counters-0-1-2', 'heart-rate-default, spo2-default and steps-default back to back at ATT_MTU 23, frame counters 0, 1, 2', [
    ...whole(H),
    ...whole(at23(spo2, 1)),
    ...whole(at23(steps1, 2)),
  ]);
  add('valid-single-fragment-frames-mtu-247', 'three frames that each fit one notification at ATT_MTU 247 (244 bytes)', [
    ...whole(at247(hr, 0)),
    ...whole(at247(spo2, 1)),
    ...whole(at247(steps1, 2)),
  ]);
  add(
    'valid-retransmission',
    'heart-rate-default handed out before: R = 1 on every fragment, and the frame comes out flagged as a retransmission',
    whole(at23(hr, 0, true)),
  );
  add(
    'valid-counter-wraps-after-15',
    '17 single-fragment frames: counters 0 … 15, then 0 again',
    Array.from({ length: 17 }, (_, i) => whole(at247(i % 2 ? spo2 : hr, i % 16))).flat(),
  );
  add(
    'valid-fragment-sizes-change-mid-frame',
    'accelerometer-default (397 bytes) in fragments of 16, 18, 18 and then 242 data bytes: the receiver needs no MTU, each fragment describes itself (the MTU exchange may complete while a frame is under way)',
    whole(specFragments(acc, (i) => (i === 0 ? 16 : i < 3 ? 18 : 242), { counter: 0, retransmit: false })),
  );
  add(
    'valid-slow-link-within-stall-limit',
    'heart-rate-default with 10 s (exactly the stall limit) between fragments: not stalled',
    H.map((notification, i) => ({ atMs: i * STALL_MS, notification, expect: i === H.length - 1 ? 'frame' : 'incomplete' })),
  );

  // §10.6 rule 1: longer than any notification.
  add(
    'oversized-notification-513-bytes',
    'a 513-byte notification: no attribute value is longer than 512 bytes, so it is refused unread (its counter is not used up); then an honest frame with counter 0',
    [{ atMs: 0, notification: frag({ last: true, frameLength: 509, data: new Uint8Array(509) }), expect: 'OVERSIZED' }, ...whole(H)],
  );
  add(
    'oversized-notification-and-repeated',
    'the same 513-byte notification twice: too long to be kept for the duplicate check, so refused twice as OVERSIZED',
    [
      { atMs: 0, notification: new Uint8Array(513), expect: 'OVERSIZED' },
      { atMs: 0, notification: new Uint8Array(513), expect: 'OVERSIZED' },
    ],
  );
  // Rule 2: duplicates.
  add(
    'duplicate-fragment',
    'fragment 2 of heart-rate-default signalled twice (as BlueZ has been seen to do): the copy is ignored and the frame completes',
    seq(
      [...H.slice(0, 3), get(H, 2), ...H.slice(3)],
      ['incomplete', 'incomplete', 'incomplete', 'DUPLICATE', 'incomplete', 'incomplete', 'incomplete', 'frame'],
    ),
  );
  add(
    'duplicate-single-fragment-frame',
    'a single-fragment frame signalled twice: delivered once',
    seq([get(at247(hr), 0), get(at247(hr), 0), get(at247(spo2, 1), 0)], ['frame', 'DUPLICATE', 'frame']),
  );
  add(
    'duplicate-last-fragment',
    'the last fragment of heart-rate-default signalled twice: the frame once, then a duplicate',
    seq([...H, get(H, 6)], ['incomplete', 'incomplete', 'incomplete', 'incomplete', 'incomplete', 'incomplete', 'frame', 'DUPLICATE']),
  );
  add('duplicate-and-too-short', 'a 1-byte notification twice: TOO_SHORT, then the copy is a duplicate of it', [
    { atMs: 0, notification: Uint8Array.of(0x80), expect: 'TOO_SHORT' },
    { atMs: 0, notification: Uint8Array.of(0x80), expect: 'DUPLICATE' },
  ]);
  // Rule 3: too short.
  add('too-short-empty-notification', 'a notification with no bytes', [{ atMs: 0, notification: new Uint8Array(0), expect: 'TOO_SHORT' }]);
  add('too-short-1-byte', 'a 1-byte notification: not even a header word', [{ atMs: 0, notification: Uint8Array.of(0x80), expect: 'TOO_SHORT' }]);
  add('too-short-first-fragment-header-only', 'a first fragment of 4 bytes (header word and length, no data)', [
    { atMs: 0, notification: frag({ last: true, frameLength: 117, data: new Uint8Array(0) }), expect: 'TOO_SHORT' },
  ]);
  add(
    'too-short-continuation-header-only',
    'heart-rate-default with its fragment 3 cut to its 2-byte header: the partial frame is dropped, the rest discarded',
    [
      ...whole(H.slice(0, 3)).map((s) => ({ ...s, expect: 'incomplete' })),
      { atMs: 0, notification: get(H, 3).slice(0, 2), expect: `TOO_SHORT:${received(3)}` },
      ...hrRest(4),
    ],
  );
  add('too-short-first-fragment-3-bytes', 'a first fragment cut inside its length field', [
    { atMs: 0, notification: get(H, 0).slice(0, 3), expect: 'TOO_SHORT' },
  ]);
  // Rules 4-5: a first fragment interrupts; the counter must follow on.
  add(
    'interrupted-by-new-frame',
    'heart-rate-default stops after 4 fragments and spo2-default (counter 1) begins: the partial frame is dropped, spo2-default arrives whole',
    [
      ...whole(H.slice(0, 4)).map((s) => ({ ...s, expect: 'incomplete' })),
      ...seq(at23(spo2, 1), [`INTERRUPTED:${received(4)} > incomplete`, 'incomplete', 'incomplete', 'incomplete', 'incomplete', 'incomplete', 'frame']),
    ],
  );
  add(
    'interrupted-by-single-fragment-frame',
    'heart-rate-default stops after 2 fragments and a single-fragment frame (counter 1) follows: dropped partial and a whole frame in one step',
    [
      ...whole(H.slice(0, 2)).map((s) => ({ ...s, expect: 'incomplete' })),
      { atMs: 0, notification: get(at247(spo2, 1), 0), expect: `INTERRUPTED:${received(2)} > frame` },
    ],
  );
  add(
    'counter-gap-first-frame-not-0',
    'the first frame of a connection has counter 1: frame 0 was lost (the frame itself arrives)',
    seq(at23(hr, 1), ['COUNTER_GAP > incomplete', 'incomplete', 'incomplete', 'incomplete', 'incomplete', 'incomplete', 'frame']),
  );
  add('counter-gap-frame-missing', 'frames with counters 0 and 2: frame 1 was lost whole', [
    ...whole(at247(hr, 0)),
    { atMs: 0, notification: get(at247(spo2, 2), 0), expect: 'COUNTER_GAP > frame' },
  ]);
  add(
    'counter-gap-and-interrupted',
    'heart-rate-default (counter 0) stops after 2 fragments and a frame with counter 2 begins: the partial frame is dropped, and a gap of one frame is counted',
    [
      ...whole(H.slice(0, 2)).map((s) => ({ ...s, expect: 'incomplete' })),
      { atMs: 0, notification: get(at247(spo2, 2), 0), expect: `INTERRUPTED:${received(2)} > COUNTER_GAP > frame` },
    ],
  );
  // Rule 6: the declared length.
  add('malformed-declared-length-0', 'a first fragment declaring a 0-byte frame', [
    { atMs: 0, notification: frag({ last: true, frameLength: 0, data: Uint8Array.of(1) }), expect: 'MALFORMED' },
  ]);
  add(
    'oversized-declared-16385',
    'a first fragment declaring 16385 bytes, one more than MAX_FRAME_BYTES: refused before anything is allocated; its other fragments are discarded',
    [{ atMs: 0, notification: withByte(withByte(get(H, 0), 2, 0x40), 3, 0x01), expect: 'OVERSIZED' }, ...hrRest(1)],
  );
  add('oversized-declared-65535', 'a first fragment declaring 65535 bytes', [
    { atMs: 0, notification: withByte(withByte(get(H, 0), 2, 0xff), 3, 0xff), expect: 'OVERSIZED' },
  ]);
  add('oversized-first-fragment-more-than-declared', 'a first fragment declaring 10 bytes and carrying 16', [
    { atMs: 0, notification: withByte(get(H, 0), 3, 10), expect: 'OVERSIZED' },
  ]);
  add('length-mismatch-single-fragment-short', 'a first and last fragment declaring 117 bytes and carrying 16', [
    { atMs: 0, notification: withByte(get(H, 0), 0, get(H, 0)[0]! | 0x80), expect: 'LENGTH_MISMATCH' },
  ]);
  add('length-mismatch-single-fragment-without-last-flag', 'a first fragment carrying its whole declared length (16 bytes) without the last-fragment flag', [
    { atMs: 0, notification: withByte(get(H, 0), 3, 16), expect: 'LENGTH_MISMATCH' },
  ]);
  add(
    'interrupted-and-oversized-declared',
    'heart-rate-default stops after 3 fragments, then a first fragment declaring 16385 bytes: the partial is dropped as interrupted, the new frame refused as oversized',
    [
      ...whole(H.slice(0, 3)).map((s) => ({ ...s, expect: 'incomplete' })),
      { atMs: 0, notification: withByte(withByte(get(at23(spo2, 1), 0), 2, 0x40), 3, 0x01), expect: `INTERRUPTED:${received(3)} > OVERSIZED` },
    ],
  );
  add(
    'counter-gap-and-malformed-length-0',
    'the first frame of a connection has counter 3 and declares 0 bytes: the gap is counted, then the fragment refused',
    [{ atMs: 0, notification: frag({ last: true, counter: 3, frameLength: 0, data: Uint8Array.of(1) }), expect: 'COUNTER_GAP > MALFORMED' }],
  );
  // Rule 7: continuation fragments in order.
  add('out-of-order-fragments-swapped', 'fragments 2 and 3 of heart-rate-default swapped: the partial frame is dropped at fragment 3, the rest discarded', [
    ...whole(H.slice(0, 2)).map((s) => ({ ...s, expect: 'incomplete' })),
    { atMs: 0, notification: get(H, 3), expect: `OUT_OF_ORDER:${received(2)}` },
    { atMs: 0, notification: get(H, 2), expect: 'discarded' },
    ...hrRest(4),
  ]);
  add('out-of-order-fragment-lost', 'fragment 1 of heart-rate-default lost', [
    { atMs: 0, notification: get(H, 0), expect: 'incomplete' },
    { atMs: 0, notification: get(H, 2), expect: `OUT_OF_ORDER:${received(1)}` },
    ...hrRest(3),
  ]);
  add(
    'out-of-order-index-repeated-with-other-data',
    'fragment 1 of heart-rate-default, then another fragment with index 1 and other bytes: not a duplicate, out of order',
    [
      { atMs: 0, notification: get(H, 0), expect: 'incomplete' },
      { atMs: 0, notification: get(H, 1), expect: 'incomplete' },
      { atMs: 0, notification: withByte(get(H, 1), 5, get(H, 1)[5]! ^ 1), expect: `OUT_OF_ORDER:${received(2)}` },
    ],
  );
  add(
    'out-of-order-continuation-without-first',
    'the first fragment of heart-rate-default lost: its continuation fragments refuse once and are then discarded; the next frame (counter 1) follows on without a counter gap',
    [{ atMs: 0, notification: get(H, 1), expect: 'OUT_OF_ORDER' }, ...hrRest(2), ...whole(at247(spo2, 1))],
  );
  add(
    'out-of-order-continuation-of-other-counter',
    'heart-rate-default (counter 0) after 2 fragments, then fragment 2 of a frame with counter 1: a frame whose first fragment was lost',
    [
      ...whole(H.slice(0, 2)).map((s) => ({ ...s, expect: 'incomplete' })),
      { atMs: 0, notification: get(at23(hr, 1), 2), expect: `OUT_OF_ORDER:${received(2)}` },
      ...whole(at247(spo2, 2)),
    ],
  );
  add('out-of-order-index-jumps-to-1023', 'fragment 1 of heart-rate-default with index 1023', [
    { atMs: 0, notification: get(H, 0), expect: 'incomplete' },
    { atMs: 0, notification: flipIndex(get(H, 1), 1023), expect: `OUT_OF_ORDER:${received(1)}` },
  ]);
  // Rule 8: R is a property of the frame.
  add('malformed-retransmit-flag-changed-mid-frame', 'heart-rate-default with R = 1 on fragment 3 only', [
    ...whole(H.slice(0, 3)).map((s) => ({ ...s, expect: 'incomplete' })),
    { atMs: 0, notification: withByte(get(H, 3), 0, get(H, 3)[0]! | 0x40), expect: `MALFORMED:${received(3)}` },
    ...hrRest(4),
  ]);
  add('out-of-order-and-retransmit-flag-changed', 'fragment 2 of heart-rate-default skipped, and R = 1 on fragment 3: the order is checked first', [
    ...whole(H.slice(0, 2)).map((s) => ({ ...s, expect: 'incomplete' })),
    { atMs: 0, notification: withByte(get(H, 3), 0, get(H, 3)[0]! | 0x40), expect: `OUT_OF_ORDER:${received(2)}` },
  ]);
  // Rule 9: exactly the declared length, and the last flag where it is reached.
  add('oversized-continuation-beyond-declared', 'heart-rate-default whose last fragment carries one byte more than declared', [
    ...whole(H.slice(0, 6)).map((s) => ({ ...s, expect: 'incomplete' })),
    { atMs: 0, notification: Uint8Array.from([...get(H, 6), 0]), expect: `OVERSIZED:${received(6)}` },
  ]);
  add('length-mismatch-last-flag-too-early', 'heart-rate-default with the last-fragment flag on fragment 4 of 7', [
    ...whole(H.slice(0, 4)).map((s) => ({ ...s, expect: 'incomplete' })),
    { atMs: 0, notification: withByte(get(H, 4), 0, get(H, 4)[0]! | 0x80), expect: `LENGTH_MISMATCH:${received(4)}` },
    ...hrRest(5),
  ]);
  add('length-mismatch-declared-reached-without-last-flag', 'heart-rate-default whose last fragment lacks the last-fragment flag', [
    ...whole(H.slice(0, 6)).map((s) => ({ ...s, expect: 'incomplete' })),
    { atMs: 0, notification: withByte(get(H, 6), 0, get(H, 6)[0]! & 0x7f), expect: `LENGTH_MISMATCH:${received(6)}` },
  ]);
  add('length-mismatch-last-fragment-truncated', 'heart-rate-default whose last fragment lost its final byte', [
    ...whole(H.slice(0, 6)).map((s) => ({ ...s, expect: 'incomplete' })),
    { atMs: 0, notification: get(H, 6).slice(0, -1), expect: `LENGTH_MISMATCH:${received(6)}` },
  ]);
  // Stall.
  add(
    'stalled-partial-dropped-at-next-fragment',
    'heart-rate-default stops for 10.001 s after 3 fragments (stall limit 10 s): the next fragment finds the partial frame stalled, and is discarded with the rest; the next frame arrives whole',
    [
      ...whole(H.slice(0, 3)).map((s) => ({ ...s, expect: 'incomplete' })),
      { atMs: STALL_MS + 1, notification: get(H, 3), expect: `STALLED:${received(3)} > discarded` },
      ...H.slice(4).map((notification) => ({ atMs: STALL_MS + 1, notification, expect: 'discarded' })),
      ...whole(at23(spo2, 1), STALL_MS + 1),
    ],
  );
  add(
    'stalled-partial-dropped-by-expire',
    'heart-rate-default stops after 2 fragments; the gateway timer calls expire() at 10 s (nothing) and at 10.001 s (the partial frame is dropped)',
    [
      ...whole(H.slice(0, 2)).map((s) => ({ ...s, expect: 'incomplete' })),
      { atMs: STALL_MS, expire: true, expect: 'none' },
      { atMs: STALL_MS + 1, expire: true, expect: `STALLED:${received(2)} > none` },
      { atMs: STALL_MS + 1, expire: true, expect: 'none' },
    ],
  );
  // Resynchronisation.
  add(
    'resync-after-rejection',
    'heart-rate-default refused at fragment 2 (lost fragment 1): its later fragments are discarded without a count of their own, and spo2-default (counter 1) is reassembled whole',
    [
      { atMs: 0, notification: get(H, 0), expect: 'incomplete' },
      { atMs: 0, notification: get(H, 2), expect: `OUT_OF_ORDER:${received(1)}` },
      ...hrRest(3),
      ...whole(at23(spo2, 1)),
    ],
  );
  return out;
}

// ---------------------------------------------------------------- control and info values

interface ValueVector {
  name: string;
  desc: string;
  value: Uint8Array;
  /** Decoded fields, or the error code. */
  want: Record<string, unknown> | null;
  wantError: GattValueErrorCode | null;
  extra?: Record<string, unknown>;
}

function buildControlVectors(): ValueVector[] {
  const ack = (n: bigint): Uint8Array => {
    // §10.4 layout: opcode 0x01 ‖ n as uint64 BE, written byte by byte.
    const out = new Uint8Array(9);
    out[0] = 1;
    for (let i = 0; i < 8; i++) out[8 - i] = Number((n >> BigInt(8 * i)) & 0xffn);
    if (hex(out) !== hex(encodeAck(n))) throw new Error(`encodeAck(${n}) disagrees with the §10.4 layout`);
    return out;
  };
  const ok = (name: string, desc: string, n: bigint): ValueVector => ({ name, desc, value: ack(n), want: { opcode: 1, seq: n.toString() }, wantError: null });
  const bad = (name: string, desc: string, value: Uint8Array, code: GattValueErrorCode): ValueVector => ({
    name,
    desc,
    value,
    want: null,
    wantError: code,
    extra: { attError: ATT_ERROR_FOR[code] },
  });
  return [
    ok('ack-0', 'ACK 0: settles nothing (the first write of a connection to a gateway that has accepted nothing from the device yet)', 0n),
    ok('ack-1', 'ACK 1', 1n),
    ok('ack-4812', 'ACK 4812: frames with seq ≤ 4812 are settled', 4812n),
    ok('ack-max-uint64', 'ACK 2⁶⁴ − 1', (1n << 64n) - 1n),
    bad('empty', 'a write of no bytes', new Uint8Array(0), 'GATT_BAD_LENGTH'),
    bad('ack-8-bytes', 'ACK 4812 without its last byte', ack(4812n).slice(0, 8), 'GATT_BAD_LENGTH'),
    bad('ack-10-bytes', 'ACK 4812 with a byte appended', Uint8Array.from([...ack(4812n), 0]), 'GATT_BAD_LENGTH'),
    bad('opcode-0', 'opcode 0 with a 9-byte value', Uint8Array.from([0, ...ack(1n).subarray(1)]), 'GATT_UNKNOWN_OPCODE'),
    bad('opcode-2', 'opcode 2 (no resend request is defined, §10.4) with a 9-byte value', Uint8Array.from([2, ...ack(1n).subarray(1)]), 'GATT_UNKNOWN_OPCODE'),
    bad('opcode-255-and-1-byte', 'a single byte 0xff: the opcode is judged before the length', Uint8Array.of(0xff), 'GATT_UNKNOWN_OPCODE'),
  ];
}

function buildInfoVectors(keys: Map<string, Uint8Array>): ValueVector[] {
  const a = need(keys, 'device-a');
  const b = need(keys, 'device-b');
  /** §10.3 layout, field by field. */
  const info = (pub: Uint8Array, fw: [number, number, number], maxFrameBytes: number, version = 1): Uint8Array =>
    Uint8Array.from([
      version,
      ...unhex(deviceIdFromKey(pub)),
      ...createHash('sha256').update(pub).digest().subarray(0, 8),
      ...fw,
      maxFrameBytes >> 8,
      maxFrameBytes & 0xff,
    ]);
  const out: ValueVector[] = [];
  const ok = (name: string, desc: string, value: Uint8Array, pub: Uint8Array, matches: boolean): void => {
    const d = decodeInfo(value);
    if (hex(encodeInfo(d)) !== hex(value)) throw new Error(`${name}: encodeInfo disagrees with the §10.3 layout`);
    out.push({ name, desc, value, want: { ...d }, wantError: null, extra: { publicKey: hex(pub), keyMatches: matches } });
  };
  const bad = (name: string, desc: string, value: Uint8Array, code: GattValueErrorCode): void => {
    out.push({ name, desc, value, want: null, wantError: code });
  };
  ok('device-a', 'device-a (test key of frames/valid), firmware 1.4.2, frames up to MAX_FRAME_BYTES', info(a, [1, 4, 2], 16384), a, true);
  ok('device-b-small-frames', 'device-b, firmware 0.9.17, frames of at most 1097 bytes', info(b, [0, 9, 17], 1097), b, true);
  ok('max-frame-bytes-101', 'device-a stating the smallest possible max frame size (one sample, 101 bytes)', info(a, [255, 255, 255], 101), a, true);
  ok(
    'fingerprint-of-other-key',
    "device-a's info, checked against device-b's enrolled key: it decodes, and does not match that key",
    info(a, [1, 0, 0], 16384),
    b,
    false,
  );
  bad('empty', 'no bytes', new Uint8Array(0), 'GATT_BAD_LENGTH');
  bad('21-bytes', 'device-a without its last byte', info(a, [1, 4, 2], 16384).slice(0, 21), 'GATT_BAD_LENGTH');
  bad('23-bytes', 'device-a with a byte appended', Uint8Array.from([...info(a, [1, 4, 2], 16384), 0]), 'GATT_BAD_LENGTH');
  bad('version-0', 'protocol version 0', info(a, [1, 4, 2], 16384, 0), 'GATT_UNKNOWN_VERSION');
  bad('version-2', 'protocol version 2', info(a, [1, 4, 2], 16384, 2), 'GATT_UNKNOWN_VERSION');
  bad(
    'version-2-and-30-bytes',
    'protocol version 2 and 30 bytes: the version is judged before the length (another version may have another layout)',
    Uint8Array.from([...info(a, [1, 4, 2], 16384, 2), ...new Uint8Array(8)]),
    'GATT_UNKNOWN_VERSION',
  );
  bad('max-frame-bytes-100', 'max frame size 100, below the smallest frame (101)', info(a, [1, 4, 2], 100), 'GATT_BAD_FIELD');
  bad('max-frame-bytes-16385', 'max frame size 16385, above MAX_FRAME_BYTES', info(a, [1, 4, 2], 16385), 'GATT_BAD_FIELD');
  bad('max-frame-bytes-0', 'max frame size 0', info(a, [1, 4, 2], 0), 'GATT_BAD_FIELD');
  for (const v of out) {
    if (v.extra?.keyMatches !== undefined && infoMatchesKey(decodeInfo(v.value), unhex(v.extra.publicKey as string)) !== v.extra.keyMatches)
      throw new Error(`${v.name}: infoMatchesKey disagrees`);
    if (v.name === 'device-a' && (v.want?.keyFingerprint !== keyFingerprint(a) || v.want?.deviceId !== deviceIdFromKey(a)))
      throw new Error('device-a: id or fingerprint differs from §2.1');
  }
  return out;
}

function checkValue(kind: 'control' | 'info', v: ValueVector): void {
  const decode = kind === 'control' ? decodeControl : decodeInfo;
  try {
    const d = decode(v.value) as unknown as Record<string, unknown>;
    if (v.wantError) throw new Error(`${kind}/${v.name}: decoded, the vector says ${v.wantError}`);
    const norm = Object.fromEntries(Object.entries(d).map(([k, x]) => [k, typeof x === 'bigint' ? x.toString() : x]));
    if (JSON.stringify(norm) !== JSON.stringify(v.want)) throw new Error(`${kind}/${v.name}: decodes to ${JSON.stringify(norm)}`);
  } catch (e) {
    if (!isError(e, GattValueError)) throw e;
    if (e.code !== v.wantError) throw new Error(`${kind}/${v.name}: refused with ${e.code}, the vector says ${v.wantError}`, { cause: e });
  }
}

// ---------------------------------------------------------------- assembly

/** Every GATT vector file, keyed by its path under firmware-proto/vectors/. */
export function buildGattVectors(): VectorSet {
  const files: VectorSet = new Map();
  const put = (path: string, v: unknown): void => {
    if (files.has(path)) throw new Error(`duplicate vector ${path}`);
    files.set(path, json(v));
  };
  const { frames, keys } = inputs();
  put('gatt/uuids.json', buildUuids());
  for (const v of fragmentSpecs()) put(`gatt/fragment/${v.name}.json`, buildFragmentVector(v, frames));
  const reassembly = reassemblySpecs(frames);
  const reasons = new Set<string>();
  for (const v of reassembly) {
    put(`gatt/reassembly/${v.name}.json`, buildReassemblyVector(v));
    for (const s of v.steps) for (const r of parseExpect(s.expect).rejections) reasons.add(r.reason);
  }
  const missing = ALL_FRAGMENT_REASONS.filter((r) => !reasons.has(r));
  if (missing.length) throw new Error(`no reassembly vector for ${missing.join(', ')}`);
  for (const v of buildControlVectors()) {
    checkValue('control', v);
    put(`gatt/control/${v.name}.json`, { desc: v.desc, value: hex(v.value), want: v.want, wantError: v.wantError, ...v.extra });
  }
  for (const v of buildInfoVectors(keys)) {
    checkValue('info', v);
    put(`gatt/info/${v.name}.json`, { desc: v.desc, value: hex(v.value), want: v.want, wantError: v.wantError, ...v.extra });
  }
  return files;
}

/** The folders the generator owns; README.md above them is written by hand. */
export const GATT_VECTOR_DIRS = ['gatt', 'gatt/fragment', 'gatt/reassembly', 'gatt/control', 'gatt/info'] as const;

/** Files that differ between a vector set and a directory (missing, changed, or extra). */
export function diffGattVectors(files: VectorSet, outDir: string): string[] {
  return diffVectorFiles(files, outDir, GATT_VECTOR_DIRS);
}

function main(argv: string[]): number {
  return runVectorGenerator(argv, import.meta.url, {
    build: buildGattVectors,
    dirs: GATT_VECTOR_DIRS,
    what: 'GATT vector',
    summary: (count) =>
      `${count('gatt/fragment/')} fragmentations, ${count('gatt/reassembly/')} reassembly streams, ${count('gatt/control/')} control values, ${count('gatt/info/')} info values`,
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
