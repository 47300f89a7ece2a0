/**
 * Fragmentation and reassembly of frames over BLE notifications (PROTOCOL.md §10.5, §10.6),
 * and a device's store-and-forward over the GATT profile (§10.7): round trips of the signed
 * frame vectors at random MTUs, a fuzz of mutated and random notification streams checked
 * against an independent witness, and the device's buffer and resume rules, end to end with a
 * model gateway that refuses what the real one refuses (§5.3 step 5).
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DeviceCore, MemorySeqStore, SequenceCounter } from '../../firmware-proto/device.js';
import { decodeFrame, MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import {
  DEFAULT_STALL_MS,
  MAX_FRAGMENT_INDEX,
  MAX_NOTIFICATION_BYTES,
  fragmentCount,
  fragmentFrame,
  notificationBytes,
  parseFragmentHeader,
  Reassembler,
  type ReassemblyVerdict,
} from '../../firmware-proto/fragment.js';
import {
  ATT_ERROR_FOR,
  GattDeviceSession,
  GattValueError,
  decodeInfo,
  deviceInfoFor,
  encodeAck,
  encodeInfo,
  infoMatchesKey,
} from '../../firmware-proto/gatt.js';
import { FRAME_TAG, concat, deviceIdFromKey, generateKeys } from '../../firmware-proto/signing.js';
import { prng } from '../support/prng.js';
import { validFrames } from '../../scripts/lib/fuzz-frames.js';
import { randomMtu, runStream, StreamSource } from '../../scripts/lib/fuzz-gatt.js';

// Vectors and stream generators are shared with `npm run fuzz` (scripts/fuzz.ts, target gatt).
const { all: VALID_FRAMES, small: SMALL_FRAMES } = validFrames();
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;

describe('fragment layout (§10.5)', () => {
  it('fits notifications of min(ATT_MTU − 3, 512) bytes', () => {
    expect(notificationBytes(23)).toBe(20);
    expect(notificationBytes(27)).toBe(24);
    expect(notificationBytes(247)).toBe(244);
    expect(notificationBytes(515)).toBe(512);
    expect(notificationBytes(517)).toBe(512);
    expect(notificationBytes(65535)).toBe(512);
    for (const bad of [0, 22, 23.5, 65536, Number.NaN]) expect(() => notificationBytes(bad)).toThrow(RangeError);
  });

  it('never needs more than 1024 fragment indices: the largest frame at the smallest MTU takes 911', () => {
    expect(fragmentCount(MAX_FRAME_BYTES, 23)).toBe(911);
    expect(fragmentCount(MAX_FRAME_BYTES, 23) - 1).toBeLessThanOrEqual(MAX_FRAGMENT_INDEX);
    const f = fragmentFrame(new Uint8Array(MAX_FRAME_BYTES), { mtu: 23, counter: 0, retransmit: false });
    expect(f.length).toBe(911);
    expect(parseFragmentHeader(f[910]!)).toMatchObject({ index: 910, last: true });
  });

  it('lays out the header word L R CCCC IIIIIIIIII and the length of the first fragment', () => {
    const frame = Uint8Array.from({ length: 40 }, (_, i) => i);
    const [a, b, c] = fragmentFrame(frame, { mtu: 23, counter: 13, retransmit: true });
    // 0b0_1_1101_0000000000 = 0x7400, length 0x0028
    expect(hex(a!.subarray(0, 4))).toBe('74000028');
    expect(hex(b!.subarray(0, 2))).toBe('7401');
    // last: 0b1_1_1101_0000000010 = 0xf402
    expect(hex(c!.subarray(0, 2))).toBe('f402');
    expect([a!.length, b!.length, c!.length]).toEqual([20, 20, 8]);
    expect(parseFragmentHeader(a!)).toEqual({ last: false, retransmit: true, counter: 13, index: 0, frameLength: 40, headerBytes: 4 });
    expect(parseFragmentHeader(Uint8Array.of(0x00))).toBeUndefined();
    expect(parseFragmentHeader(Uint8Array.of(0x00, 0x00, 0x01))).toBeUndefined();
  });

  it('refuses what it cannot send: an empty or oversized frame, a counter outside 0 … 15', () => {
    const o = { mtu: 23, counter: 0, retransmit: false };
    expect(() => fragmentFrame(new Uint8Array(0), o)).toThrow(RangeError);
    expect(() => fragmentFrame(new Uint8Array(MAX_FRAME_BYTES + 1), o)).toThrow(RangeError);
    expect(() => fragmentFrame(new Uint8Array(10), { ...o, counter: 16 })).toThrow(RangeError);
    expect(() => fragmentFrame(new Uint8Array(10), { ...o, counter: -1 })).toThrow(RangeError);
    expect(() => fragmentFrame(new Uint8Array(10), { ...o, mtu: 22 })).toThrow(RangeError);
  });
});

describe('round trips of the signed frame vectors (property)', () => {
  it('every frame at every MTU from 23 to 517 comes back byte for byte, and decodes', () => {
    for (const frame of VALID_FRAMES) {
      for (let mtu = 23; mtu <= 517; mtu += frame.length > 4096 ? 61 : 7) {
        const r = new Reassembler({ now: () => 0 });
        const notes = fragmentFrame(frame, { mtu, counter: 0, retransmit: false });
        expect(notes.length).toBe(fragmentCount(frame.length, mtu));
        let v: ReassemblyVerdict | undefined;
        for (const n of notes) {
          expect(n.length).toBeLessThanOrEqual(notificationBytes(mtu));
          v = r.push(n);
        }
        expect(v?.status).toBe('frame');
        if (v?.status === 'frame') expect(same(v.frame, frame)).toBe(true);
      }
    }
  });

  it('random streams of random frames at random MTUs, counters running on and wrapping, come back whole and in order (seeded)', () => {
    const rnd = prng(0x9a77);
    for (let stream = 0; stream < 300; stream++) {
      const r = new Reassembler({ now: () => 0 });
      const sent: { frame: Uint8Array; retransmit: boolean }[] = [];
      const got: { frame: Uint8Array; retransmit: boolean; counter: number }[] = [];
      const n = 1 + rnd.int(40);
      for (let i = 0; i < n; i++) {
        const frame = rnd.bool(0.05) ? rnd.pick(VALID_FRAMES) : rnd.pick(SMALL_FRAMES);
        const retransmit = rnd.bool(0.3);
        sent.push({ frame, retransmit });
        for (const note of fragmentFrame(frame, { mtu: randomMtu(rnd), counter: i % 16, retransmit })) {
          const v = r.push(note);
          expect(v.rejections).toEqual([]);
          if (v.status === 'frame') got.push({ frame: v.frame, retransmit: v.retransmit, counter: v.counter });
          else expect(v.status).toBe('incomplete');
        }
      }
      expect(got.length).toBe(n);
      got.forEach((g, i) => {
        expect(same(g.frame, sent[i]!.frame)).toBe(true);
        expect(g.retransmit).toBe(sent[i]!.retransmit);
        expect(g.counter).toBe(i % 16);
        expect(decodeFrame(g.frame).raw.length).toBe(g.frame.length);
      });
      expect(r.stats.frames).toBe(n);
      expect(r.lost).toBe(false);
      expect(r.bufferedBytes).toBeLessThanOrEqual(MAX_NOTIFICATION_BYTES);
    }
  });
});

// ---------------------------------------------------------------- fuzz

describe('reassembler fuzz (20 000 mutated and random streams)', () => {
  it('never throws, never returns a frame not fed whole and in order, stays bounded, and counts every rejection once', () => {
    // runStream checks the reassembler's contract on every push: no throw, at most one partial
    // frame buffered, `lost` iff a rejection other than a duplicate, FRAGMENT_* codes only, a
    // witness for every frame, stats that add up, and honest streams back whole and in order.
    const source = new StreamSource(prng(0xf022));
    let frames = 0;
    let rejections = 0;
    let honestFrames = 0;
    for (let stream = 0; stream < 20_000; stream++) {
      const { notes, honest } = source.next();
      const res = runStream(notes, honest);
      if (res.problem) throw new Error(`stream ${stream}: ${res.problem}`);
      if (honest) honestFrames += res.frames.length;
      frames += res.frames.length;
      rejections += res.rejections.length;
    }
    // The fuzz reached both sides: many frames through, many refusals.
    expect(honestFrames).toBeGreaterThan(1000);
    expect(frames).toBeGreaterThan(10_000);
    expect(rejections).toBeGreaterThan(10_000);
  });

  it('loses only the frame a lost fragment belonged to, and resynchronises at the next first fragment', () => {
    const rnd = prng(0x105e);
    for (let t = 0; t < 500; t++) {
      const frames = Array.from({ length: 3 + rnd.int(5) }, () => rnd.pick(SMALL_FRAMES));
      const mtu = randomMtu(rnd);
      const perFrame = frames.map((f, i) => fragmentFrame(f, { mtu, counter: i, retransmit: false }));
      const victim = rnd.int(frames.length);
      const frag = perFrame[victim]!;
      if (frag.length < 2) continue;
      const cut = 1 + rnd.int(frag.length - 1); // any fragment but the first
      const notes = perFrame.flatMap((p, i) => (i === victim ? p.filter((_, j) => j !== cut) : p));
      let now = 0;
      const r = new Reassembler({ now: () => now });
      const out = notes.map((n) => r.push(n)).flatMap((v) => (v.status === 'frame' ? [hex(v.frame)] : []));
      expect(out).toEqual(frames.filter((_, i) => i !== victim).map(hex));
      // The last frame's last fragment lost: nothing follows, so only the stall timer finds it.
      now = DEFAULT_STALL_MS + 1;
      r.expire();
      const rej = r.stats.rejected;
      expect(rej.FRAGMENT_OUT_OF_ORDER + rej.FRAGMENT_INTERRUPTED + rej.FRAGMENT_STALLED).toBe(1);
      expect(Object.values(rej).reduce((a, b) => a + b, 0)).toBe(1);
      expect(r.inProgress).toBeUndefined();
    }
  });
});

// ---------------------------------------------------------------- device side (§10.7)

const keys = generateKeys(new Uint8Array(32).fill(9));
const deviceId = deviceIdFromKey(keys.publicKey);
const spki = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), keys.publicKey]), format: 'der', type: 'spki' });
const T0 = 1_700_000_000_000n;

function device(outboxBytes?: number): { core: DeviceCore; link: GattDeviceSession; record: (n?: number) => bigint } {
  const core = new DeviceCore(deviceId, keys.secretKey, new SequenceCounter(new MemorySeqStore(), 64n), outboxBytes);
  const link = new GattDeviceSession(core.outbox);
  let t = T0;
  const record = (samples = 5): bigint => {
    t += 10_000n;
    const { seq, raw } = core.record({
      timestampMs: t,
      sensor: 1,
      scale: 0,
      intervalUs: 1_000_000,
      samples: Int32Array.from({ length: samples }, (_, i) => 60 + i),
    });
    link.enqueue(seq, raw);
    return seq;
  };
  return { core, link, record };
}

/** Drains every notification the device has now into a reassembler; returns the frames, as the gateway sees them. */
function drain(link: GattDeviceSession, r: Reassembler, max = Infinity): { seq: bigint; retransmit: boolean; raw: Uint8Array; counter: number }[] {
  const out: { seq: bigint; retransmit: boolean; raw: Uint8Array; counter: number }[] = [];
  for (let i = 0; i < max; i++) {
    const n = link.nextNotification();
    if (!n) break;
    const v = r.push(n);
    expect(v.rejections).toEqual([]);
    if (v.status === 'frame') out.push({ seq: decodeFrame(v.frame).seq, retransmit: v.retransmit, raw: v.frame, counter: v.counter });
  }
  return out;
}

