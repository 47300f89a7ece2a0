/**
 * The enrolment file (`vitalproof enrol FILE`; docs/enrolment.md, schema
 * docs/enrolment.schema.json): what it must hold, and how a malformed one is refused.
 *
 * A file is judged in two layers. The file itself (JSON, `version` 1, a `devices` array) is
 * all or nothing: a file that fails here enrols no device and throws an EnrolmentError. Each
 * entry of `devices` is then judged on its own: an entry whose shape is wrong (a missing field,
 * a field of the wrong JSON type, a sensor given by its code instead of its name) is refused
 * with an ENROL_* code, and the other entries are still enrolled. The same holds for the
 * registry's own checks of the values (checkEnrolment: device id, key rule of PROTOCOL.md §2.2,
 * pseudonym; KEY_CONFLICT). Why per entry: enrolment is idempotent (an entry enrolled already
 * is `unchanged`), so an operator fixes the refused entries and runs the same file again, and
 * one typo does not hold back a ward's worth of devices.
 */
import { readFileSync } from 'node:fs';
import { CodedError, type ErrorDetail, type Remedies } from '../../firmware-proto/coded-error.js';
import { SENSORS } from '../../firmware-proto/catalogue.js';
import type { DeviceRegistry, EnrolRefusal, EnrolResult, EnrolmentEntry } from './registry.js';

export const ENROL_ERRORS = {
  ENROL_UNREADABLE: 'the enrolment file could not be read',
  ENROL_NOT_JSON: 'the enrolment file is not JSON',
  ENROL_NOT_ENROLMENT_FILE: 'the enrolment file must be a JSON object { "version": 1, "devices": [...] }',
  ENROL_BAD_VERSION: 'the enrolment file\'s "version" must be 1',
  ENROL_NOT_AN_OBJECT: 'an entry of "devices" must be a JSON object',
  ENROL_MISSING_FIELD: 'an entry of "devices" lacks a required field (deviceId, publicKey, patient)',
  ENROL_WRONG_TYPE: 'a field of an entry has the wrong JSON type (deviceId, publicKey, patient, firmware: strings; sensors: an array of strings)',
  ENROL_UNKNOWN_SENSOR: 'a sensor is not a name of the sensor catalogue (PROTOCOL.md §4); sensors are given by name, not by code',
} as const;
export type EnrolErrorCode = keyof typeof ENROL_ERRORS;

/** What to do about each refusal (docs/errors.md). */
export const ENROL_ERROR_REMEDIES: Remedies<EnrolErrorCode> = {
  ENROL_UNREADABLE: 'Check the path and its permissions.',
  ENROL_NOT_JSON: 'Fix the JSON (the message says where it stops parsing).',
  ENROL_NOT_ENROLMENT_FILE: 'Write the file as docs/enrolment.md shows: `{ "version": 1, "devices": [...] }`.',
  ENROL_BAD_VERSION: 'Set "version" to 1.',
  ENROL_NOT_AN_OBJECT: 'Make each entry of "devices" an object (docs/enrolment.schema.json); the other devices are enrolled.',
  ENROL_MISSING_FIELD: 'Give the entry its deviceId, publicKey and patient; the other devices are enrolled.',
  ENROL_WRONG_TYPE: 'Give each field its JSON type (docs/enrolment.schema.json); the other devices are enrolled.',
  ENROL_UNKNOWN_SENSOR: 'Name the sensors as PROTOCOL.md §4 does (`heart_rate`, not 1); the other devices are enrolled.',
};

export class EnrolmentError extends CodedError<EnrolErrorCode> {
  constructor(code: EnrolErrorCode, detail?: ErrorDetail, options?: ErrorOptions) {
    super(ENROL_ERRORS, code, detail, options);
  }
}

/** The only version of the file there is. */
export const ENROLMENT_FILE_VERSION = 1;

/**
 * The fields of an entry and their JSON types: the validator below and
 * docs/enrolment.schema.json both follow this table (test/gateway/registry/enrolment.test.ts
 * holds them to it). Encodings (hex digits, the pseudonym's characters) are the registry's
 * checks (checkEnrolment), with their own reasons.
 */
export const ENROLMENT_FIELDS = [
  { name: 'deviceId', type: 'string', required: true },
  { name: 'publicKey', type: 'string', required: true },
  { name: 'patient', type: 'string', required: true },
  { name: 'sensors', type: 'string[]', required: false },
  { name: 'firmware', type: 'string', required: false },
] as const;

/** An entry the file layer refused: where it is in the file, what to call it, and why. */
export interface EntryRefusal {
  /** Index in `devices`. */
  entry: number;
  /** The entry's deviceId when it is a string, else `devices[i]`. */
  deviceId: string;
  error: EnrolmentError;
}

export interface EnrolmentFileContents {
  /** The well-formed entries, in file order; publicKey lowercased. */
  entries: EnrolmentEntry[];
  refused: EntryRefusal[];
}

const SENSOR_NAMES = new Set(SENSORS.map((s) => s.name));

