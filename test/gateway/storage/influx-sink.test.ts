import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { SENSORS, sensorByName } from '../../../firmware-proto/catalogue.js';
import { signFrame } from '../../../firmware-proto/device.js';
import { decodeFrame, sampleTimeNs, sampleValue, type FrameBody } from '../../../firmware-proto/frame.js';
import { generateKeys } from '../../../firmware-proto/signing.js';
import type { AcceptedFrame } from '../../../gateway/ingest/types.js';
import { isStorageError } from '../../../gateway/storage/errors.js';
import { InfluxHttp } from '../../../gateway/storage/influx-http.js';
import { InfluxSink, type InfluxSinkOptions } from '../../../gateway/storage/influx-sink.js';
import type { StoredPoint } from '../../../gateway/storage/schema.js';
import { findFreePort } from '../../../gateway/util/net.js';
import { useInfluxd } from '../../support/influxd.js';

const influx = useInfluxd();
const keys = generateKeys(new Uint8Array(32).fill(7));
const T0 = 1_700_000_000_000n;
let dbCounter = 0;

/** A fresh database per test, so counts never depend on test order. */
function sink(extra: Partial<InfluxSinkOptions> = {}): InfluxSink {
  return new InfluxSink({ url: influx.handle.url, database: `vp_test_${++dbCounter}`, gatewayId: 'gw-test', timeoutMs: 3000, ...extra });
}

/** A real signed frame, decoded as the gateway decodes it, wrapped as the spool hands it on. */
function accepted(body: Omit<FrameBody, 'deviceId'> & { deviceId?: string }, lsn: bigint, patient = 'p-0001'): AcceptedFrame {
  const raw = signFrame({ deviceId: '00112233aabbccdd', ...body }, keys.secretKey);
  return {
    lsn,
    receivedAtMs: Number(body.timestampMs) + 250,
    transport: lsn % 2n ? 'mqtt' : 'ble',
    patient,
    sha256: createHash('sha256').update(raw).digest('hex'),
    frame: decodeFrame(raw),
  };
}

/** Deterministic raw samples spread over a sensor's whole range at the given scale. */
function samples(name: string, count: number, scale: number, salt: number): Int32Array {
  const spec = sensorByName(name);
  const lo = Math.max(-(2 ** 31), Math.ceil(spec.min / 10 ** scale));
  const hi = Math.min(2 ** 31 - 1, Math.floor(spec.max / 10 ** scale));
  return Int32Array.from({ length: count * spec.channels.length }, (_, i) => lo + Math.floor((((i * 7919 + salt * 104_729) % 1000) / 999) * (hi - lo)));
}

/** One frame per catalogue sensor at its default scale, plus an ECG frame at scale −9 (nine decimals). */
function batch(): AcceptedFrame[] {
  const frames = SENSORS.map((s, k) =>
    accepted(
      {
        seq: BigInt(10 + k),
        timestampMs: T0 + BigInt(k),
        sensor: s.code,
        scale: s.defaultScale,
        intervalUs: s.defaultIntervalUs,
        samples: samples(s.name, Math.min(s.defaultSamplesPerFrame, 50), s.defaultScale, k),
      },
      BigInt(k + 1),
    ),
  );
  frames.push(
    accepted({ seq: 99n, timestampMs: T0 + 60_000n, sensor: sensorByName('ecg').code, scale: -9, intervalUs: 4000, samples: samples('ecg', 40, -9, 9) }, 100n),
  );
  return frames;
}

/** Schema v2: sample points carry no gateway tag (it read back as ''). */
function expectedPoints(frames: AcceptedFrame[], sensor: string, gateway = ''): StoredPoint[] {
  return frames
    .filter((a) => a.frame.spec.name === sensor)
    .flatMap((a) =>
      Array.from({ length: a.frame.count }, (_, i) => ({
        timeNs: sampleTimeNs(a.frame, i),
        device: a.frame.deviceId,
        patient: a.patient,
        gateway,
        seq: a.frame.seq,
        values: Object.fromEntries(a.frame.spec.channels.map((ch, c) => [ch, sampleValue(a.frame, i, c)])),
      })),
    );
}

