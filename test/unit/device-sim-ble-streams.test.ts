import { describe, expect, it } from 'vitest';
import { fragmentFrame, parseFragmentHeader, Reassembler, type ReassemblyVerdict } from '../../firmware-proto/fragment.js';
import { MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import { BAD_FRAGMENT_EXPECTED, BAD_FRAGMENT_VARIANTS, badFragmentStream, frameStream, oversizedStream, withCounter, withDeviceId } from '../../device-sim/ble-streams.js';
import { oversize } from '../../device-sim/faults.js';
import { Rng } from '../../device-sim/rng.js';
import { heartRate, testDevice } from '../support/devices.js';

const dev = testDevice('ble-streams');
const frames = [1, 2, 3].map((i) => dev.core.record(heartRate(1_700_000_000_000 + i * 60_000, Array.from({ length: 40 }, (_, k) => 60 + (k % 20)))).raw);
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
