/**
 * PROTOCOL.md §8.3 as the gateway keeps it: per device and sensor, the largest end
 * (timestamp + ⌊(count − 1) × interval / 1000⌋ ms) of an accepted frame, never moved back, and
 * carried through the checkpoint a restart rebuilds from.
 */
import { describe, expect, it } from 'vitest';
import { decodeFrame, frameEndMs } from '../../../firmware-proto/frame.js';
import { signFrame } from '../../../firmware-proto/device.js';
import { generateKeys, deviceIdFromKey } from '../../../firmware-proto/signing.js';
import { DEDUP_WINDOW, DeviceStates } from '../../../gateway/ingest/device-state.js';

const keys = generateKeys(new Uint8Array(32).fill(3));
const deviceId = deviceIdFromKey(keys.publicKey);
const frame = (seq: number, sensor: number, timestampMs: number, count: number, intervalUs: number) =>
  decodeFrame(
    signFrame(
      {
        deviceId,
        seq: BigInt(seq),
        timestampMs: BigInt(timestampMs),
        sensor,
        scale: 0,
        intervalUs,
        samples: new Int32Array(count * (sensor === 5 ? 3 : 1)).fill(1),
      },
      keys.secretKey,
    ),
  );

describe('DeviceStates and PROTOCOL.md §8.3', () => {
  it('keeps per sensor the largest end, rounding the last sample down to the ms', () => {
    const s = new DeviceStates();
    const ecg = frame(1, 6, 1_000, 250, 4_000); // last sample at 1000 + 996 ms
    s.apply(ecg, 'a');
    expect(frameEndMs(ecg)).toBe(1_996n);
    const sub = frame(2, 1, 1_000, 3, 1_500); // samples at 1000, 1001.5, 1003 ms
    s.apply(sub, 'b');
    expect(s.get(deviceId)!.lastEndMs).toEqual(
      new Map([
        [6, 1_996n],
        [1, 1_003n],
      ]),
    );
    s.apply(frame(3, 6, 500, 1, 0), 'c'); // an older frame re-applied (a re-drain) never moves time back
    expect(s.get(deviceId)!.lastEndMs.get(6)).toBe(1_996n);
  });

  it('carries the ends through the checkpoint a restarted gateway starts from', () => {
    const s = new DeviceStates();
    s.apply(frame(1, 6, 1_000, 250, 4_000), 'a');
    s.apply(frame(2, 2, 7_000, 5, 1_000_000), 'b');
    const again = DeviceStates.fromCheckpoint(JSON.parse(JSON.stringify(s.toCheckpoint(2n))));
    expect(again.get(deviceId)!.lastEndMs).toEqual(
      new Map([
        [6, 1_996n],
        [2, 11_000n],
      ]),
    );
  });

  it('merges what the shared store knows only upwards, keeping the newest hashes by seq (docs/fleet.md)', () => {
    const s = new DeviceStates();
    for (let i = 1; i <= 3; i++) s.apply(frame(i, 2, i * 10_000, 5, 1_000_000), `h${i}`);
    const stale = { highestSeq: 2n, lastEndMs: new Map([[2, 5_000n]]), recent: new Map([[2n, 'h2']]) };
    expect(s.merge(deviceId, stale)).toBe(false);
    expect(s.get(deviceId)).toMatchObject({ highestSeq: 3n, lastEndMs: new Map([[2, 34_000n]]) });
    const older = new Map(Array.from({ length: DEDUP_WINDOW }, (_, i) => [BigInt(100 + i), `x${100 + i}`] as [bigint, string]));
    const newer = { highestSeq: BigInt(99 + DEDUP_WINDOW), lastEndMs: new Map([[1, 9_000n]]), recent: older };
    expect(s.merge(deviceId, newer)).toBe(true);
    const st = s.get(deviceId)!;
    expect(st.highestSeq).toBe(BigInt(99 + DEDUP_WINDOW));
    expect(st.lastEndMs).toEqual(
      new Map([
        [2, 34_000n],
        [1, 9_000n],
      ]),
    );
    // Bounded, and in seq order: the device's own 1–3 were the oldest, so they went.
    expect([...st.recent.keys()]).toEqual([...older.keys()]);
    s.apply(frame(100 + DEDUP_WINDOW, 2, 50_000, 1, 0), 'next');
    expect(st.recent.has(100n)).toBe(false);
    expect(st.recent.get(BigInt(100 + DEDUP_WINDOW))).toBe('next');
  });
});
