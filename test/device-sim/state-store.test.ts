import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { SequenceCounter } from '../../firmware-proto/device.js';
import { scaledClock } from '../../device-sim/clock.js';
import { FileDeviceState, MemoryDeviceState } from '../../device-sim/state-store.js';
import { clockWaitMs, planTracks } from '../../device-sim/wearable.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-sim-state-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ID = '0011223344556677';
const take = (c: SequenceCounter, n: number): bigint[] => Array.from({ length: n }, () => c.take());

describe('sequence numbers across simulator restarts', () => {
  it('resumes exactly after a clean stop', () => {
    let state = new FileDeviceState(dir, ID);
    let counter = new SequenceCounter(state, 64n);
    expect(take(counter, 10)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i + 1)));
    state.close(counter.peek());
    state = new FileDeviceState(dir, ID); // a new process reads the file
    counter = new SequenceCounter(state, 64n);
    expect(take(counter, 3)).toEqual([11n, 12n, 13n]);
  });

  it('never reuses a number after a crash: it resumes after the reserved block', () => {
    const first = new SequenceCounter(new FileDeviceState(dir, ID), 64n);
    const used = take(first, 70); // 1..70: blocks [1,65) and [65,129) reserved
    // crash: no close()
    const again = new SequenceCounter(new FileDeviceState(dir, ID), 64n);
    const next = again.take();
    expect(next).toBe(129n);
    expect(used).not.toContain(next);
  });

  it('after a crash, resumes every sensor no earlier than the restart, since its saved clocks may lag', () => {
    const state = new FileDeviceState(dir, ID);
    state.setNextStart('ecg', 1_000);
    new SequenceCounter(state, 64n).take(); // writes the file mid-run
    const before = Date.now();
    const reopened = new FileDeviceState(dir, ID);
    expect(reopened.nextStart('ecg')).toBeGreaterThanOrEqual(before);
    expect(reopened.nextStart('spo2')).toBeGreaterThanOrEqual(before);
    reopened.close(2n);
    expect(new FileDeviceState(dir, ID).nextStart('ecg')).toBe(1_000); // a clean stop is exact
  });

  it('keeps per-sensor clocks and unacknowledged frames, and hands the frames over once', () => {
    const state = new FileDeviceState(dir, ID);
    state.setNextStart('ecg', 1_700_000_123_000);
    const frames = [
      { seq: 7n, raw: Uint8Array.of(1, 2, 3), sent: true },
      { seq: 9n, raw: Uint8Array.of(4, 5), sent: false },
    ];
    state.close(10n, frames);
    const reopened = new FileDeviceState(dir, ID);
    expect(reopened.load()).toBe(10n);
    expect(reopened.nextStart('ecg')).toBe(1_700_000_123_000);
    expect(reopened.nextStart('spo2')).toBeUndefined();
    expect(reopened.takeUnacked()).toEqual(frames);
    expect(reopened.takeUnacked()).toEqual([]);
    expect(new FileDeviceState(dir, ID).takeUnacked()).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual([`${ID}.json`]);
  });

  it('refuses a state file of another device', () => {
    new FileDeviceState(dir, ID).close(5n);
    copyFileSync(join(dir, `${ID}.json`), join(dir, 'ffffffffffffffff.json'));
    expect(() => new FileDeviceState(dir, 'ffffffffffffffff')).toThrow(/not the state of device/);
  });
});

describe('frame timing', () => {
  const sensors = ['heart_rate', 'spo2', 'steps', 'ecg'].map(sensorByName);
  const now = Date.UTC(2025, 5, 1, 12);

  it('frames pace: deals frames in time order, all ending at least a second before now', () => {
    const tracks = planTracks(sensors, { kind: 'frames', frames: 100 }, now, new MemoryDeviceState());
    expect(tracks.reduce((n, t) => n + t.remaining, 0)).toBe(100);
    const span = Math.max(...tracks.map((t) => t.remaining * t.frameMs));
    for (const t of tracks) {
      expect(t.nextStart + t.remaining * t.frameMs).toBeLessThanOrEqual(now - 1000);
      // Every sensor covers about the same span: a 60-s sensor gets few frames.
      expect(t.remaining * t.frameMs).toBeGreaterThan(span - t.frameMs);
    }
    expect(tracks.find((t) => t.spec.name === 'steps')!.remaining).toBeLessThan(tracks.find((t) => t.spec.name === 'ecg')!.remaining);
    expect(clockWaitMs(tracks, now)).toBeLessThanOrEqual(0);
  });

  it('never starts before where an earlier run ended, waiting for the clock if it must', () => {
    const state = new MemoryDeviceState();
    state.setNextStart('ecg', now - 2000);
    const tracks = planTracks(sensors, { kind: 'frames', frames: 100 }, now, state);
    const ecg = tracks.find((t) => t.spec.name === 'ecg')!;
    expect(ecg.nextStart).toBe(now - 2000);
    expect(clockWaitMs(tracks, now)).toBe(ecg.nextStart + ecg.remaining * ecg.frameMs - now);
    const clock = planTracks(sensors, { kind: 'clock' }, now, state);
    expect(clock.find((t) => t.spec.name === 'ecg')!.nextStart).toBe(now);
    expect(clock.find((t) => t.spec.name === 'spo2')!.nextStart).toBe(now);
  });

  it('a faster clock starts in the past and reaches the real time at the end of the run, never before', () => {
    let real = now;
    const clock = scaledClock(10, 60_000, () => real);
    expect(clock.now()).toBe(now - 9 * 60_000);
    for (let s = 0; s <= 60; s++) {
      real = now + s * 1000;
      expect(clock.now()).toBeLessThanOrEqual(real);
    }
    expect(clock.now()).toBe(now + 60_000);
    expect(() => scaledClock(2, Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });

  it('waitUntil resolves at once for a past time and false when aborted', async () => {
    const clock = scaledClock(1, Number.POSITIVE_INFINITY);
    await expect(clock.waitUntil(Date.now() - 1)).resolves.toBe(true);
    const ac = new AbortController();
    const waiting = clock.waitUntil(Date.now() + 3_600_000, ac.signal);
    ac.abort();
    await expect(waiting).resolves.toBe(false);
  });
});
