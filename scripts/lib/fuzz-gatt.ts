/**
 * GATT reassembler fuzzing (PROTOCOL.md §10.5, §10.6): honest notification streams of the
 * valid frames at random MTUs, mutated streams (lost, doubled, reordered, flipped, cut,
 * extended, foreign and random notifications, stalls), an independent witness for every frame
 * the reassembler returns, and the `gatt` target of `npm run fuzz`. The 20,000-stream fuzz of
 * test/firmware-proto/gatt-fragment.test.ts draws from the same generators.
 */
import { MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import { DEFAULT_STALL_MS, fragmentFrame, MAX_NOTIFICATION_BYTES, Reassembler } from '../../firmware-proto/fragment.js';
import { FRAGMENT_REASONS } from '../../firmware-proto/reasons.js';
import { cat, validFrames } from './fuzz-frames.js';
import type { Rng } from './fuzz-rng.js';
import { Tally, type TargetReport } from './fuzz-report.js';

/** A notification and when it arrives (ms on the reassembler's clock). */
export interface Timed {
  note: Uint8Array;
  atMs: number;
}

/** Every ATT_MTU an LE link may use, uniformly: 23 … 517. */
export const randomMtu = (rnd: Rng): number => 23 + rnd.int(517 - 23 + 1);

const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;

/**
 * An independent witness for a frame the reassembler returned: it must be the data of the last
 * m notifications fed (after removing each notification byte-identical to the one just before
 * it, §10.6 rule 2), their indices m−1 … 0, one counter, one R flag, the last-fragment flag on
 * the last only, and the first one's declared length equal to the frame's.
 * @returns undefined when the frame is witnessed, else what is wrong.
 */
export function witnessed(effective: Uint8Array[], frame: Uint8Array): string | undefined {
  const parts: Uint8Array[] = [];
  let counter = -1;
  let retransmit: boolean | undefined;
  for (let j = effective.length - 1; j >= 0; j--) {
    const n = effective[j]!;
    const word = (n[0]! << 8) | n[1]!;
    const index = word & 0x3ff;
    const c = (word >> 10) & 0xf;
    const r = (word & 0x4000) !== 0;
    const last = (word & 0x8000) !== 0;
    const pos = effective.length - 1 - j; // 0 for the notification that completed the frame
    if (last !== (pos === 0)) return `last flag wrong at ${pos}`;
    if (counter === -1) counter = c;
    else if (c !== counter) return 'counter changes within the frame';
    if (retransmit === undefined) retransmit = r;
    else if (r !== retransmit) return 'R changes within the frame';
    if (index === 0) {
      const declared = (n[2]! << 8) | n[3]!;
      parts.unshift(n.subarray(4));
      const data = cat(...parts);
      if (declared !== frame.length) return `declared ${declared}, returned ${frame.length}`;
      if (!same(data, frame)) return 'data differs from the frame';
      // indices: the notification at distance d from the first has index d
      for (let d = 0; d < parts.length; d++) {
        const m = effective[j + d]!;
        if ((((m[0]! << 8) | m[1]!) & 0x3ff) !== d) return `index ${d} out of place`;
      }
      return undefined;
    }
    parts.unshift(n.subarray(2));
    if (parts.length > 1024) return 'no first fragment';
  }
  return 'no first fragment in the stream';
}

/** 1-4 frames (mostly small vectors, some large ones, some random bytes), fragmented as an honest device does. */
export function honestStream(rnd: Rng): { notes: Timed[]; frames: Uint8Array[] } {
  const { all, small } = validFrames();
  const notes: Timed[] = [];
  const frames: Uint8Array[] = [];
  const mtu = randomMtu(rnd);
  let t = 0;
  const k = 1 + rnd.int(4);
  for (let i = 0; i < k; i++) {
    const roll = rnd.next();
    const frame = roll < 0.7 ? rnd.pick(small) : roll < 0.75 ? rnd.pick(all) : rnd.bytes(1 + rnd.int(1500));
    frames.push(frame);
    for (const note of fragmentFrame(frame, { mtu: rnd.bool(0.2) ? randomMtu(rnd) : mtu, counter: i, retransmit: rnd.bool(0.2) })) {
      t += rnd.int(40);
      notes.push({ note, atMs: t });
    }
  }
  return { notes, frames };
}

/** 1-3 faults in a stream: what a radio, BlueZ, a buggy or a hostile device can do to it. */
export function mutateStream(rnd: Rng, s: Timed[], other: Timed[]): Timed[] {
  const out = s.slice();
  const at = (): number => rnd.int(Math.max(out.length, 1));
  const m = 1 + rnd.int(3);
  for (let i = 0; i < m && out.length > 0; i++) {
    const j = at();
    const x = out[j]!;
    switch (rnd.int(11)) {
      case 0: // lost notification
        out.splice(j, 1);
        break;
      case 1: // delivered twice (BlueZ)
        out.splice(j, 0, { ...x });
        break;
      case 2: // reordered
        if (j + 1 < out.length) [out[j], out[j + 1]] = [out[j + 1]!, x];
        break;
      case 3: {
        // bit flip anywhere, header included
        const b = x.note.slice();
        const k = rnd.int(b.length);
        if (b.length) b[k] = b[k]! ^ (1 << rnd.int(8));
        out[j] = { ...x, note: b };
        break;
      }
      case 4: // truncated
        out[j] = { ...x, note: x.note.slice(0, rnd.int(x.note.length + 1)) };
        break;
      case 5: // extended
        out[j] = { ...x, note: cat(x.note, rnd.bytes(1 + rnd.int(8))) };
        break;
      case 6: // random notification, up to and over 512 bytes
        out.splice(j, 0, { note: rnd.bytes(rnd.int(600)), atMs: x.atMs });
        break;
      case 7: {
        // plausible header, random fields and data
        const b = rnd.bytes(2 + rnd.int(40));
        if (rnd.bool(0.5)) {
          b[1] = 0;
          b[0] = b[0]! & 0xfc;
        }
        out.splice(j, 0, { note: b, atMs: x.atMs });
        break;
      }
      case 8: // a notification of another stream
        if (other.length) out.splice(j, 0, { ...rnd.pick(other), atMs: x.atMs });
        break;
      case 9: // the link stalls before this notification
        for (let k = j; k < out.length; k++) out[k] = { ...out[k]!, atMs: out[k]!.atMs + DEFAULT_STALL_MS + 1 };
        break;
      default:
        {
          // header bits flipped: L, R, counter or index
          const b = x.note.slice();
          const k = rnd.int(2);
          if (b.length >= 2) b[k] = b[k]! ^ (1 << rnd.int(8));
          out[j] = { ...x, note: b };
        }
        break;
    }
  }
  return out;
}

/** The streams of the fuzz, one after another: 10 % honest, 80 % mutated, 10 % random notifications. */
export class StreamSource {
  private previous: Timed[] = [];
  constructor(private readonly rnd: Rng) {}

  next(): { notes: Timed[]; honest: Uint8Array[] | undefined } {
    const rnd = this.rnd;
    const honest = honestStream(rnd);
    const kind = rnd.next();
    const notes =
      kind < 0.1
        ? honest.notes
        : kind < 0.9
          ? mutateStream(rnd, honest.notes, this.previous)
          : Array.from({ length: 1 + rnd.int(30) }, (_, i) => ({ note: rnd.bytes(rnd.int(64)), atMs: i }));
    this.previous = honest.notes;
    return { notes, honest: notes === honest.notes ? honest.frames : undefined };
  }
}

/** What one stream did to a fresh reassembler. */
export interface StreamResult {
  frames: Uint8Array[];
  /** Every rejection code, in order; outcomes of pushes ('incomplete', 'discarded', 'frame') by count. */
  rejections: string[];
  statuses: Record<string, number>;
  /** Why the stream broke a rule of the reassembler's contract; undefined when it kept them all. */
  problem?: string;
}

/**
 * Feeds one stream to a fresh Reassembler and checks its contract on every push: it never
 * throws; it holds at most one partial frame and one notification; `lost` is exactly "a
 * rejection other than FRAGMENT_DUPLICATE"; a rejected status names its last rejection; every
 * code is a FRAGMENT_* code; every frame has a witness; the stats add up. An honest stream must
 * come back whole, in order, with no rejection.
 */
export function runStream(notes: readonly Timed[], honest?: readonly Uint8Array[]): StreamResult {
  let now = 0;
  const r = new Reassembler({ now: () => now });
  const effective: Uint8Array[] = [];
  let last: Uint8Array | undefined;
  const res: StreamResult = { frames: [], rejections: [], statuses: {} };
  const broke = (why: string): StreamResult => ({ ...res, problem: why });
  for (const [i, { note, atMs }] of notes.entries()) {
    now = atMs;
    let v: ReturnType<Reassembler['push']>;
    try {
      v = r.push(note);
    } catch (e) {
      return broke(`push #${i} threw ${String(e)}`);
    }
    if (!(last && last.length <= MAX_NOTIFICATION_BYTES && same(last, note))) effective.push(note);
    last = note;
    if (r.bufferedBytes > MAX_FRAME_BYTES + MAX_NOTIFICATION_BYTES) return broke(`push #${i}: ${r.bufferedBytes} bytes buffered`);
    if (v.lost !== v.rejections.some((x) => x.reason !== 'FRAGMENT_DUPLICATE'))
      return broke(`push #${i}: lost is ${v.lost} with rejections ${v.rejections.map((x) => x.reason).join(',')}`);
    if (v.status === 'rejected' && v.rejections[v.rejections.length - 1]?.reason !== v.reason)
      return broke(`push #${i}: status names ${v.reason}, not its last rejection`);
    for (const x of v.rejections) {
      if (!(x.reason in FRAGMENT_REASONS)) return broke(`push #${i}: uncoded rejection ${String(x.reason)}`);
      res.rejections.push(x.reason);
    }
    res.statuses[v.status] = (res.statuses[v.status] ?? 0) + 1;
    if (v.status === 'frame') {
      const why = witnessed(effective, v.frame);
      if (why) return broke(`push #${i}: returned a frame without a witness: ${why}`);
      if (v.frame.length > MAX_FRAME_BYTES) return broke(`push #${i}: frame of ${v.frame.length} bytes`);
      res.frames.push(v.frame);
    }
  }
  const s = r.stats;
  if (s.notifications !== notes.length) return broke(`stats count ${s.notifications} notifications of ${notes.length}`);
  if (s.frames !== res.frames.length) return broke(`stats count ${s.frames} frames, ${res.frames.length} returned`);
  if (Object.values(s.rejected).reduce((a, b) => a + b, 0) !== res.rejections.length) return broke('stats count other rejections than the verdicts');
  if (honest) {
    if (res.rejections.length) return broke(`honest stream refused: ${res.rejections.join(',')}`);
    if (res.frames.length !== honest.length || res.frames.some((f, i) => !same(f, honest[i]!)))
      return broke('honest stream did not come back whole and in order');
  }
  return res;
}

/** The `gatt` target: `inputs` streams, each into a fresh reassembler; outcomes counted per notification. */
export function fuzzReassembler(inputs: number, rnd: Rng, seed: number): TargetReport {
  const t0 = performance.now();
  const tally = new Tally();
  const source = new StreamSource(rnd);
  for (let n = 0; n < inputs; n++) {
    const { notes, honest } = source.next();
    tally.inputs++;
    tally.unit('notifications', notes.length);
    if (honest) tally.unit('honestStreams');
    const res = runStream(notes, honest);
    if (res.problem) {
      tally.fail(n, 'CONTRACT', res.problem, notes.map((x) => Buffer.from(x.note).toString('hex')).join(' '));
      continue;
    }
    tally.unit('frames', res.frames.length);
    for (const [k, c] of Object.entries(res.statuses)) if (k !== 'rejected') tally.count(k, c);
    for (const code of res.rejections) tally.count(code);
  }
  return tally.report('gatt', seed, performance.now() - t0);
}
