/**
 * The retry delay of the gateway's writers and anchorer while what they write to is down:
 * exponential from `minMs`, capped at `maxMs`, with ±25 % jitter so that many gateways do not
 * retry a recovering InfluxDB or chain node in step.
 */
export function retryDelayMs(attempt: number, minMs: number, maxMs: number): number {
  const delay = Math.min(maxMs, minMs * 2 ** Math.min(attempt - 1, 16));
  return delay * (0.75 + Math.random() * 0.5);
}
