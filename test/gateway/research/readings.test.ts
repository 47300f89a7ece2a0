/**
 * The researcher export's reader (gateway/research/readings.ts) against a store that behaves
 * like InfluxDB where it matters: rows ordered by time only (ties in an order of its own), a
 * LIMIT that cuts anywhere inside a run of equal times. Pages must neither skip nor repeat a
 * frame at their edges, whatever the page and chunk sizes; frames are served only from their
 * signed bytes (a stored point that does not verify is skipped), cut at the window's edges.
 */
import { describe, expect, it } from 'vitest';
import { decodeFrame, sampleValue } from '../../../firmware-proto/frame.js';
import { sha256Hex } from '../../../gateway/ingest/spool-record.js';
import { sensorByName } from '../../../firmware-proto/catalogue.js';
import {
  compareKeys,
  decodeCursor,
  encodeCursor,
  scanReadings,
  type CursorKey,
  type ReadingsDeps,
  type ServedFrame,
} from '../../../gateway/research/readings.js';
import type { StoredFrame } from '../../../gateway/storage/schema.js';
import { heartRate, testDevice, type TestDevice } from '../../support/devices.js';

const T0 = 1_795_000_000_000;
const PATIENT = 'pt-readings';

/** Frames of three devices of one patient, all at the same instants (ties), plus one of another patient. */
function world(): { devices: TestDevice[]; rows: StoredFrame[]; other: TestDevice } {
  const devices = ['a', 'b', 'c'].map((n) => testDevice(`readings-${n}`, PATIENT));
  const other = testDevice('readings-other', 'pt-someone-else');
  const rows: StoredFrame[] = [];
  const store = (d: TestDevice, patient: string, startMs: number): void => {
    const { raw } = d.core.record(heartRate(startMs, [60, 61, 62, 63, 64]));
    const f = decodeFrame(raw);
    rows.push({
      timeNs: BigInt(startMs) * 1_000_000n,
      device: d.id,
      patient,
      gateway: 'gw',
      sensor: 'heart_rate',
      seq: f.seq,
      sha256: sha256Hex(raw),
      raw,
      count: f.count,
      intervalUs: f.intervalUs,
      receivedAtMs: startMs,
      transport: 'mqtt',
      lsn: 0n,
      acceptances: [{ gateway: 'gw', receivedAtMs: startMs, transport: 'mqtt', lsn: 0n }],
    });
  };
  for (let i = 0; i < 12; i++) for (const d of devices) store(d, PATIENT, T0 + i * 5000);
  store(other, PATIENT, T0 + 7000); // tagged as our patient, but enrolled for another: never served
  return { devices, rows, other };
}

/** InfluxDB-like: time order only, ties in reverse device order, LIMIT cuts anywhere. */
function fakeSink(rows: StoredFrame[], queries: { limit?: number }[] = []): ReadingsDeps['sink'] {
  return {
    queryPatientFrames: (patient, sensors, range, limit) => {
      queries.push({ ...(limit !== undefined ? { limit } : {}) });
      const out = rows
        .filter((r) => r.patient === patient && sensors.includes(r.sensor))
        .filter(
          (r) =>
            (range.atNs === undefined || r.timeNs === range.atNs) &&
            (range.fromNs === undefined || r.timeNs >= range.fromNs) &&
            (range.toNs === undefined || r.timeNs <= range.toNs),
        )
        .sort((a, b) => (a.timeNs !== b.timeNs ? (a.timeNs < b.timeNs ? -1 : 1) : a.device < b.device ? 1 : -1));
      return Promise.resolve(limit === undefined ? out : out.slice(0, limit));
    },
  };
}

function deps(devices: TestDevice[], other: TestDevice, rows: StoredFrame[], warnings: string[] = []): ReadingsDeps {
  const all = new Map([...devices, other].map((d) => [d.id, { publicKey: d.keys.publicKey, patient: d.patient }]));
  return { sink: fakeSink(rows), deviceOf: (id) => all.get(id), log: { warn: (o: object) => void warnings.push((o as { why: string }).why) } };
}

