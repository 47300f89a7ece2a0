/**
 * A simulated patient: one physiological state that every sensor of a wearable samples.
 * Activity drives heart rate, respiration, steps and motion together; a circadian rhythm
 * shifts heart rate and skin temperature and puts the patient to sleep at night; SpO2 has
 * occasional desaturation episodes.
 *
 * Every signal is a pure function of time and the patient's seed (counter-based noise,
 * see rng.ts): the same seed and the same time give the same raw sample, however the
 * samples are split into frames. Values stay inside the ranges documented on each method,
 * which lie inside the catalogue's min/max.
 */
import { sensorByName, type SensorSpec } from '../firmware-proto/catalogue.js';
import { HeartPhase, pqrst } from './ecg.js';
import { clamp, hashNormal, hash01, Rng, streamKey, valueNoise } from './rng.js';

const G = 9.80665;
const HOUR_MS = 3_600_000;
/** Oscillators count seconds from here, not from 1970, to keep their phase precise in a double. */
const OSC_EPOCH_MS = 1_600_000_000_000;
/** Desaturation episodes are placed one per slot at most. */
const DESAT_SLOT_MS = 10 * 60_000;

export interface PatientParams {
  /** Root of every noise stream of this patient. */
  key: number;
  /** Awake resting heart rate, 55–75 beats/min. */
  restingHr: number;
  /** Heart-rate rise at full activity, 45–75 beats/min. */
  hrActivityGain: number;
  /** Resting SpO2, 96.5–98.5 %. */
  spo2Baseline: number;
  /** Chance that a 10-minute slot holds a desaturation episode. */
  desatChance: number;
  /** Skin temperature baseline, 33.0–34.2 °C. */
  skinBaseline: number;
  /** Resting respiration, 12.5–15.5 breaths/min. */
  respBaseline: number;
  /** Chronotype: the patient's day runs this many hours after UTC. */
  chronoShiftH: number;
  /** Walking cadence, 95–118 steps/min (a person's cadence is quite stable). */
  cadence: number;
  /** Vertical acceleration amplitude while walking, 1.5–3 m/s². */
  stepAmplitude: number;
  /** Accelerometer axis that gravity mostly falls on, and its sign: how the band is worn. */
  gravityAxis: 0 | 1 | 2;
  gravitySign: 1 | -1;
  /** R-wave amplitude, 0.8–1.4 mV. */
  rAmplitude: number;
}

export function patientParams(seed: Uint8Array): PatientParams {
  const r = new Rng(seed);
  return {
    key: r.u32(),
    restingHr: r.range(55, 75),
    hrActivityGain: r.range(45, 75),
    spo2Baseline: r.range(96.5, 98.5),
    desatChance: r.range(0.08, 0.3),
    skinBaseline: r.range(33, 34.2),
    respBaseline: r.range(12.5, 15.5),
    chronoShiftH: r.range(-1.5, 1.5),
    cadence: r.range(95, 118),
    stepAmplitude: r.range(1.5, 3),
    gravityAxis: r.int(0, 2) as 0 | 1 | 2,
    gravitySign: r.float() < 0.5 ? 1 : -1,
    rAmplitude: r.range(0.8, 1.4),
  };
}

function smoothstep(x: number): number {
  const c = clamp(x, 0, 1);
  return c * c * (3 - 2 * c);
}

export class Patient {
  private readonly k: Record<'act' | 'act2' | 'hr' | 'spo2' | 'desat' | 'skin' | 'resp' | 'tilt1' | 'tilt2' | 'acc' | 'ecgWander' | 'ecgNoise' | 'emg', number>;
  private readonly heart: HeartPhase;

  constructor(readonly params: PatientParams) {
    const key = params.key;
    const names = ['act', 'act2', 'hr', 'spo2', 'desat', 'skin', 'resp', 'tilt1', 'tilt2', 'acc', 'ecgWander', 'ecgNoise', 'emg'] as const;
    this.k = Object.fromEntries(names.map((n) => [n, streamKey(key, n)])) as Patient['k'];
    this.heart = new HeartPhase((t) => this.heartRate(t), 2.5, params.respBaseline / 60);
  }

  static fromSeed(seed: Uint8Array): Patient {
    return new Patient(patientParams(seed));
  }

  /** Local hour of the patient's day, [0, 24). */
  private hourOfDay(tMs: number): number {
    return (((tMs / HOUR_MS + this.params.chronoShiftH) % 24) + 24) % 24;
  }

