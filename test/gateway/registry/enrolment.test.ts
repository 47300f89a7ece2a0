/**
 * The enrolment file reader (gateway/registry/enrolment.ts) against its spec: every malformed
 * case gets its code, and docs/enrolment.schema.json agrees with the reader (no JSON Schema
 * validator is installed, so `schemaErrors` below evaluates the keywords the schema uses, and
 * the first test fails if the schema starts using another one).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SENSORS } from '../../../firmware-proto/catalogue.js';
import { fleetDevices } from '../../../device-sim/fleet.js';
import { enrolFile, ENROL_ERRORS, ENROLMENT_FIELDS, parseEnrolmentFile, readEnrolmentFile, type EnrolErrorCode } from '../../../gateway/registry/enrolment.js';
import { checkEnrolment, PSEUDONYM } from '../../../gateway/registry/registry.js';
import { FileRegistry } from '../../../gateway/registry/file-registry.js';
import { isError } from '../../../firmware-proto/coded-error.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = Record<string, Json>;

const schema = JSON.parse(readFileSync(new URL('../../../docs/enrolment.schema.json', import.meta.url), 'utf8')) as Schema;
const example = (schema.examples as Json[])[0] as { version: number; devices: Record<string, Json>[] };
const entrySchema = ((schema.properties as Schema).devices as Schema).items as Schema;

const ANNOTATIONS = new Set(['$schema', 'title', 'description', 'examples']);
const KEYWORDS = new Set(['type', 'required', 'properties', 'items', 'enum', 'const', 'pattern']);

/** JSON Schema 2020-12 for the keywords above: the paths of the failures, [] when `v` is valid. */
function schemaErrors(s: Schema, v: Json, path = '$'): string[] {
  const out: string[] = [];
  const t = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' && Number.isInteger(v) ? 'integer' : typeof v;
  if (s.type !== undefined && !(s.type === t || (s.type === 'number' && t === 'integer'))) return [`${path}: type`];
  if (s.const !== undefined && JSON.stringify(s.const) !== JSON.stringify(v)) out.push(`${path}: const`);
  if (s.enum !== undefined && !(s.enum as Json[]).some((e) => JSON.stringify(e) === JSON.stringify(v))) out.push(`${path}: enum`);
  if (s.pattern !== undefined && typeof v === 'string' && !new RegExp(s.pattern as string, 'u').test(v)) out.push(`${path}: pattern`);
  if (t === 'object') {
    const o = v as Record<string, Json>;
    for (const r of (s.required as string[] | undefined) ?? []) if (!(r in o)) out.push(`${path}.${r}: required`);
    for (const [k, sub] of Object.entries((s.properties as Record<string, Schema> | undefined) ?? {}))
      if (k in o) out.push(...schemaErrors(sub, o[k]!, `${path}.${k}`));
  }
  if (t === 'array' && s.items !== undefined) (v as Json[]).forEach((x, i) => out.push(...schemaErrors(s.items as Schema, x, `${path}[${i}]`)));
  return out;
}

function keywordsOf(s: Schema, into = new Set<string>()): Set<string> {
  for (const [k, v] of Object.entries(s)) {
    if (ANNOTATIONS.has(k)) continue;
    into.add(k);
    if (k === 'properties') for (const sub of Object.values(v as Record<string, Schema>)) keywordsOf(sub, into);
    if (k === 'items') keywordsOf(v as Schema, into);
  }
  return into;
}

/** What the gateway makes of a file: the file-level code, or per entry its refusal code or 'ok'. */
function gatewayVerdict(text: string): { file: EnrolErrorCode } | { entries: string[] } {
  let parsed;
  try {
    parsed = parseEnrolmentFile(text);
  } catch (e) {
    if (!isError(e)) throw e;
    return { file: e.code as EnrolErrorCode };
  }
  const verdict: string[] = [];
  for (const r of parsed.refused) verdict[r.entry] = r.error.code;
  let i = 0;
  for (const e of parsed.entries) {
    while (verdict[i] !== undefined) i++;
    verdict[i++] = checkEnrolment(e)?.reason ?? 'ok';
  }
  return { entries: verdict };
}

const good = example.devices[0]!;
const withEntry = (patch: Record<string, Json | undefined>): Json => {
  const e: Record<string, Json> = { ...good };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  return { version: 1, devices: [e, example.devices[1]!] };
};

