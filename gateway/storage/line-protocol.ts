/**
 * InfluxDB 1.x line protocol, written exactly: integers from bigint without a detour
 * through float64, floats in their shortest round-trip form, and the escaping rules of
 * the 1.x parser. Knows nothing about frames or sensors.
 *
 *   measurement[,tag=value...] field=value[,field=value...] timestamp-ns
 */

export type FieldValue = { kind: 'float'; value: number } | { kind: 'int'; value: bigint } | { kind: 'string'; value: string };

export interface LinePoint {
  measurement: string;
  /** Written in key order, which is what InfluxDB expects for best performance. Empty values are left out. */
  tags: Record<string, string>;
  fields: Record<string, FieldValue>;
  /** ns since the epoch. */
  timeNs: bigint;
}

/** InfluxDB 1.x keeps time as int64 ns; the parser refuses the two extreme values. */
export const MIN_TIME_NS = -(2n ** 63n) + 2n;
export const MAX_TIME_NS = 2n ** 63n - 2n;

export const float = (value: number): FieldValue => ({ kind: 'float', value });
/** WARNING: InfluxDB 1.x integers are int64; a value ≥ 2^63 must be mapped by the caller first. */
export const int = (value: bigint | number): FieldValue => ({ kind: 'int', value: BigInt(value) });
export const str = (value: string): FieldValue => ({ kind: 'string', value });

/**
 * One line of line protocol.
 * @throws TypeError for a value the 1.x protocol cannot carry: a newline in a name, tag or
 *   string, a tag value ending in a backslash, a non-finite float, an int64 overflow, or a
 *   time outside MIN_TIME_NS … MAX_TIME_NS.
 */
export function toLine(p: LinePoint): string {
  return pointLine(seriesKey(p.measurement, p.tags), p.fields, p.timeNs);
}

/**
 * The escaped `measurement,tag=value,...` prefix; compute it once for many points of one series.
 * @throws TypeError as toLine.
 */
export function seriesKey(measurement: string, tags: Record<string, string>): string {
  let key = escapeName(measurement, /[, ]/g);
  for (const k of Object.keys(tags).sort()) {
    const v = tags[k]!;
    if (v === '') continue; // "missing tag value" is a parse error; an absent tag reads back as ''
    key += `,${escapeName(k, /[,= ]/g)}=${escapeTagValue(v)}`;
  }
  return key;
}

/** A line from a prefix made by seriesKey. @throws TypeError as toLine. */
export function pointLine(key: string, fields: Record<string, FieldValue>, timeNs: bigint): string {
  let text = '';
  for (const k in fields) text += `${text ? ',' : ''}${escapeName(k, /[,= ]/g)}=${fieldValue(fields[k]!)}`;
  if (!text) throw new TypeError(`point of "${key}" has no fields`);
  if (timeNs < MIN_TIME_NS || timeNs > MAX_TIME_NS) throw new TypeError(`time ${timeNs} ns is outside what InfluxDB can store`);
  return `${key} ${text} ${timeNs}`;
}

function escapeName(s: string, special: RegExp): string {
  if (s === '') throw new TypeError('empty measurement, tag or field name');
  noNewline(s);
  return s.replace(special, (c) => `\\${c}`);
}

// In 1.x a backslash is literal unless it precedes a comma, equals sign or space; so a
// value ending in one would escape the delimiter that follows it.
function escapeTagValue(s: string): string {
  if (s.endsWith('\\')) throw new TypeError(`tag value ${JSON.stringify(s)} ends with a backslash, which line protocol cannot carry`);
  return escapeName(s, /[,= ]/g);
}

function fieldValue(v: FieldValue): string {
  switch (v.kind) {
    case 'float':
      if (!Number.isFinite(v.value)) throw new TypeError(`float field is ${v.value}`);
      return String(v.value); // shortest string that parses back to the same float64
    case 'int':
      if (v.value !== BigInt.asIntN(64, v.value)) throw new TypeError(`integer ${v.value} does not fit int64`);
      return `${v.value}i`;
    case 'string':
      noNewline(v.value);
      return `"${v.value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
  }
}

function noNewline(s: string): void {
  if (/[\r\n]/.test(s)) throw new TypeError(`${JSON.stringify(s)} contains a line break, which line protocol cannot carry`);
}