  /** cos of the circadian cycle, +1 in the late afternoon, −1 before dawn. */
  circadian(tMs: number): number {
    return Math.cos((2 * Math.PI * (this.hourOfDay(tMs) - 16)) / 24);
  }

  /** 1 awake (07:30–22:30 local), 0 asleep (23:30–06:30), smooth in between. */
  awake(tMs: number): number {
    const h = this.hourOfDay(tMs);
    return smoothstep(h - 6.5) * (1 - smoothstep(h - 22.5));
  }

  /** Physical activity in [0, 1]: mostly near 0, with bouts lasting minutes; low at night. */
  activity(tMs: number): number {
    const n = 0.65 * valueNoise(this.k.act, tMs, 240_000) + 0.35 * valueNoise(this.k.act2, tMs, 45_000);
    const a = clamp((n - 0.42) / 0.5, 0, 1);
    return a ** 1.5 * (0.1 + 0.9 * this.awake(tMs));
  }

  /** How much of the time the patient walks, [0, 1]: only in the more active bouts. */
  walking(tMs: number): number {
    return smoothstep((this.activity(tMs) - 0.3) / 0.2);
  }

  /** Heart rate, beats/min, in [40, 180]: lower asleep, higher when active. The ECG's beats follow it. */
  heartRate(tMs: number): number {
    const p = this.params;
    const hr =
      p.restingHr +
      3 * this.circadian(tMs) -
      5 * (1 - this.awake(tMs)) +
      p.hrActivityGain * this.activity(tMs) +
      4 * (valueNoise(this.k.hr, tMs, 15_000) - 0.5);
    return clamp(hr, 40, 180);
  }

  /** Desaturation depth below baseline at t (0 outside episodes). */
  private desaturation(tMs: number): number {
    const slot = Math.floor(tMs / DESAT_SLOT_MS);
    if (hash01(this.k.desat, slot, 0) >= this.params.desatChance) return 0;
    const duration = 20_000 + 40_000 * hash01(this.k.desat, slot, 1);
    const start = slot * DESAT_SLOT_MS + (DESAT_SLOT_MS - duration) * hash01(this.k.desat, slot, 2);
    if (tMs < start || tMs > start + duration) return 0;
    const nadir = 88 + 4 * hash01(this.k.desat, slot, 3);
    return (this.params.spo2Baseline - nadir) * Math.sin((Math.PI * (tMs - start)) / duration) ** 2;
  }

  /** SpO2 in %, in [87, 99]: 95.8–99 normally, down to 88–92 in an episode of 20–60 s. */
  spo2(tMs: number): number {
    const v = this.params.spo2Baseline + 0.8 * (valueNoise(this.k.spo2, tMs, 20_000) - 0.5) - 0.3 * this.activity(tMs) - this.desaturation(tMs);
    return clamp(v, 87, 99);
  }

  /** Skin temperature in °C, in [32, 35]: warmer at night, cooler when active, slow drift. */
  skinTemperature(tMs: number): number {
    const v = this.params.skinBaseline - 0.35 * this.circadian(tMs) + 0.6 * (valueNoise(this.k.skin, tMs, 900_000) - 0.5) - 0.4 * this.activity(tMs);
    return clamp(v, 32, 35);
  }

  /** Respiration in breaths/min, in [12, 20]. */
  respirationRate(tMs: number): number {
    const v = this.params.respBaseline + 0.5 * this.circadian(tMs) + 4.5 * this.activity(tMs) + 1.5 * (valueNoise(this.k.resp, tMs, 30_000) - 0.5);
    return clamp(v, 12, 20);
  }

  /** Steps taken in [tMs, tMs + spanMs), in [0, cadence × span]. */
  steps(tMs: number, spanMs: number): number {
    const slice = 5_000;
    const n = Math.max(1, Math.round(spanMs / slice));
    let steps = 0;
    for (let j = 0; j < n; j++) steps += this.params.cadence * this.walking(tMs + ((j + 0.5) * spanMs) / n) * (spanMs / n / 60_000);
    return steps;
  }

