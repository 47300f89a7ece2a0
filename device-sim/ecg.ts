/**
 * Synthetic single-lead ECG: each beat is a sum of Gaussians (P, Q, R, S, T), in the spirit
 * of McSharry et al., "A dynamical model for generating synthetic electrocardiogram
 * signals" (IEEE TBME 2003), but placed in time by the integrated heart rate rather than
 * by solving their ODE, so that any sample can be computed on its own.
 */
import { clamp } from './rng.js';

/** The heart-rate knots are this far apart; the rate is linear in between. */
const KNOT_MS = 4_000;
const DAY_MS = 86_400_000;
const KNOTS_PER_DAY = DAY_MS / KNOT_MS;

/**
 * Beat phase φ(t) = ∫ HR/60 dt, in beats; R peaks fall on integer φ. The integral restarts at
 * every UTC midnight so that computing it never needs more than a day of history; that
 * makes one irregular RR interval per day, which a real Holter recording would also show
 * now and then.
 */
export class HeartPhase {
  private day = Number.NaN;
  private readonly hr = new Float64Array(KNOTS_PER_DAY + 1);
  /** Beats from midnight to knot k. */
  private readonly cum = new Float64Array(KNOTS_PER_DAY + 1);
  private known = -1;

  constructor(
    /** The slow heart rate, beats/min; must be a pure function of time. */
    private readonly rate: (tMs: number) => number,
    /** Respiratory sinus arrhythmia: amplitude (beats/min) and frequency (Hz). */
    private readonly rsaBpm: number,
    private readonly rsaHz: number,
  ) {}

  /** Heart rate at t including sinus arrhythmia, beats/min. */
  instantRate(tMs: number): number {
    const { k, f } = this.locate(tMs);
    const slow = this.hr[k]! + (this.hr[k + 1]! - this.hr[k]!) * f;
    return slow + this.rsaBpm * Math.sin(2 * Math.PI * this.rsaHz * (tMs / 1000));
  }

  /** φ(t) in beats. */
  phase(tMs: number): number {
    const { k, f } = this.locate(tMs);
    const h0 = this.hr[k]!;
    const h1 = h0 + (this.hr[k + 1]! - h0) * f;
    const slow = this.cum[k]! + ((f * KNOT_MS) / 60_000) * ((h0 + h1) / 2);
    // ∫ A sin(2π ν s) ds / 60 = −A cos(2π ν s) / (120 π ν): bounded and continuous at midnight.
    const rsa = (-this.rsaBpm * Math.cos(2 * Math.PI * this.rsaHz * (tMs / 1000))) / (120 * Math.PI * this.rsaHz);
    return slow + rsa;
  }

  private locate(tMs: number): { k: number; f: number } {
    const day = Math.floor(tMs / DAY_MS);
    if (day !== this.day) {
      this.day = day;
      this.known = -1;
    }
    const x = (tMs - day * DAY_MS) / KNOT_MS;
    const k = Math.min(Math.floor(x), KNOTS_PER_DAY - 1);
    this.fill(k + 1);
    return { k, f: x - k };
  }

  /** Extends the knot tables up to index `upTo`, lazily: a run only pays for the hours it covers. */
  private fill(upTo: number): void {
    const base = this.day * DAY_MS;
    if (this.known < 0) {
      this.hr[0] = this.rate(base);
      this.cum[0] = 0;
      this.known = 0;
    }
    for (let k = this.known + 1; k <= upTo; k++) {
      this.hr[k] = this.rate(base + k * KNOT_MS);
      this.cum[k] = this.cum[k - 1]! + ((this.hr[k - 1]! + this.hr[k]!) / 2) * (KNOT_MS / 60_000);
    }
    if (upTo > this.known) this.known = upTo;
  }
}

interface Wave {
  /** Centre relative to the R peak, seconds; P and T scale with √RR (Bazett), QRS does not. */
  at: number;
  scalesWithRr: boolean;
  width: number;
  /** Amplitude relative to the patient's R amplitude. */
  amp: number;
}

const WAVES: readonly Wave[] = [
  { at: -0.16, scalesWithRr: true, width: 0.022, amp: 0.11 }, // P
  { at: -0.028, scalesWithRr: false, width: 0.009, amp: -0.09 }, // Q
  { at: 0, scalesWithRr: false, width: 0.01, amp: 1 }, // R
  { at: 0.03, scalesWithRr: false, width: 0.01, amp: -0.2 }, // S
  { at: 0.3, scalesWithRr: true, width: 0.045, amp: 0.26 }, // T
];

/**
 * The PQRST complex at time `t` (mV, without baseline or noise). Sums the beats before and
 * after the nearest R peak too, so the tail of a T wave runs smoothly into the next P.
 */
export function pqrst(phase: number, rateBpm: number, rAmplitudeMv: number): number {
  const rr = 60 / clamp(rateBpm, 30, 220);
  const sq = Math.sqrt(rr);
  const n = Math.round(phase);
  let v = 0;
  for (let j = n - 1; j <= n + 1; j++) {
    const dt = (phase - j) * rr;
    for (const w of WAVES) {
      const mu = w.scalesWithRr ? w.at * sq : w.at;
      const sigma = w.scalesWithRr ? w.width * sq : w.width;
      const z = (dt - mu) / sigma;
      if (z > -6 && z < 6) v += w.amp * Math.exp(-0.5 * z * z);
    }
  }
  return v * rAmplitudeMv;
}
