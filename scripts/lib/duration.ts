/** Command-line values shared by the demo and the bench. */

/** "90s" → 90000; "500ms", "5m", "1h"; a bare number is seconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new TypeError(`"${s}" is not a duration (e.g. 500ms, 90s, 5m, 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Number(m[1]) * unit;
  if (!(ms > 0)) throw new TypeError(`duration must be > 0, got "${s}"`);
  return ms;
}

export function positiveInt(name: string, s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new TypeError(`--${name} must be a positive integer, got "${s}"`);
  return n;
}