  /**
   * Wrist acceleration in m/s², [x, y, z]: gravity on the axis the band is worn along
   * (tilting slowly), a step-synchronous bounce, sway and swing while walking, and
   * fidgeting noise when active but not walking. Each channel stays within ±20 m/s².
   * `index` is the absolute sample number, which seeds the noise.
   */
  accelerometer(tMs: number, index: number): [number, number, number] {
    const p = this.params;
    const a = this.activity(tMs);
    const w = this.walking(tMs);
    const tilt1 = 0.35 * (2 * valueNoise(this.k.tilt1, tMs, 90_000) - 1);
    const tilt2 = 0.35 * (2 * valueNoise(this.k.tilt2, tMs, 70_000) - 1);
    const s = (tMs - OSC_EPOCH_MS) / 1000;
    const step = (2 * Math.PI * p.cadence) / 60;
    const amp = p.stepAmplitude * w;
    const noise = 0.03 + 0.4 * a * (1 - w);
    const vertical = p.gravitySign * G * Math.cos(tilt1) * Math.cos(tilt2) + amp * Math.sin(step * s) + 0.35 * amp * Math.sin(2 * step * s + 1);
    const lateral = G * Math.sin(tilt1) + 0.45 * amp * Math.sin(0.5 * step * s);
    const forward = G * Math.cos(tilt1) * Math.sin(tilt2) + 0.5 * amp * Math.sin(step * s + Math.PI / 2);
    const out: [number, number, number] = [0, 0, 0];
    out[p.gravityAxis] = vertical + noise * hashNormal(this.k.acc, 3 * index);
    out[(p.gravityAxis + 1) % 3] = lateral + noise * hashNormal(this.k.acc, 3 * index + 1);
    out[(p.gravityAxis + 2) % 3] = forward + noise * hashNormal(this.k.acc, 3 * index + 2);
    return out;
  }

  /**
   * ECG lead in mV, within ±2.5 mV: PQRST beats timed by the heart rate (with respiratory
   * sinus arrhythmia), baseline wander at the breathing rate, sensor noise, and muscle
   * noise that grows with activity.
   */
  ecg(tMs: number, index: number): number {
    const p = this.params;
    const beats = pqrst(this.heart.phase(tMs), this.heart.instantRate(tMs), p.rAmplitude);
    const s = (tMs - OSC_EPOCH_MS) / 1000;
    const wander = 0.06 * Math.sin(2 * Math.PI * (p.respBaseline / 60) * s) + 0.1 * (valueNoise(this.k.ecgWander, tMs, 8_000) - 0.5);
    const noise = 0.01 * hashNormal(this.k.ecgNoise, index) + 0.025 * this.activity(tMs) * hashNormal(this.k.emg, index);
    return beats + wander + noise;
  }

  /**
   * Raw int32 samples of one frame at the sensor's default scale (value = raw × 10^scale),
   * channel-interleaved, `count` samples per channel starting at `startMs`.
   * @throws TypeError for a sensor this simulator has no signal for.
   * @example patient.generate('heart_rate', Date.now() - 5000, 5) // Int32Array of 5 bpm values
   */
  generate(sensor: SensorSpec | string, startMs: number, count: number, intervalUs?: number): Int32Array {
    const spec = typeof sensor === 'string' ? sensorByName(sensor) : sensor;
    const signal = SIGNALS[spec.name];
    if (!signal) throw new TypeError(`no simulated signal for sensor "${spec.name}"`);
    const iv = intervalUs ?? spec.defaultIntervalUs;
    const ch = spec.channels.length;
    const factor = 10 ** -spec.defaultScale;
    const lo = Math.ceil(spec.min * factor);
    const hi = Math.floor(spec.max * factor);
    const out = new Int32Array(count * ch);
    for (let i = 0; i < count; i++) {
      const t = startMs + (i * iv) / 1000;
      const index = Math.round((t * 1000) / Math.max(iv, 1));
      const v = signal(this, t, index, iv / 1000);
      if (typeof v === 'number') out[i * ch] = clamp(Math.round(v * factor), lo, hi);
      else for (let c = 0; c < ch; c++) out[i * ch + c] = clamp(Math.round(v[c]! * factor), lo, hi);
    }
    return out;
  }
}

type Signal = (p: Patient, tMs: number, index: number, intervalMs: number) => number | readonly number[];

/** One signal per catalogue sensor, by name. */
const SIGNALS: Readonly<Record<string, Signal>> = {
  heart_rate: (p, t) => p.heartRate(t),
  spo2: (p, t) => p.spo2(t),
  skin_temperature: (p, t) => p.skinTemperature(t),
  respiration_rate: (p, t) => p.respirationRate(t),
  accelerometer: (p, t, i) => p.accelerometer(t, i),
  ecg: (p, t, i) => p.ecg(t, i),
  steps: (p, t, _i, intervalMs) => p.steps(t, intervalMs),
};

/** Names of the sensors this simulator can produce. */
export const SIMULATED_SENSORS: readonly string[] = Object.keys(SIGNALS);
