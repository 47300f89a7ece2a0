import { describe, expect, it } from 'vitest';
import { fragmentCount, fragmentFrame, notificationBytes, parseFragmentHeader, Reassembler, type ReassemblyVerdict } from '../../firmware-proto/fragment.js';
import { MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import {
  BAD_FRAGMENT_EXPECTED,
  BAD_FRAGMENT_VARIANTS,
  badFragmentStream,
  frameStream,
  oversizedStream,
  stalledStream,
  withCounter,
  withDeviceId,
} from '../../device-sim/ble-streams.js';
import { oversize, STALL_EXPECTED } from '../../device-sim/faults.js';
import { Rng } from '../../device-sim/rng.js';
import { heartRate, testDevice } from '../support/devices.js';

const dev = testDevice('ble-streams');
const frames = [1, 2, 3].map(
  (i) =>
    dev.core.record(
      heartRate(
        1_700_000_000_000 + i * 60_000,
        Array.from({ length: 40 }, (_, k) => 60 + (k % 20)),
      ),
    ).raw,
);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function feed(r: Reassembler, notifications: Uint8Array[]): ReassemblyVerdict[] {
  return notifications.map((n) => r.push(n));
}

describe('withCounter', () => {
  it('replaces the counter bits and nothing else', () => {
    const [first, second] = fragmentFrame(frames[0]!, { mtu: 23, counter: 3, retransmit: true });
    const renumbered = withCounter(second!, 12);
    expect(parseFragmentHeader(renumbered)).toEqual({ ...parseFragmentHeader(second!), counter: 12 });
    expect(hex(renumbered.subarray(2))).toBe(hex(second!.subarray(2)));
    expect(parseFragmentHeader(withCounter(first!, 0))).toMatchObject({ counter: 0, index: 0, retransmit: true, frameLength: frames[0]!.length });
  });
  it.each([-1, 16, 1.5])('refuses counter %s', (c) => {
    expect(() => withCounter(new Uint8Array(5), c)).toThrow(RangeError);
  });
});

describe('withDeviceId', () => {
  it('rewrites the device id field (bytes 1-8) of a copy only', () => {
    const peer = testDevice('ble-streams-peer').id;
    const copy = withDeviceId(frames[0]!, peer);
    expect(hex(copy.subarray(1, 9))).toBe(peer);
    expect(hex(copy.subarray(9))).toBe(hex(frames[0]!.subarray(9)));
    expect(hex(frames[0]!.subarray(1, 9))).toBe(dev.id);
    expect(() => withDeviceId(frames[0]!, 'XYZ')).toThrow(TypeError);
  });
});

describe('corrupted streams against the reassembler', () => {
  it.each(BAD_FRAGMENT_VARIANTS)('%s: exactly one rejection, with its reason, and the next honest frame passes clean', (variant) => {
    const r = new Reassembler();
    // An honest frame (counter 0), the corrupted stream (counter 1), then the next honest frame.
    const before = feed(r, frameStream(frames[0]!, 0, 23).notifications);
    expect(before.at(-1)!.status).toBe('frame');
    const bad = badFragmentStream(frames[1]!, variant, 1);
    expect(bad.expected).toBe(BAD_FRAGMENT_EXPECTED[variant]);
    const during = feed(r, bad.notifications);
    expect(during.flatMap((v) => v.rejections.map((x) => x.reason))).toEqual([bad.expected]);
    expect(during.some((v) => v.lost)).toBe(true);
    const after = feed(r, frameStream(frames[2]!, (1 + bad.countersUsed) % 16, 23).notifications);
    expect(after.flatMap((v) => v.rejections)).toEqual([]);
    expect(after.at(-1)).toMatchObject({ status: 'frame', retransmit: false });
    expect(r.stats.rejected[bad.expected]).toBe(1);
  });

  it('makes every variant from any valid frame of at least 101 bytes', () => {
    const small = dev.core.record(heartRate(1_700_001_000_000, [70])).raw;
    expect(small.length).toBe(101);
    for (const v of BAD_FRAGMENT_VARIANTS) expect(badFragmentStream(small, v, 0).notifications.length).toBeGreaterThan(0);
    expect(() => badFragmentStream(small.subarray(0, 30), 'out_of_order', 0)).toThrow(RangeError);
  });

  it('an oversized frame is refused on the length its first fragment declares, and uses its counter', () => {
    const payload = oversize(frames[0]!, Rng.for('ble-streams'));
    const s = oversizedStream(payload, 0, 247);
    expect(s.notifications).toHaveLength(1);
    expect(s.notifications[0]!.length).toBe(244);
    expect(parseFragmentHeader(s.notifications[0]!)).toMatchObject({ index: 0, last: false, frameLength: payload.length });
    const r = new Reassembler();
    expect(feed(r, s.notifications)[0]!.rejections.map((x) => x.reason)).toEqual(['FRAGMENT_OVERSIZED']);
    expect(feed(r, frameStream(frames[1]!, 1, 247).notifications).flatMap((v) => v.rejections)).toEqual([]);
    expect(() => oversizedStream(new Uint8Array(MAX_FRAME_BYTES), 0, 247)).toThrow(RangeError);
  });
});

describe('the stalled stream', () => {
  const short = dev.core.record(heartRate(1_700_002_000_000, [70, 71, 72, 73, 74])).raw; // 117 bytes: one notification at ATT_MTU 247

  it.each([
    ['a frame that takes several notifications at the MTU is cut there', frames[0]!, 247, 247],
    ['a frame that fits one notification at the MTU is cut at 20 bytes', short, 247, 23],
    ['at ATT_MTU 23', short, 23, 23],
  ] as const)('%s: the first half of its fragments, in order, never the last', (_, raw, mtu, cutAt) => {
    const s = stalledStream(raw, 5, mtu);
    expect(s).toMatchObject({ expected: 'FRAGMENT_STALLED', countersUsed: 1, fragmentMtu: cutAt, fragmentsOfFrame: fragmentCount(raw.length, cutAt) });
    expect(s.fragmentsOfFrame).toBeGreaterThanOrEqual(2);
    expect(s.notifications).toHaveLength(Math.max(1, Math.floor(s.fragmentsOfFrame / 2)));
    expect(s.notifications.map(hex)).toEqual(fragmentFrame(raw, { mtu: cutAt, counter: 5, retransmit: false }).slice(0, s.notifications.length).map(hex));
    for (const [i, n] of s.notifications.entries()) {
      expect(n.length).toBeLessThanOrEqual(notificationBytes(mtu)); // any size up to the MTU's is accepted (§10.5 rule 2)
      expect(parseFragmentHeader(n)).toMatchObject({ index: i, counter: 5, last: false, retransmit: false });
    }
    expect(STALL_EXPECTED).toBe(s.expected);
  });

  it('is refused once, as FRAGMENT_STALLED, by the timer after stallMs of silence, and the next frame passes clean', () => {
    let now = 1_000;
    const r = new Reassembler({ stallMs: 2_000, now: () => now });
    expect(feed(r, frameStream(frames[0]!, 0, 247).notifications).at(-1)!.status).toBe('frame');
    const s = stalledStream(frames[1]!, 1, 247);
    const during = feed(r, s.notifications);
    expect(during.map((v) => v.status)).toEqual(s.notifications.map(() => 'incomplete'));
    expect(during.flatMap((v) => v.rejections)).toEqual([]);
    expect(r.inProgress).toMatchObject({ counter: 1, frameLength: frames[1]!.length, fragments: s.notifications.length });
    now += 2_000;
    expect(r.expire()).toBeUndefined(); // not longer than stallMs yet
    now += 1;
    const stalled = r.expire();
    expect(stalled).toMatchObject({ reason: 'FRAGMENT_STALLED', droppedBytes: s.notifications.reduce((n, x, i) => n + x.length - (i === 0 ? 4 : 2), 0) });
    expect(r.expire()).toBeUndefined(); // once
    expect(r.lost).toBe(true);
    const after = feed(r, frameStream(frames[2]!, (1 + s.countersUsed) % 16, 247).notifications);
    expect(after.flatMap((v) => v.rejections)).toEqual([]);
    expect(after.at(-1)).toMatchObject({ status: 'frame' });
    expect(Object.entries(r.stats.rejected).filter(([, n]) => n > 0)).toEqual([['FRAGMENT_STALLED', 1]]);
  });

  it('refuses a frame that fits one notification even at ATT_MTU 23', () => {
    expect(() => stalledStream(short.subarray(0, 16), 0, 247)).toThrow(RangeError);
    expect(stalledStream(short.subarray(0, 17), 0, 247).notifications).toHaveLength(1);
  });
});