/** Malformed files the schema refuses, with the gateway's code for each. */
const SHAPE_CASES: [string, Json, EnrolErrorCode | string][] = [
  ['a top-level array', [good], 'ENROL_NOT_ENROLMENT_FILE'],
  ['no devices', { version: 1 }, 'ENROL_NOT_ENROLMENT_FILE'],
  ['devices as an object', { version: 1, devices: { a: good } }, 'ENROL_NOT_ENROLMENT_FILE'],
  ['version 2', { version: 2, devices: [good] }, 'ENROL_BAD_VERSION'],
  ['version "1"', { version: '1', devices: [good] }, 'ENROL_BAD_VERSION'],
  ['no version', { devices: [good] }, 'ENROL_BAD_VERSION'],
  ['an entry that is a string', { version: 1, devices: ['594d599fb34f57a7', example.devices[1]!] }, 'ENROL_NOT_AN_OBJECT'],
  ['an entry that is null', { version: 1, devices: [null, example.devices[1]!] }, 'ENROL_NOT_AN_OBJECT'],
  ['no deviceId', withEntry({ deviceId: undefined }), 'ENROL_MISSING_FIELD'],
  ['no publicKey', withEntry({ publicKey: undefined }), 'ENROL_MISSING_FIELD'],
  ['no patient', withEntry({ patient: undefined }), 'ENROL_MISSING_FIELD'],
  ['a numeric deviceId', withEntry({ deviceId: 6434319425113870000 }), 'ENROL_WRONG_TYPE'],
  ['publicKey as a byte array', withEntry({ publicKey: [70, 229, 66] }), 'ENROL_WRONG_TYPE'],
  ['patient null', withEntry({ patient: null }), 'ENROL_WRONG_TYPE'],
  ['sensors as a string', withEntry({ sensors: 'heart_rate,spo2' }), 'ENROL_WRONG_TYPE'],
  ['firmware as a number', withEntry({ firmware: 1.2 }), 'ENROL_WRONG_TYPE'],
  ['sensors as numeric codes', withEntry({ sensors: [1, 2, 3] }), 'ENROL_UNKNOWN_SENSOR'],
  ['a sensor name not in the catalogue', withEntry({ sensors: ['heart_rate', 'blood_pressure'] }), 'ENROL_UNKNOWN_SENSOR'],
  ['a sensor name in capitals', withEntry({ sensors: ['HEART_RATE'] }), 'ENROL_UNKNOWN_SENSOR'],
  ['a deviceId in capitals', withEntry({ deviceId: (good.deviceId as string).toUpperCase() }), 'BAD_DEVICE_ID'],
  ['a deviceId of 15 digits', withEntry({ deviceId: (good.deviceId as string).slice(1) }), 'BAD_DEVICE_ID'],
  ['a publicKey of 62 digits', withEntry({ publicKey: (good.publicKey as string).slice(2) }), 'KEY_WRONG_LENGTH'],
  ['a publicKey in base64', withEntry({ publicKey: Buffer.from(good.publicKey as string, 'hex').toString('base64') }), 'KEY_WRONG_LENGTH'],
  ['a patient name with a space', withEntry({ patient: 'Jane Doe' }), 'BAD_PSEUDONYM'],
  ['a patient of 2 characters', withEntry({ patient: 'pt' }), 'BAD_PSEUDONYM'],
];

/** Entries the schema cannot refuse (curve arithmetic, a hash), refused by the gateway. */
const BEYOND_SCHEMA: [string, Json, string][] = [
  ['a small-order key (the identity point)', withEntry({ publicKey: `01${'00'.repeat(31)}` }), 'KEY_SMALL_ORDER'],
  ['a non-canonical key (y = p)', withEntry({ publicKey: `ed${'ff'.repeat(30)}7f` }), 'KEY_NON_CANONICAL'],
  ['the key of the other device', withEntry({ publicKey: example.devices[1]!.publicKey }), 'DEVICE_ID_MISMATCH'],
];

describe('docs/enrolment.schema.json', () => {
  it('uses only the keywords this test evaluates', () => {
    expect([...keywordsOf(schema)].filter((k) => !KEYWORDS.has(k))).toEqual([]);
  });

  it("lists the reader's fields, types and required set, and the catalogue's sensor names", () => {
    const props = entrySchema.properties as Record<string, Schema>;
    expect(Object.keys(props)).toEqual(ENROLMENT_FIELDS.map((f) => f.name));
    expect(entrySchema.required).toEqual(ENROLMENT_FIELDS.filter((f) => f.required).map((f) => f.name));
    for (const f of ENROLMENT_FIELDS) expect(props[f.name]!.type).toBe(f.type === 'string[]' ? 'array' : 'string');
    expect((props.sensors!.items as Schema).enum).toEqual(SENSORS.map((s) => s.name));
    expect(props.patient!.pattern).toBe(PSEUDONYM.source);
    expect(schema.required).toEqual(['version', 'devices']);
  });

  it('holds the example of docs/enrolment.md, which the schema and the gateway both accept', () => {
    const md = readFileSync(new URL('../../../docs/enrolment.md', import.meta.url), 'utf8');
    const block = /## Example\s+```json\n([\s\S]*?)```/.exec(md)?.[1];
    expect(JSON.parse(block!)).toEqual(example);
    expect(schemaErrors(schema, example as unknown as Json)).toEqual([]);
    expect(gatewayVerdict(JSON.stringify(example))).toEqual({ entries: ['ok', 'ok'] });
  });

  it.each(SHAPE_CASES)('%s: the schema refuses it and the gateway refuses it as %s', (_name, doc, code) => {
    expect(schemaErrors(schema, doc)).not.toEqual([]);
    const v = gatewayVerdict(JSON.stringify(doc));
    if (code in ENROL_ERRORS && !['ENROL_NOT_AN_OBJECT', 'ENROL_MISSING_FIELD', 'ENROL_WRONG_TYPE', 'ENROL_UNKNOWN_SENSOR'].includes(code))
      expect(v).toEqual({ file: code });
    else expect(v).toEqual({ entries: [code, 'ok'] }); // the other entry is still acceptable
  });

  it.each(BEYOND_SCHEMA)('%s: the schema accepts it, the gateway refuses it as %s', (_name, doc, code) => {
    expect(schemaErrors(schema, doc)).toEqual([]);
    expect(gatewayVerdict(JSON.stringify(doc))).toEqual({ entries: [code, 'ok'] });
  });
});