async function countAll(s: InfluxSink): Promise<number> {
  let n = (await s.queryFrames()).length;
  for (const spec of SENSORS) n += (await s.queryPoints(spec.name)).length;
  return n;
}

describe('InfluxSink against a real influxd', () => {
  it('stores every sample exactly as sampleValue decodes it, and every frame byte for byte', async () => {
    const s = sink();
    const frames = batch();
    await s.write(frames);
    for (const spec of SENSORS) expect(await s.queryPoints(spec.name)).toEqual(expectedPoints(frames, spec.name));
    const stored = await s.queryFrames();
    expect(stored).toEqual(
      frames.map((a) => ({
        timeNs: a.frame.timestampMs * 1_000_000n,
        device: a.frame.deviceId,
        patient: a.patient,
        gateway: 'gw-test',
        sensor: a.frame.spec.name,
        seq: a.frame.seq,
        sha256: a.sha256,
        raw: a.frame.raw,
        count: a.frame.count,
        intervalUs: a.frame.intervalUs,
        receivedAtMs: a.receivedAtMs,
        transport: a.transport,
        lsn: a.lsn,
        acceptances: [{ gateway: 'gw-test', receivedAtMs: a.receivedAtMs, transport: a.transport, lsn: a.lsn }],
      })),
    );
    // The stored bytes are the signed frame: they decode to the same samples again.
    for (const f of stored) expect(createHash('sha256').update(f.raw).digest('hex')).toBe(f.sha256);
  });

  it('gives the accelerometer x, y, z and every measurement the documented field types', async () => {
    const database = 'vp_field_types';
    const s = sink({ database });
    await s.write(batch());
    const [acc] = await s.queryPoints('accelerometer');
    expect(Object.keys(acc!.values)).toEqual(['x', 'y', 'z']);
    const http = new InfluxHttp({ url: influx.handle.url });
    const fieldTypes = async (m: string): Promise<Record<string, string>> => {
      const series = await http.query(`SHOW FIELD KEYS FROM "${m}"`, { database });
      return Object.fromEntries(series.flatMap((x) => x.values.map((v) => [String(v[0]), String(v[1])])));
    };
    expect(await fieldTypes('accelerometer')).toEqual({ seq: 'integer', x: 'float', y: 'float', z: 'float' });
    expect(await fieldTypes('heart_rate')).toEqual({ seq: 'integer', value: 'float' });
    // Schema v2: the frame point holds only what the device signed; the gateway's part is its acceptance.
    expect(await fieldTypes('frames')).toEqual({ count: 'integer', interval_us: 'integer', raw: 'string', seq: 'integer', sha256: 'string' });
    expect(await fieldTypes('acceptances')).toEqual({ lsn: 'integer', received_at: 'integer', seq: 'integer', sha256: 'string', transport: 'string' });
  });

  it('is idempotent: writing the same batch twice leaves every count and value unchanged', async () => {
    const s = sink();
    const frames = batch();
    await s.write(frames);
    const before = await countAll(s);
    const ecgBefore = await s.queryPoints('ecg');
    await s.write(frames);
    await s.write(frames.slice(2, 5));
    expect(before).toBe(frames.reduce((n, a) => n + a.frame.count + 1, 0)); // countAll counts frames, not acceptances
    expect(await countAll(s)).toBe(before);
    expect(await s.queryPoints('ecg')).toEqual(ecgBefore);
  });

  it('stores a frame accepted by two gateways once, with one acceptance per gateway (schema v2)', async () => {
    const database = `vp_test_${++dbCounter}`;
    const a = sink({ database, gatewayId: 'gw-a' });
    const b = sink({ database, gatewayId: 'gw-b' });
    const frames = batch();
    await a.write(frames.map((f) => ({ ...f, placement: { batch: 7n, leaf: Number(f.lsn) } })));
    await b.write(frames.slice(1, 3).map((f) => ({ ...f, lsn: f.lsn + 100n, transport: 'ble' as const })));
    const before = await countAll(a);
    expect(before).toBe(frames.reduce((n, f) => n + f.frame.count + 1, 0));
    for (const spec of SENSORS) expect(await a.queryPoints(spec.name)).toEqual(expectedPoints(frames, spec.name));
    const seenByA = await a.queryFrames();
    const seenByB = await b.queryFrames();
    expect(seenByA.map((f) => f.acceptances.map((x) => x.gateway))).toEqual(frames.map((_, i) => (i === 1 || i === 2 ? ['gw-a', 'gw-b'] : ['gw-a'])));
    // Each reader flattens its own acceptance first: gw-b sees its spool position and transport.
    expect(seenByB[1]).toMatchObject({ gateway: 'gw-b', lsn: frames[1]!.lsn + 100n, transport: 'ble' });
    expect(seenByB[1]!.batch).toBeUndefined();
    expect(seenByA[1]).toMatchObject({ gateway: 'gw-a', lsn: frames[1]!.lsn, batch: 7n, leaf: Number(frames[1]!.lsn) });
  });

  it('reads schema v1 frames points (gateway tag, acceptance fields on the frame) as frames with one acceptance', async () => {
    const s = sink();
    const [f] = batch();
    const http = new InfluxHttp({ url: influx.handle.url });
    await s.ensureDatabase();
    const t = f!.frame.timestampMs * 1_000_000n;
    const raw = Buffer.from(f!.frame.raw).toString('base64');
    await http.write(s['opts'].database, [
      `frames,device=${f!.frame.deviceId},gateway=gw-old,patient=${f!.patient},sensor=${f!.frame.spec.name} seq=${f!.frame.seq}i,sha256="${f!.sha256}",raw="${raw}",count=${f!.frame.count}i,interval_us=${f!.frame.intervalUs}i,received_at=5i,transport="mqtt",lsn=42i,batch=3i,leaf=9i ${t}`,
    ]);
    const [old] = await s.queryFrames();
    expect(old).toMatchObject({ gateway: 'gw-old', lsn: 42n, batch: 3n, leaf: 9, receivedAtMs: 5, seq: f!.frame.seq, sha256: f!.sha256 });
    // Written again by an upgraded gateway: one frame, both acceptances, the reader's own first.
    await s.write([f!]);
    const both = await s.queryFrames();
    expect(both).toHaveLength(1);
    expect(both[0]!.acceptances.map((x) => x.gateway)).toEqual(['gw-test', 'gw-old']);
  });

  it('splits a batch into writes of pointsPerWrite points and stores all of them', async () => {
    const s = sink({ pointsPerWrite: 7 });
    const frames = Array.from({ length: 12 }, (_, k) =>
      accepted(
        { seq: BigInt(k + 1), timestampMs: T0 + BigInt(k) * 1000n, sensor: 6, scale: -3, intervalUs: 4000, samples: samples('ecg', 5, -3, k) },
        BigInt(k + 1),
      ),
    );
    await s.write(frames);
    expect((await s.queryPoints('ecg')).length).toBe(60);
    expect((await s.queryFrames()).length).toBe(12);
    expect(() => sink({ pointsPerWrite: 5001 })).toThrow(TypeError);
  });

  it('keeps uint64 sequence numbers and awkward tag values exact', async () => {
    const s = sink({ gatewayId: 'ward 7,bed=3 "east"' });
    const seqs = [2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];
    const frames = seqs.map((seq, k) =>
      accepted(
        { seq, timestampMs: T0 + BigInt(k) * 1000n, sensor: 1, scale: 0, intervalUs: 1_000_000, samples: Int32Array.of(60 + k) },
        BigInt(k + 1),
        `pa\\tient, x=1 "ü"`,
      ),
    );
    await s.write(frames);
    const stored = await s.queryFrames();
    expect(stored.map((f) => f.seq)).toEqual(seqs);
    expect(stored.every((f) => f.patient === 'pa\\tient, x=1 "ü"' && f.gateway === 'ward 7,bed=3 "east"')).toBe(true);
    expect((await s.queryPoints('heart_rate')).map((p) => p.seq)).toEqual(seqs);
  });

  it('refuses a batch with a tag line protocol cannot carry before writing any of it', async () => {
    const s = sink();
    await s.ensureDatabase();
    const hr = (seq: bigint, patient: string): AcceptedFrame =>
      accepted({ seq, timestampMs: T0 + seq * 1000n, sensor: 1, scale: 0, intervalUs: 1_000_000, samples: Int32Array.of(70) }, seq, patient);
    await expect(s.write([hr(1n, 'p-1'), hr(2n, 'p-2\\')])).rejects.toThrow(TypeError);
    await expect(s.write([hr(3n, 'p-3\nx')])).rejects.toThrow(TypeError);
    expect(await s.queryFrames()).toEqual([]);
    await s.write([hr(4n, '')]); // an empty pseudonym is left out and reads back as ''
    expect((await s.queryFrames()).map((f) => [f.seq, f.patient])).toEqual([[4n, '']]);
  });

  it('filters frames by device and by frame time', async () => {
    const s = sink();
    const mk = (dev: string, k: number): AcceptedFrame =>
      accepted(
        { deviceId: dev, seq: BigInt(k + 1), timestampMs: T0 + BigInt(k) * 1000n, sensor: 1, scale: 0, intervalUs: 1_000_000, samples: Int32Array.of(70) },
        BigInt(k + 1),
      );
    await s.write([mk('aaaaaaaaaaaaaaaa', 0), mk('bbbbbbbbbbbbbbbb', 1), mk('aaaaaaaaaaaaaaaa', 2), mk('aaaaaaaaaaaaaaaa', 3)]);
    expect((await s.queryFrames('aaaaaaaaaaaaaaaa')).map((f) => f.seq)).toEqual([1n, 3n, 4n]);
    expect((await s.queryFrames('aaaaaaaaaaaaaaaa', Number(T0) + 1000, Number(T0) + 3000)).map((f) => f.seq)).toEqual([3n]);
    expect((await s.queryPoints('heart_rate', 'bbbbbbbbbbbbbbbb')).map((p) => p.seq)).toEqual([2n]);
    expect(await s.queryFrames("x' OR 1=1 --")).toEqual([]);
  });

  it('creates its database once, and ensureDatabase is harmless to repeat', async () => {
    const s = sink();
    await s.ensureDatabase();
    await s.ensureDatabase();
    await s.write(batch().slice(0, 1));
    expect((await s.queryFrames()).length).toBe(1);
  });

  it('keeps data across an influxd restart, and a crash makes writes fail fast until it is back', async () => {
    const s = sink();
    const frames = batch();
    await s.write(frames);
    const url = influx.handle.url;
    await influx.handle.restart();
    expect(influx.handle.url).toBe(url);
    expect(await s.queryFrames()).toHaveLength(frames.length);
    expect(await s.queryPoints('ecg')).toEqual(expectedPoints(frames, 'ecg'));

    await influx.handle.kill();
    expect(await s.ping()).toBe(false);
    const err = await s.write(frames).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isStorageError(err, 'INFLUX_UNREACHABLE')).toBe(true);

    await influx.handle.restart();
    expect(await s.ping()).toBe(true);
    await s.write(frames); // no client-side quarantine of the host: the first write after recovery works
    expect(await countAll(s)).toBe(frames.reduce((n, a) => n + a.frame.count + 1, 0));
  });

  it('rejects with INFLUX_TIMEOUT when the server accepts but never answers', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((sock) => void sockets.push(sock));
    const port = await findFreePort();
    await new Promise<void>((res) => silent.listen(port, '127.0.0.1', res));
    try {
      const s = new InfluxSink({ url: `http://127.0.0.1:${port}`, database: 'x', gatewayId: 'gw', timeoutMs: 300 });
      const started = Date.now();
      const err = await s.write(batch()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isStorageError(err, 'INFLUX_TIMEOUT')).toBe(true);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(await s.ping()).toBe(false);
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((res) => silent.close(res));
    }
  });
});
