import { describe, expect, it } from 'vitest';
import { SENSORS, sensorByName } from '../../firmware-proto/catalogue.js';
import { Patient, SIMULATED_SENSORS } from '../../device-sim/physiology.js';
import { hash01, Rng, seedBytes, valueNoise } from '../../device-sim/rng.js';

const DAY = Date.UTC(2025, 2, 10); // a Monday, 00:00 UTC
const patients = [0, 1, 2, 3, 4, 5].map((i) => Patient.fromSeed(seedBytes('patient', 'test', i)));

/** One sample a minute over a whole day. */
function day(f: (t: number) => number, p0 = DAY): number[] {
  return Array.from({ length: 1440 }, (_, m) => f(p0 + m * 60_000));
}

describe('rng', () => {
  it('repeats a stream for the same seed and differs for another', () => {
    const a = Rng.for('x', 1);
    const b = Rng.for('x', 1);
    const c = Rng.for('x', 2);
    const sa = Array.from({ length: 20 }, () => a.u32());
    expect(Array.from({ length: 20 }, () => b.u32())).toEqual(sa);
    expect(Array.from({ length: 20 }, () => c.u32())).not.toEqual(sa);
  });

  it('keeps int() inside its bounds and reaches both ends', () => {
    const r = Rng.for('bounds');
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const v = r.int(3, 7);
      expect(v).toBeGreaterThanOrEqual(3);
      expect(v).toBeLessThanOrEqual(7);
      seen.add(v);
    }
    expect([...seen].sort()).toEqual([3, 4, 5, 6, 7]);
  });

  it('hash01 and valueNoise are pure functions in [0, 1], also for indices beyond 2^32', () => {
    const big = 2 ** 40 + 12345;
    expect(hash01(7, big)).toBe(hash01(7, big));
    expect(hash01(7, big)).not.toBe(hash01(7, big + 2 ** 32));
    for (let i = 0; i < 1000; i++) {
      const v = valueNoise(99, DAY + i * 777, 5000);
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
  });
});

