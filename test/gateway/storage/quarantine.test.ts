/**
 * A permanent InfluxDB refusal against a real influxd (issue #10, item 9): someone else's
 * write gave `heart_rate`'s field `value` the type string in one shard, so InfluxDB refuses
 * every float `value` there with HTTP 400 "field type conflict". The storage writer must not
 * retry that batch forever: it finds the refused frame by bisection, stores the others, sets
 * the refused one aside durably with InfluxDB's message, and goes on; a replay stores it once
 * the operator dropped the foreign data. Transient failures (InfluxDB unreachable) still throw,
 * so the drainer retries them with backoff.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sensorByName } from '../../../firmware-proto/catalogue.js';
import { signFrame } from '../../../firmware-proto/device.js';
import { decodeFrame, sampleTimeNs, sampleValue, type FrameBody } from '../../../firmware-proto/frame.js';
import { generateKeys } from '../../../firmware-proto/signing.js';
import type { AcceptedFrame } from '../../../gateway/ingest/types.js';
import { isPermanentRefusal, isStorageError } from '../../../gateway/storage/errors.js';
import { InfluxHttp } from '../../../gateway/storage/influx-http.js';
import { InfluxSink } from '../../../gateway/storage/influx-sink.js';
import { StorageQuarantine, logSafeMessage, type QuarantinedFrame } from '../../../gateway/storage/quarantine.js';
import { replayQuarantine } from '../../../gateway/storage/replay.js';
import { frameToLines, type StoredPoint } from '../../../gateway/storage/schema.js';
import { findFreePort } from '../../../gateway/util/net.js';
import { useInfluxd } from '../../support/influxd.js';

const influx = useInfluxd();
const keys = generateKeys(new Uint8Array(32).fill(9));
const DEVICE = '0a1b2c3d4e5f6071';
/** Two instants three weeks apart: in different shard groups of the default 7-day policy. */
const T_A = 1_700_000_000_000n;
const T_B = T_A + 21n * 86_400_000n;
let dbCounter = 0;
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vp-storage-q-'));
  dirs.push(d);
  return d;
}

function accepted(sensor: string, seq: bigint, timestampMs: bigint, lsn: bigint, salt = 0): AcceptedFrame {
  const spec = sensorByName(sensor);
  const n = Math.min(spec.defaultSamplesPerFrame, 5);
  const body: FrameBody = {
    deviceId: DEVICE,
    seq,
    timestampMs,
    sensor: spec.code,
    scale: spec.defaultScale,
    intervalUs: spec.defaultIntervalUs,
    samples: Int32Array.from({ length: n * spec.channels.length }, (_, i) => Math.floor(((i + salt) % 7) + spec.min / 10 ** spec.defaultScale + 1)),
  };
  const raw = signFrame(body, keys.secretKey);
  return {
    lsn,
    receivedAtMs: Number(timestampMs) + 100,
    transport: 'mqtt',
    patient: 'p-quarantine',
    sha256: createHash('sha256').update(raw).digest('hex'),
    frame: decodeFrame(raw),
    placement: { batch: 3n, leaf: Number(lsn) },
  };
}

/**
 * Nine frames of one device: the fifth is the only one in shard A (a heart_rate frame, where
 * the conflict is planted); the others, another heart_rate frame among them, are in shard B.
 */
function batch(): { frames: AcceptedFrame[]; refused: AcceptedFrame } {
  const sensors = ['spo2', 'heart_rate', 'skin_temperature', 'respiration_rate', 'heart_rate', 'accelerometer', 'steps', 'spo2', 'ecg'];
  const frames = sensors.map((s, i) => accepted(s, BigInt(100 + i), i === 4 ? T_A : T_B + BigInt(i * 60_000), BigInt(i + 1), i));
  return { frames, refused: frames[4]! };
}

function expectedPoints(frames: AcceptedFrame[], sensor: string): StoredPoint[] {
  return frames
    .filter((a) => a.frame.spec.name === sensor)
    .sort((a, b) => Number(sampleTimeNs(a.frame, 0) - sampleTimeNs(b.frame, 0)))
    .flatMap((a) =>
      Array.from({ length: a.frame.count }, (_, i) => ({
        timeNs: sampleTimeNs(a.frame, i),
        device: a.frame.deviceId,
        patient: a.patient,
        gateway: '',
        seq: a.frame.seq,
        values: Object.fromEntries(a.frame.spec.channels.map((ch, c) => [ch, sampleValue(a.frame, i, c)])),
      })),
    );
}

