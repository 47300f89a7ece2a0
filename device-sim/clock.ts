/**
 * Simulated time. Device timestamps come from the real clock by default; a faster run
 * starts in the past so that no frame ever claims a time ahead of the real clock (the
 * gateway refuses frames from the future as CLOCK_SKEW).
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface SimClock {
  /** The simulated time now, ms since the epoch; never ahead of the real clock. */
  now(): number;
  /** Resolves true once now() ≥ ms, false if the signal aborts first. */
  waitUntil(ms: number, signal?: AbortSignal): Promise<boolean>;
}

/**
 * Simulated time runs `speed` times as fast as `real`, and reaches the real time at
 * `realStart + spanMs` (the end of a timed run). With speed 1 it is the real clock.
 * @throws RangeError when speed > 1 without a finite span: the simulation would overtake the real clock.
 */
export function scaledClock(speed: number, spanMs: number, real: () => number = Date.now): SimClock {
  if (!(speed > 0)) throw new RangeError(`speed must be > 0, got ${speed}`);
  if (speed > 1 && !Number.isFinite(spanMs)) throw new RangeError('a speed above 1 needs a duration: simulated time must not overtake the real clock');
  const realStart = real();
  const simStart = realStart - (speed > 1 ? spanMs * (speed - 1) : 0);
  const now = (): number => simStart + (real() - realStart) * speed;
  return {
    now,
    async waitUntil(ms, signal) {
      for (;;) {
        if (signal?.aborted) return false;
        const ahead = ms - now();
        if (ahead <= 0) return true;
        try {
          await sleep(Math.ceil(ahead / speed), undefined, { signal });
        } catch {
          return false;
        }
      }
    },
  };
}