describe('device store-and-forward over GATT (§10.7)', () => {
  it('keeps frames recorded while disconnected in a bounded buffer, drops the oldest first, and counts the drops', () => {
    const frameBytes = 117;
    const { core, link, record } = device(frameBytes * 10);
    for (let i = 0; i < 25; i++) record();
    expect(core.outbox.byteSize).toBeLessThanOrEqual(frameBytes * 10);
    expect(core.outbox.size).toBe(10);
    expect(core.outbox.dropped).toBe(15);
    expect(link.backlog).toBe(10);
    link.connect();
    link.control(encodeAck(0n));
    // The newest ten survive, oldest of them first.
    expect(drain(link, new Reassembler()).map((f) => f.seq)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(16 + i)));
  });

  it('sends nothing on a new connection until the gateway writes its first acknowledgement, then resumes after it', () => {
    const { link, record } = device();
    for (let i = 0; i < 6; i++) record();
    link.connect();
    expect(link.nextNotification()).toBeUndefined(); // the gateway may not be listening yet (§10.7)
    link.control(encodeAck(0n));
    let r = new Reassembler();
    expect(drain(link, r).map((f) => [f.seq, f.retransmit])).toEqual([1n, 2n, 3n, 4n, 5n, 6n].map((s) => [s, false]));
    link.control(encodeAck(3n)); // 1 … 3 durable; 4 … 6 received but not yet acknowledged
    link.disconnect();
    record(); // 7, never sent
    link.connect();
    r = new Reassembler();
    expect(link.nextNotification()).toBeUndefined();
    link.control(encodeAck(5n)); // the gateway had made 4 and 5 durable before the link dropped
    expect(drain(link, r).map((f) => [f.seq, f.retransmit, f.counter])).toEqual([
      [6n, true, 0], // handed out before: R = 1, like MQTT's DUP; counters restart at 0
      [7n, false, 1],
    ]);
  });

  it('sets R on a frame whose transmission broke off, and resends it whole from its first fragment', () => {
    const { link, record } = device();
    record(40); // 257 bytes: 14 notifications at ATT_MTU 23
    link.connect();
    link.control(encodeAck(0n));
    expect(drain(link, new Reassembler(), 5)).toEqual([]); // link lost after 5 fragments
    link.disconnect();
    link.connect();
    link.control(encodeAck(0n));
    const got = drain(link, new Reassembler());
    expect(got.map((f) => [f.seq, f.retransmit])).toEqual([[1n, true]]);
    expect(link.stats.retransmissions).toBe(1);
  });

  it('finishes a frame in progress when an acknowledgement comes mid-frame, and sends at the MTU of the moment a frame starts', () => {
    const { link, record } = device();
    record(40);
    record(40);
    link.connect();
    link.control(encodeAck(0n));
    const r = new Reassembler();
    expect(drain(link, r, 3)).toEqual([]);
    link.setMtu(247);
    link.control(encodeAck(0n)); // a repeated ACK changes nothing, and the frame goes on at 20-byte notifications
    const notes: Uint8Array[] = [];
    for (let n; (n = link.nextNotification());) notes.push(n);
    const rest = fragmentCount(257, 23) - 3; // 12 more notifications of at most 20 bytes finish frame 1
    expect(notes.slice(0, rest).every((n) => n.length <= 20)).toBe(true);
    expect(notes.slice(rest)).toHaveLength(fragmentCount(257, 247));
    const frames = notes.map((n) => r.push(n)).filter((v) => v.status === 'frame');
    expect(frames).toHaveLength(2);
    expect(r.lost).toBe(false);
  });

  it('numbers the frames of a connection 0 … 15 and wraps', () => {
    const { link, record } = device();
    for (let i = 0; i < 20; i++) record(1);
    link.connect();
    link.setMtu(517);
    link.control(encodeAck(0n));
    expect(drain(link, new Reassembler()).map((f) => f.counter)).toEqual(Array.from({ length: 20 }, (_, i) => i % 16));
  });

  it('applies an acknowledgement only up to the highest seq it has handed out: a rogue or buggy ACK never drops unsent frames', () => {
    const { core, link, record } = device();
    for (let i = 0; i < 5; i++) record();
    link.connect();
    link.control(encodeAck(0n));
    const r = new Reassembler();
    expect(drain(link, r, 14).map((f) => f.seq)).toEqual([1n, 2n]); // 7 notifications each
    link.control(encodeAck(1000n));
    expect(link.stats.acksClamped).toBe(1);
    expect(core.outbox.unacked().map((e) => e.seq)).toEqual([3n, 4n, 5n]);
    expect(drain(link, r).map((f) => f.seq)).toEqual([3n, 4n, 5n]);
  });

  it('refuses a malformed control write with a coded error, the ATT error to answer it with, and no change', () => {
    const { core, link, record } = device();
    record();
    link.connect();
    for (const [value, code] of [
      [new Uint8Array(0), 'GATT_BAD_LENGTH'],
      [encodeAck(1n).slice(0, 8), 'GATT_BAD_LENGTH'],
      [Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 1), 'GATT_UNKNOWN_OPCODE'],
    ] as const) {
      let thrown: unknown;
      try {
        link.control(value);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(GattValueError);
      expect((thrown as GattValueError).code).toBe(code);
      expect(ATT_ERROR_FOR[code]).toBe(code === 'GATT_BAD_LENGTH' ? 0x0d : 0x80);
    }
    expect(link.nextNotification()).toBeUndefined(); // still waiting for a valid first write
    expect(core.outbox.size).toBe(1);
  });

  it('sends restored frames (handed out before a reboot) with R = 1, and accepts an ACK up to them', () => {
    const a = device();
    for (let i = 0; i < 3; i++) a.record();
    const restored = a.core.outbox.unacked();
    const b = device();
    for (const e of restored) {
      b.core.outbox.push(e.seq, e.raw);
      b.link.enqueue(e.seq, e.raw, true);
    }
    b.link.connect();
    b.link.control(encodeAck(2n));
    expect(b.link.stats.acksClamped).toBe(0);
    expect(drain(b.link, new Reassembler()).map((f) => [f.seq, f.retransmit])).toEqual([[3n, true]]);
  });

  it('follows drops of the outbox while connected: a dropped frame not yet sent is skipped', () => {
    const { core, link, record } = device(117 * 3);
    for (let i = 0; i < 3; i++) record();
    link.connect();
    link.control(encodeAck(0n));
    const r = new Reassembler();
    expect(drain(link, r, 7).map((f) => f.seq)).toEqual([1n]);
    for (let i = 0; i < 3; i++) record(); // 4, 5, 6 push out 1, 2, 3
    expect(core.outbox.unacked().map((e) => e.seq)).toEqual([4n, 5n, 6n]);
    expect(drain(link, r).map((f) => f.seq)).toEqual([4n, 5n, 6n]);
    expect(core.outbox.dropped).toBe(3);
  });

  it('publishes its info: 22 bytes naming its device id and key, checked against the enrolled key', () => {
    const info = deviceInfoFor(keys.publicKey, '2.1.0');
    const value = encodeInfo(info);
    expect(value.length).toBe(22);
    expect(decodeInfo(value)).toEqual({
      protocolVersion: 1,
      deviceId,
      keyFingerprint: info.keyFingerprint,
      firmwareVersion: '2.1.0',
      maxFrameBytes: MAX_FRAME_BYTES,
    });
    expect(infoMatchesKey(decodeInfo(value), keys.publicKey)).toBe(true);
    expect(infoMatchesKey(decodeInfo(value), generateKeys(new Uint8Array(32).fill(1)).publicKey)).toBe(false);
    expect(() => encodeInfo({ ...info, firmwareVersion: '1.256.0' })).toThrow(TypeError);
    expect(() => encodeInfo({ ...info, maxFrameBytes: MAX_FRAME_BYTES + 1 })).toThrow(TypeError);
  });
});

