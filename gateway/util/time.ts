/**
 * A time given on a command line or in a query: Unix ms (digits only) or ISO 8601.
 * @returns undefined when absent or empty; NaN when unreadable (callers decide how to refuse it).
 */
export function parseTimeMs(v: string | null | undefined): number | undefined {
  if (v === null || v === undefined || v === '') return undefined;
  return /^\d+$/.test(v) ? Number(v) : Date.parse(v);
}