describe('patient signals', () => {
  it('has a signal for every catalogue sensor', () => {
    expect([...SIMULATED_SENSORS].sort()).toEqual(SENSORS.map((s) => s.name).sort());
  });

  it('keeps every raw sample inside the catalogue range at the default scale', () => {
    for (const p of patients) {
      for (const spec of SENSORS) {
        const frames = spec.name === 'ecg' || spec.name === 'accelerometer' ? 60 : 400;
        for (let f = 0; f < frames; f++) {
          const start = DAY + f * 211_000; // spread over the day, awake and asleep
          const raw = p.generate(spec, start, spec.defaultSamplesPerFrame);
          expect(raw.length).toBe(spec.defaultSamplesPerFrame * spec.channels.length);
          const factor = 10 ** spec.defaultScale;
          for (const r of raw) {
            expect(r * factor).toBeGreaterThanOrEqual(spec.min);
            expect(r * factor).toBeLessThanOrEqual(spec.max);
          }
        }
      }
    }
  });

  it('stays in the documented physiological ranges over a day', () => {
    for (const p of patients) {
      const hr = day((t) => p.heartRate(t));
      const spo2 = day((t) => p.spo2(t));
      const skin = day((t) => p.skinTemperature(t));
      const resp = day((t) => p.respirationRate(t));
      expect(Math.min(...hr)).toBeGreaterThanOrEqual(40);
      expect(Math.max(...hr)).toBeLessThanOrEqual(180);
      expect(Math.min(...spo2)).toBeGreaterThanOrEqual(87);
      expect(Math.max(...spo2)).toBeLessThanOrEqual(99);
      expect(Math.min(...skin)).toBeGreaterThanOrEqual(32);
      expect(Math.max(...skin)).toBeLessThanOrEqual(35);
      expect(Math.min(...resp)).toBeGreaterThanOrEqual(12);
      expect(Math.max(...resp)).toBeLessThanOrEqual(20);
      const steps = day((t) => p.steps(t, 60_000));
      expect(Math.min(...steps)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...steps)).toBeLessThanOrEqual(p.params.cadence + 1e-9);
    }
  });

  it('has a resting heart rate of 50-85 awake and a clearly higher one when active', () => {
    for (const p of patients) {
      const rest: number[] = [];
      const active: number[] = [];
      for (let m = 0; m < 1440 * 3; m++) {
        const t = DAY + m * 60_000;
        const a = p.activity(t);
        if (p.awake(t) === 1 && a === 0) rest.push(p.heartRate(t));
        if (a > 0.6) active.push(p.heartRate(t));
      }
      expect(rest.length).toBeGreaterThan(100);
      expect(active.length).toBeGreaterThan(10);
      expect(Math.min(...rest)).toBeGreaterThanOrEqual(50);
      expect(Math.max(...rest)).toBeLessThanOrEqual(85);
      const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
      expect(mean(active)).toBeGreaterThan(mean(rest) + 20);
    }
  });

  it('has SpO2 of 95-99 outside episodes and desaturation episodes down to 88-92', () => {
    let episodes = 0;
    for (const p of patients) {
      // Every 2 s over 12 h: an episode lasts 20-60 s, so none is missed.
      const xs = Array.from({ length: 21_600 }, (_, i) => p.spo2(DAY + i * 2000));
      // Outside an episode: more than a minute (30 samples) away from any reading below 95.
      const nearDip = xs.map((_, i) => xs.slice(Math.max(0, i - 30), i + 31).some((x) => x < 95));
      const normal = xs.filter((_, i) => !nearDip[i]);
      expect(normal.length / xs.length).toBeGreaterThan(0.9);
      expect(Math.min(...normal)).toBeGreaterThanOrEqual(95);
      // Each dip's minimum: contiguous runs below 94.
      let low = Infinity;
      for (const x of xs) {
        if (x < 94) low = Math.min(low, x);
        else if (low !== Infinity) {
          expect(low).toBeGreaterThanOrEqual(87);
          expect(low).toBeLessThanOrEqual(92.5);
          episodes++;
          low = Infinity;
        }
      }
    }
    expect(episodes).toBeGreaterThan(patients.length * 5);
  });

  it('beats the ECG at the heart rate, with a clear R wave', () => {
    for (const p of patients.slice(0, 3)) {
      const t0 = DAY + 10 * 3_600_000;
      const ecg = p.generate('ecg', t0, 250 * 60); // one minute at 250 Hz, raw µV
      let peaks = 0;
      for (let i = 1; i < ecg.length - 1; i++) if (ecg[i]! > 500 && ecg[i]! >= ecg[i - 1]! && ecg[i]! > ecg[i + 1]!) peaks++;
      let hr = 0;
      for (let s = 0; s < 60; s++) hr += p.heartRate(t0 + s * 1000) / 60;
      expect(Math.abs(peaks - hr)).toBeLessThanOrEqual(3);
      expect(Math.max(...ecg)).toBeGreaterThan(700); // R ≥ 0.7 mV
      expect(Math.min(...ecg)).toBeGreaterThan(-1000);
    }
  });

  it('measures gravity at rest and more motion while walking', () => {
    const g = sensorByName('accelerometer');
    for (const p of patients) {
      const still: number[] = [];
      const walking: number[] = [];
      for (let m = 0; m < 1440; m += 3) {
        const t = DAY + m * 60_000;
        const w = p.walking(t);
        if (w !== 0 && w !== 1) continue;
        const raw = p.generate(g, t, 25);
        const mags: number[] = [];
        for (let i = 0; i < 25; i++) mags.push(Math.hypot(raw[3 * i]!, raw[3 * i + 1]!, raw[3 * i + 2]!) / 1000);
        const mean = mags.reduce((s, x) => s + x, 0) / 25;
        const sd = Math.sqrt(mags.reduce((s, x) => s + (x - mean) ** 2, 0) / 25);
        if (w === 0 && p.activity(t) === 0) {
          expect(mean).toBeGreaterThan(9.5);
          expect(mean).toBeLessThan(10.1);
          still.push(sd);
        } else if (w === 1) walking.push(sd);
      }
      expect(still.length).toBeGreaterThan(0);
      expect(walking.length).toBeGreaterThan(0);
      expect(Math.min(...walking)).toBeGreaterThan(Math.max(...still));
    }
  });
});

describe('determinism', () => {
  it('gives the same samples for the same seed and time, and others for another seed', () => {
    const a = Patient.fromSeed(seedBytes('patient', 'det', 0));
    const b = Patient.fromSeed(seedBytes('patient', 'det', 0));
    const c = Patient.fromSeed(seedBytes('patient', 'det', 1));
    for (const s of SENSORS) {
      const t = DAY + 5 * 3_600_000 + 123;
      expect(a.generate(s, t, s.defaultSamplesPerFrame)).toEqual(b.generate(s, t, s.defaultSamplesPerFrame));
    }
    const t = DAY + 9 * 3_600_000;
    expect(a.generate('ecg', t, 250)).not.toEqual(c.generate('ecg', t, 250));
  });

  it('does not depend on how samples are split into frames or what was generated before', () => {
    const t = DAY + 15 * 3_600_000;
    const whole = Patient.fromSeed(seedBytes('patient', 'det', 2)).generate('ecg', t, 500);
    const fresh = Patient.fromSeed(seedBytes('patient', 'det', 2));
    fresh.generate('ecg', t + 7_200_000, 250); // something unrelated first, later in the day
    const parts = [...fresh.generate('ecg', t, 250), ...fresh.generate('ecg', t + 1000, 250)];
    expect(parts).toEqual([...whole]);
    const acc = Patient.fromSeed(seedBytes('patient', 'det', 2));
    expect([...acc.generate('accelerometer', t, 50)]).toEqual([...acc.generate('accelerometer', t, 25), ...acc.generate('accelerometer', t + 1000, 25)]);
  });
});