async function page(
  d: ReadingsDeps,
  after: CursorKey | undefined,
  limit: number,
  chunk: number,
  fromMs = T0,
  toMs = T0 + 60_000,
): Promise<{ frames: ServedFrame[]; next: CursorKey | undefined }> {
  const frames: ServedFrame[] = [];
  for await (const f of scanReadings(d, {
    pseudonym: PATIENT,
    sensors: [sensorByName('heart_rate')],
    fromMs,
    toMs,
    allowed: () => true,
    ...(after ? { after } : {}),
    chunk,
  })) {
    if (frames.length === limit)
      return { frames, next: { timeNs: frames[limit - 1]!.timeNs, deviceId: frames[limit - 1]!.deviceId, seq: frames[limit - 1]!.seq } };
    frames.push(f);
  }
  return { frames, next: undefined };
}

describe('readings export: paging', () => {
  it('serves every frame once, in (time, device, seq) order, for any page and chunk size, across runs of equal times', async () => {
    const { devices, rows, other } = world();
    const d = deps(devices, other, rows);
    const expected = rows
      .filter((r) => r.device !== other.id)
      .map((r) => `${r.timeNs}/${r.device}/${r.seq}`)
      .sort();
    for (const [limit, chunk] of [
      [1, 2],
      [2, 2],
      [4, 3],
      [5, 1],
      [7, 5],
      [36, 36],
      [100, 4],
    ] as const) {
      const seen: ServedFrame[] = [];
      let after: CursorKey | undefined;
      let pages = 0;
      do {
        const p = await page(d, after, limit, chunk);
        seen.push(...p.frames);
        after = p.next;
        pages++;
      } while (after);
      expect(
        seen.map((f) => `${f.timeNs}/${f.deviceId}/${f.seq}`),
        `limit ${limit} chunk ${chunk}`,
      ).toEqual(expected);
      for (let i = 1; i < seen.length; i++) expect(compareKeys(seen[i - 1]!, seen[i]!)).toBe(-1);
      expect(pages).toBe(Math.max(1, Math.ceil(36 / limit)));
    }
  });

  it('cuts frames at the edges of the range and never serves a frame wholly outside it', async () => {
    const { devices, rows, other } = world();
    const d = deps(devices, other, rows);
    // [T0 + 12 s, T0 + 21 s]: frames at +10 s (samples +10…+14) are cut to +12…+14; +25 s is outside.
    const { frames } = await page(d, undefined, 1000, 1000, T0 + 12_000, T0 + 21_000);
    expect(frames.map((f) => Number(f.timeNs / 1_000_000n) - T0)).toEqual([10_000, 10_000, 10_000, 15_000, 15_000, 15_000, 20_000, 20_000, 20_000]);
    expect(frames[0]!.readings.map((r) => r.timeMs - T0)).toEqual([12_000, 13_000, 14_000]);
    expect(frames[8]!.readings.map((r) => r.timeMs - T0)).toEqual([20_000, 21_000]);
    const raw = decodeFrame(frames[0]!.stored.raw);
    expect(frames[0]!.readings.map((r) => r.values['value'])).toEqual([2, 3, 4].map((i) => sampleValue(raw, i)));
  });

  it('serves only frames that verify: edited bytes, tags that lie, or a device enrolled for another patient are skipped and logged', async () => {
    const { devices, rows, other } = world();
    const warnings: string[] = [];
    const tampered = rows.map((r) => ({ ...r }));
    const first = tampered[0]!;
    const raw = Buffer.from(first.raw);
    raw[40] = raw[40]! ^ 1; // a sample byte, under the signature
    first.raw = raw;
    tampered[1]!.seq = tampered[1]!.seq + 100n; // the tag no longer names the signed frame
    const d = deps(devices, other, tampered, warnings);
    const { frames } = await page(d, undefined, 1000, 10);
    expect(frames.length).toBe(34);
    expect(warnings.sort()).toEqual(['bad signature', 'device enrolled for another patient', 'tags differ from the signed frame']);
  });

  it('cursors are bound to their grant and refuse anything else', () => {
    const key = { timeNs: 123n * 1_000_000n, deviceId: '0011223344556677', seq: 9n };
    const c = encodeCursor(7n, key);
    expect(decodeCursor(c, 7n)).toEqual(key);
    expect(decodeCursor(c, 8n)).toBeUndefined();
    expect(decodeCursor('not-a-cursor', 7n)).toBeUndefined();
    expect(decodeCursor(Buffer.from('{"v":1,"g":"7","t":"1","d":"zz","s":"1"}').toString('base64url'), 7n)).toBeUndefined();
  });
});