/** A sink on a fresh database with a quarantine in a fresh dir, and a record of what it reported. */
async function setup(maxBytes?: number) {
  const database = `vp_quarantine_${++dbCounter}`;
  const dir = tempDir();
  const quarantine = new StorageQuarantine(join(dir, 'storage-quarantine'), maxBytes !== undefined ? { maxBytes } : {});
  const reported: QuarantinedFrame[] = [];
  const sink = new InfluxSink({
    url: influx.handle.url,
    database,
    gatewayId: 'gw-q',
    timeoutMs: 5000,
    quarantine,
    onQuarantined: (q) => void reported.push(q),
  });
  await sink.ensureDatabase();
  const http = new InfluxHttp({ url: influx.handle.url });
  // Another writer stored heart_rate's `value` as a string in shard A.
  await http.write(database, [`heart_rate,device=ffffffffffffffff,gateway=other value="seventy" ${T_A * 1_000_000n + 1n}`]);
  return { database, dir, quarantine, reported, sink, http };
}

describe('a field type conflict planted by another writer', () => {
  it('InfluxDB answers 400 partial write, which the client classifies as a refusal for good', async () => {
    const { database } = await setup();
    // A sink without a quarantine: the refusal reaches the caller as it is.
    const plain = new InfluxSink({ url: influx.handle.url, database, gatewayId: 'gw-q', timeoutMs: 5000 });
    const e = await plain.write([batch().refused]).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(isStorageError(e, 'INFLUX_REJECTED')).toBe(true);
    expect(isPermanentRefusal(e)).toBe(true);
    expect((e as { detail: Record<string, unknown> }).detail).toMatchObject({ status: 400, error: expect.stringContaining('field type conflict') as string });
  });

  it('quarantines exactly the conflicting frame, stores every other one, and keeps going', async () => {
    const { quarantine, reported, sink } = await setup();
    const { frames, refused } = batch();
    const outcome = await sink.write(frames);
    expect(outcome).toEqual({ quarantined: new Set([refused.lsn]) });

    // Every other frame is stored, point for point; heart_rate holds only the shard B frame.
    for (const sensor of new Set(frames.map((f) => f.frame.spec.name))) {
      expect(await sink.queryPoints(sensor, DEVICE), sensor).toEqual(
        expectedPoints(
          frames.filter((f) => f !== refused),
          sensor,
        ),
      );
    }
    const storedSeqs = (await sink.queryFrames(DEVICE)).map((f) => f.seq);
    for (const f of frames.filter((x) => x !== refused)) expect(storedSeqs).toContain(f.frame.seq);

    // The refused frame is on disk with its identity, its exact lines and InfluxDB's message; reported once.
    const files = readdirSync(quarantine.dir);
    expect(files).toEqual([StorageQuarantine.fileName(refused.lsn, refused.sha256)]);
    const entry = JSON.parse(readFileSync(join(quarantine.dir, files[0]!), 'utf8')) as QuarantinedFrame;
    expect(entry).toMatchObject({
      version: 1,
      lsn: '5',
      device: DEVICE,
      seq: '104',
      sensor: 'heart_rate',
      sha256: refused.sha256,
      status: 400,
      lines: frameToLines(refused, 'gw-q'),
    });
    expect(entry.error).toContain('field type conflict: input field "value" on measurement "heart_rate" is type float, already exists as type string');
    expect(reported.map((r) => r.lsn)).toEqual(['5']);
    expect(quarantine.stats()).toMatchObject({ held: 1 });

    // The writer goes on: the next batch (shard B) is stored with nothing set aside.
    const next = [accepted('heart_rate', 200n, T_B + 3_600_000n, 10n), accepted('spo2', 201n, T_B + 3_600_000n, 11n)];
    expect(await sink.write(next)).toBeUndefined();
    expect((await sink.queryFrames(DEVICE, undefined, undefined, 200n)).map((f) => f.lsn)).toEqual([10n]);

    // The same batch again (re-read after a restart, or retried): the held frame is not sent nor reported again.
    expect(await sink.write(frames)).toEqual({ quarantined: new Set([refused.lsn]) });
    expect(reported).toHaveLength(1);
    expect(readdirSync(quarantine.dir)).toHaveLength(1);
  });

  it('replays nothing while the conflict is there, lists in a dry run, and stores the frame once the foreign data is dropped', async () => {
    const { database, quarantine, sink, http } = await setup();
    const { frames, refused } = batch();
    await sink.write(frames);
    const sinkFor = () => sink;

    const dry = await replayQuarantine(quarantine, sinkFor, { dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, held: 1, replayed: [], unreadable: [] });
    expect(dry.stillRefused.map((f) => [f.device, f.seq, f.status])).toEqual([[DEVICE, '104', 400]]);

    const early = await replayQuarantine(quarantine, sinkFor, { now: () => 1234 });
    expect(early.replayed).toEqual([]);
    expect(early.stillRefused).toHaveLength(1);
    expect(early.stillRefused[0]!.error).toContain('field type conflict');
    const kept = quarantine.entries();
    expect(kept).toHaveLength(1);
    expect(kept[0]!.entry!.lastReplay).toMatchObject({ atMs: 1234, status: 400 });
    expect(await sink.queryPoints('heart_rate', DEVICE)).toEqual(
      expectedPoints(
        frames.filter((f) => f !== refused),
        'heart_rate',
      ),
    );

    // The operator's fix: drop shard A (the foreign string point; a type lives per shard and measurement).
    const shards = await http.query('SHOW SHARDS');
    const rows = shards.filter((s) => s.name === database).flatMap((s) => s.values.map((v) => Object.fromEntries(s.columns.map((c, i) => [c, v[i]]))));
    const shardA = rows.find((r) => Date.parse(String(r['start_time'])) <= Number(T_A) && Number(T_A) < Date.parse(String(r['end_time'])));
    expect(shardA).toBeDefined();
    await http.query(`DROP SHARD ${Number(shardA!['id'])}`);

    const done = await replayQuarantine(quarantine, sinkFor);
    expect(done.replayed.map((f) => [f.lsn, f.device, f.seq])).toEqual([['5', DEVICE, '104']]);
    expect(done.stillRefused).toEqual([]);
    expect(quarantine.entries()).toEqual([]);
    expect(readdirSync(quarantine.dir)).toEqual([]);
    // Now every frame of the batch is stored, the replayed one with its batch and leaf.
    expect(await sink.queryPoints('heart_rate', DEVICE)).toEqual(expectedPoints(frames, 'heart_rate'));
    const replayedFrame = await sink.queryFrames(DEVICE, undefined, undefined, 104n);
    expect(replayedFrame).toEqual([expect.objectContaining({ lsn: 5n, sha256: refused.sha256, batch: 3n, leaf: 5 })]);
  });

  it('at its size bound the quarantine refuses (QUARANTINE_FULL, nothing written): the write throws and is retried like an outage', async () => {
    const { quarantine, reported, sink } = await setup(100);
    const { frames, refused } = batch();
    const e = await sink.write(frames).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(isStorageError(e, 'QUARANTINE_FULL')).toBe(true);
    expect(isPermanentRefusal(e)).toBe(false);
    expect(readdirSync(quarantine.dir)).toEqual([]);
    expect(reported).toEqual([]);
    // The frames before the refused one were stored on the way; retrying stores nothing twice.
    expect((await sink.queryFrames(DEVICE)).some((f) => f.seq === refused.frame.seq - 1n)).toBe(true);
  });
});

describe('transient failures are not quarantined', () => {
  it('InfluxDB unreachable: the write throws INFLUX_UNREACHABLE and nothing is set aside', async () => {
    const dir = tempDir();
    const quarantine = new StorageQuarantine(join(dir, 'q'));
    const port = await findFreePort();
    const sink = new InfluxSink({ url: `http://127.0.0.1:${port}`, database: 'vp_down', gatewayId: 'gw-q', timeoutMs: 2000, quarantine });
    const e = await sink.write(batch().frames).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(isStorageError(e, 'INFLUX_UNREACHABLE')).toBe(true);
    expect(isPermanentRefusal(e)).toBe(false);
    expect(quarantine.stats().held).toBe(0);
  });
});

describe('logSafeMessage', () => {
  it('cuts quoted line protocol (readings) out of InfluxDB messages and keeps the rest', () => {
    expect(logSafeMessage(`unable to parse 'heart_rate,device=a value=72 1700000000000000000': bad timestamp`)).toBe("unable to parse '…': bad timestamp");
    const conflict =
      'partial write: field type conflict: input field "value" on measurement "heart_rate" is type float, already exists as type string dropped=1';
    expect(logSafeMessage(conflict)).toBe(conflict);
  });
});