/** The gateway's step 5 of §5.3, enough to see what a device's resends would cost. */
class ModelGateway {
  highest = 0n;
  readonly accepted: bigint[] = [];
  readonly stored = new Map<bigint, string>();
  duplicates = 0;
  replays = 0;
  ingest(raw: Uint8Array, retransmit: boolean): void {
    const f = decodeFrame(raw);
    expect(cryptoVerify(null, concat(FRAME_TAG, f.body), spki, f.signature)).toBe(true);
    if (f.seq > this.highest) {
      this.highest = f.seq;
      this.accepted.push(f.seq);
      this.stored.set(f.seq, hex(raw));
    } else if (retransmit && this.stored.get(f.seq) === hex(raw)) this.duplicates++;
    else this.replays++;
  }
}

describe('device and gateway end to end over a flaky link (seeded)', () => {
  it('every recorded frame is accepted exactly once and in seq order, with no REPLAY, across random disconnects, MTUs and doubled notifications', () => {
    const seen = { connections: 0, retransmissions: 0, duplicates: 0, doubled: 0, mtus: new Set<number>() };
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const rnd = prng(seed);
      const { core, link, record } = device(); // 4 MiB: nothing dropped here
      const gw = new ModelGateway();
      let recorded = 0;
      let connected = false;
      let r = new Reassembler();
      let pendingAck = false;
      let lastAck = 0n;
      const ack = (n: bigint): void => {
        link.control(encodeAck(n));
        lastAck = n;
      };
      for (let tick = 0; tick < 3000; tick++) {
        if (rnd.bool(0.05)) {
          record(1 + rnd.int(60));
          recorded++;
        }
        if (!connected) {
          if (rnd.bool(0.02)) {
            connected = true;
            link.connect();
            r = new Reassembler();
            const mtu = rnd.bool(0.7) ? randomMtu(rnd) : 23;
            link.setMtu(mtu);
            seen.mtus.add(mtu);
            // §10.7: the first write, once the gateway listens. Sometimes the last value it wrote
            // lags what it has (accepted, not yet acknowledged): the device then resends frames
            // the gateway has, which must come as honest retransmissions (R = 1).
            ack(rnd.bool(0.5) ? gw.highest : lastAck);
          }
          continue;
        }
        if (rnd.bool(0.01)) {
          // The link drops: notifications in flight are lost with it.
          connected = false;
          link.disconnect();
          continue;
        }
        const n = link.nextNotification();
        if (n) {
          const copies = rnd.bool(0.01) ? 2 : 1; // BlueZ signalling a notification twice
          seen.doubled += copies - 1;
          for (let c = 0; c < copies; c++) {
            const v = r.push(n);
            expect(v.lost).toBe(false);
            if (v.status === 'frame') {
              gw.ingest(v.frame, v.retransmit);
              pendingAck = true;
            }
          }
        }
        if (pendingAck && rnd.bool(0.2)) {
          ack(gw.highest); // coalesced cumulative acknowledgement
          pendingAck = false;
        }
      }
      // Finally a stable connection drains everything.
      link.connect();
      r = new Reassembler();
      link.control(encodeAck(gw.highest));
      for (let n; (n = link.nextNotification());) {
        const v = r.push(n);
        if (v.status === 'frame') gw.ingest(v.frame, v.retransmit);
      }
      link.control(encodeAck(gw.highest));
      expect(gw.replays).toBe(0);
      expect(gw.accepted).toEqual(Array.from({ length: recorded }, (_, i) => BigInt(i + 1)));
      expect(core.outbox.size).toBe(0);
      expect(core.outbox.dropped).toBe(0);
      expect(link.backlog).toBe(0);
      seen.connections += link.stats.connections;
      seen.retransmissions += link.stats.retransmissions;
      seen.duplicates += gw.duplicates;
    }
    // The run did reach what it is about: many reconnections, resends the gateway already had, copies.
    expect(seen.connections).toBeGreaterThan(50);
    expect(seen.retransmissions).toBeGreaterThan(10);
    expect(seen.duplicates).toBeGreaterThan(0);
    expect(seen.doubled).toBeGreaterThan(20);
    expect(seen.mtus.size).toBeGreaterThan(20);
  });
});
