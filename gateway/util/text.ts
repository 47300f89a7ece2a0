/**
 * The text of a value read from outside (a JSON answer of InfluxDB, a field of a proof
 * bundle): scalars as String() writes them, and anything structured as JSON, so that an
 * unexpected object shows what it holds instead of "[object Object]".
 */
export function textOf(v: unknown): string {
  if (typeof v === 'object' && v !== null) {
    try {
      return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
    } catch {
      return Object.prototype.toString.call(v);
    }
  }
  return String(v as string | number | boolean | bigint | symbol | undefined | null);
}