describe('parseEnrolmentFile', () => {
  it('refuses text that is not JSON as a whole', () => {
    expect(gatewayVerdict('{"version": 1, "devices": [')).toEqual({ file: 'ENROL_NOT_JSON' });
  });

  it('names a refused entry by its deviceId, else by its index, and says what was expected and found', () => {
    const doc = {
      version: 1,
      devices: [
        { ...good, sensors: [1, 6] },
        { publicKey: good.publicKey, patient: 'pt-x1' },
      ],
    };
    const { entries, refused } = parseEnrolmentFile(JSON.stringify(doc));
    expect(entries).toEqual([]);
    expect(refused.map((r) => [r.entry, r.deviceId, r.error.code, r.error.detail])).toEqual([
      [
        0,
        good.deviceId,
        'ENROL_UNKNOWN_SENSOR',
        { entry: 0, field: 'sensors[0]', expected: expect.stringContaining('heart_rate, spo2') as string, found: '1, the code of heart_rate: give its name' },
      ],
      [1, 'devices[1]', 'ENROL_MISSING_FIELD', { entry: 1, field: 'deviceId', expected: 'a string', found: 'no such field' }],
    ]);
  });

  it('lowercases the key, ignores unknown members, and reads absent sensors as none', () => {
    const doc = {
      version: 1,
      note: 'ward 4',
      devices: [{ deviceId: good.deviceId, publicKey: (good.publicKey as string).toUpperCase(), patient: good.patient, ward: 4 }],
    };
    expect(parseEnrolmentFile(JSON.stringify(doc))).toEqual({
      entries: [{ deviceId: good.deviceId, publicKey: good.publicKey, patient: good.patient, sensors: [] }],
      refused: [],
    });
  });
});

describe('enrolFile', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vp-enrolment-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('enrols the good entries of a file with bad ones, refuses each bad one with its code, and is idempotent', async () => {
    const fleet = fleetDevices('enrolment-test', 3);
    const entry = (i: number): Record<string, Json> => ({
      deviceId: fleet[i]!.deviceId,
      publicKey: Buffer.from(fleet[i]!.keys.publicKey).toString('hex'),
      patient: fleet[i]!.patient,
      sensors: ['heart_rate'],
    });
    const doc = {
      version: 1,
      devices: [entry(0), { ...entry(1), sensors: [1] }, { ...entry(2), patient: 'Jane Doe' }, { ...entry(0), deviceId: fleet[2]!.deviceId.replace(/./, 'x') }],
    };
    const reg = new FileRegistry(join(dir, 'registry.json'));
    try {
      const res = await enrolFile(reg, parseEnrolmentFile(JSON.stringify(doc)));
      expect(res.enrolled).toEqual([fleet[0]!.deviceId]);
      expect(res.refused.map((r) => [r.deviceId, r.reason])).toEqual([
        [fleet[1]!.deviceId, 'ENROL_UNKNOWN_SENSOR'],
        [fleet[2]!.deviceId, 'BAD_PSEUDONYM'],
        [doc.devices[3]!.deviceId, 'BAD_DEVICE_ID'],
      ]);
      expect(res.refused[0]!.detail).toBe(
        `devices[1].sensors[0]: expected a sensor name (${SENSORS.map((s) => s.name).join(', ')}), found 1, the code of heart_rate: give its name`,
      );
      expect(reg.list().map((d) => d.deviceId)).toEqual([fleet[0]!.deviceId]);
      const again = await enrolFile(reg, parseEnrolmentFile(JSON.stringify({ version: 1, devices: [entry(0), entry(1)] })));
      expect(again).toEqual({ enrolled: [fleet[1]!.deviceId], unchanged: [fleet[0]!.deviceId], refused: [] });
    } finally {
      await reg.close();
    }
  });

  it('refuses a file it cannot read with ENROL_UNREADABLE', () => {
    expect(() => readEnrolmentFile(join(dir, 'missing.json'))).toThrow(
      expect.objectContaining({ code: 'ENROL_UNREADABLE', detail: { path: join(dir, 'missing.json'), found: 'ENOENT' } }) as Error,
    );
  });
});