/**
 * Parses an enrolment file's text.
 * @throws EnrolmentError ENROL_NOT_JSON, ENROL_NOT_ENROLMENT_FILE, ENROL_BAD_VERSION: the
 *   file as a whole is refused. Entries are never thrown: they come back in `refused`.
 */
export function parseEnrolmentFile(text: string): EnrolmentFileContents {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new EnrolmentError('ENROL_NOT_JSON', { found: (e as Error).message });
  }
  if (!isObject(doc) || !('devices' in doc) || !Array.isArray(doc.devices)) {
    const found = !isObject(doc) ? jsonType(doc) : 'devices' in doc ? `"devices" is ${jsonType(doc.devices)}` : 'an object without "devices"';
    throw new EnrolmentError('ENROL_NOT_ENROLMENT_FILE', { expected: '{ "version": 1, "devices": [...] }', found });
  }
  if (doc.version !== ENROLMENT_FILE_VERSION) throw new EnrolmentError('ENROL_BAD_VERSION', { expected: ENROLMENT_FILE_VERSION, found: doc.version ?? null });
  const out: EnrolmentFileContents = { entries: [], refused: [] };
  doc.devices.forEach((d: unknown, i: number) => {
    const r = checkEntry(d, i);
    if ('error' in r) out.refused.push(r);
    else out.entries.push(r);
  });
  return out;
}

/**
 * Reads and parses an enrolment file.
 * @throws EnrolmentError ENROL_UNREADABLE (detail: path, found: the system's reason), or a
 *   file-level refusal of parseEnrolmentFile.
 */
export function readEnrolmentFile(path: string): EnrolmentFileContents {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new EnrolmentError('ENROL_UNREADABLE', { path, found: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
  }
  return parseEnrolmentFile(text);
}

/** The result of enrolling a file: the registry's, with the file layer's refusals first. */
export interface FileEnrolResult extends Omit<EnrolResult, 'refused'> {
  refused: { deviceId: string; reason: EnrolRefusal | EnrolErrorCode; detail: string }[];
}

/**
 * Enrols the well-formed entries of a parsed file (the registry checks and refuses values on
 * its own) and reports the malformed ones as refused, each with its code and a detail that
 * names the entry and field.
 */
export async function enrolFile(registry: Pick<DeviceRegistry, 'enrol'>, file: EnrolmentFileContents): Promise<FileEnrolResult> {
  const res = file.entries.length ? await registry.enrol(file.entries) : { enrolled: [], unchanged: [], refused: [] };
  return {
    enrolled: res.enrolled,
    unchanged: res.unchanged,
    refused: [...file.refused.map((r) => ({ deviceId: r.deviceId, reason: r.error.code, detail: refusalDetail(r) })), ...res.refused],
  };
}

/** `devices[1].sensors[0]: expected …, found …`: one line, for the CLI. */
export function refusalDetail(r: EntryRefusal): string {
  const { field, expected, found } = r.error.detail as { field?: string; expected: string; found: string };
  return `devices[${r.entry}]${field ? `.${field}` : ''}: expected ${expected}, found ${found}`;
}

function checkEntry(d: unknown, i: number): EnrolmentEntry | EntryRefusal {
  const refuse = (code: EnrolErrorCode, field: string | undefined, expected: string, found: string): EntryRefusal => {
    const deviceId = isObject(d) && typeof d.deviceId === 'string' ? d.deviceId : `devices[${i}]`;
    return { entry: i, deviceId, error: new EnrolmentError(code, { entry: i, ...(field ? { field } : {}), expected, found }) };
  };
  if (!isObject(d)) return refuse('ENROL_NOT_AN_OBJECT', undefined, 'an object', jsonType(d));
  for (const f of ENROLMENT_FIELDS) {
    if (!(f.name in d)) {
      if (f.required) return refuse('ENROL_MISSING_FIELD', f.name, `a ${f.type}`, 'no such field');
      continue;
    }
    const v = d[f.name];
    if (f.type === 'string' && typeof v !== 'string') return refuse('ENROL_WRONG_TYPE', f.name, 'a string', jsonType(v));
    if (f.type === 'string[]') {
      if (!Array.isArray(v)) return refuse('ENROL_WRONG_TYPE', f.name, 'an array of sensor names', jsonType(v));
      for (const [j, s] of (v as unknown[]).entries()) {
        if (typeof s === 'string' && SENSOR_NAMES.has(s)) continue;
        const byCode = typeof s === 'number' ? SENSORS.find((x) => x.code === s) : undefined;
        return refuse(
          'ENROL_UNKNOWN_SENSOR',
          `${f.name}[${j}]`,
          `a sensor name (${[...SENSOR_NAMES].join(', ')})`,
          byCode ? `${s}, the code of ${byCode.name}: give its name` : JSON.stringify(s),
        );
      }
    }
  }
  const e = d as { deviceId: string; publicKey: string; patient: string; sensors?: string[]; firmware?: string };
  return {
    deviceId: e.deviceId,
    publicKey: e.publicKey.toLowerCase(),
    patient: e.patient,
    sensors: e.sensors ?? [],
    ...(e.firmware ? { firmware: e.firmware } : {}),
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function jsonType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v} (${JSON.stringify(v)})`;
}
