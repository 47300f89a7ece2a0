/**
 * FrameHistory against a real influxd: what the shared store knows of a device (PROTOCOL.md
 * §5.3 state), read from points the real InfluxSink wrote and from v1- and v2-shaped
 * `frames` lines written directly, so data of either schema version is read right.
 */
import { describe, expect, it } from 'vitest';
import { createServer, type Socket } from 'node:net';
import { sensorByName } from '../../../firmware-proto/catalogue.js';
import { decodeFrame, frameEndMs, type Frame } from '../../../firmware-proto/frame.js';
import type { Measurement } from '../../../firmware-proto/device.js';
import { DeviceStates } from '../../../gateway/ingest/device-state.js';
import { sha256Hex } from '../../../gateway/ingest/spool-record.js';
import type { AcceptedFrame } from '../../../gateway/ingest/types.js';
import { isStorageError } from '../../../gateway/storage/errors.js';
import { FrameHistory, HISTORY_RECENT } from '../../../gateway/storage/history.js';
import { InfluxHttp } from '../../../gateway/storage/influx-http.js';
import { InfluxSink } from '../../../gateway/storage/influx-sink.js';
import { int, str, toLine } from '../../../gateway/storage/line-protocol.js';
import { findFreePort } from '../../../gateway/util/net.js';
import { heartRate, testDevice, type TestDevice } from '../../support/devices.js';
import { useInfluxd } from '../../support/influxd.js';

const influx = useInfluxd();
let dbCounter = 0;
const T0 = 1_800_000_000_000;

function spo2(startMs: number, values: number[]): Measurement {
  return { timestampMs: BigInt(startMs), sensor: sensorByName('spo2').code, scale: 0, intervalUs: 500_000, samples: Int32Array.from(values) };
}

function accepted(d: TestDevice, m: Measurement, lsn: number): AcceptedFrame {
  const { raw } = d.core.record(m);
  return { lsn: BigInt(lsn), receivedAtMs: T0, transport: 'mqtt', patient: d.patient, sha256: sha256Hex(raw), frame: decodeFrame(raw) };
}

/** Heart-rate and SpO2 frames interleaved, as a device with two sensors sends them. */
function interleaved(d: TestDevice, n: number): AcceptedFrame[] {
  return Array.from({ length: n }, (_, i) =>
    accepted(d, i % 3 === 2 ? spo2(T0 + i * 10_000 - 5_000, [97, 98, 97]) : heartRate(T0 + i * 10_000, [60 + i, 61, 62, 63, 64]), i + 1),
  );
}

/** What this gateway's own DeviceStates makes of the same frames: the reference. */
function reference(frames: readonly AcceptedFrame[]): { highestSeq: bigint; lastEndMs: Map<number, bigint>; recent: Map<bigint, string> } {
  const states = new DeviceStates();
  for (const a of frames) states.apply(a.frame, a.sha256);
  const s = states.get(frames[0]!.frame.deviceId)!;
  return { highestSeq: s.highestSeq, lastEndMs: s.lastEndMs, recent: new Map([...s.recent].slice(-HISTORY_RECENT)) };
}

async function store(frames: AcceptedFrame[], gatewayId = 'gw-a'): Promise<{ database: string; history: FrameHistory }> {
  const database = `vp_hist_${++dbCounter}`;
  await new InfluxSink({ url: influx.handle.url, database, gatewayId, timeoutMs: 3000 }).write(frames);
  return { database, history: new FrameHistory({ url: influx.handle.url, database }) };
}

/** A `frames` line as schema v1 wrote it (gateway tag, acceptance fields) or as v2 writes it (only what the device signed). */
function framesLine(a: AcceptedFrame, shape: 'v1' | 'v2', gateway = 'gw-old'): string {
  const f: Frame = a.frame;
  const signed = {
    seq: int(f.seq),
    sha256: str(a.sha256),
    raw: str(Buffer.from(f.raw).toString('base64')),
    count: int(f.count),
    interval_us: int(f.intervalUs),
  };
  const tags = { device: f.deviceId, patient: a.patient, sensor: f.spec.name };
  return toLine({
    measurement: 'frames',
    tags: shape === 'v1' ? { ...tags, gateway } : tags,
    fields: shape === 'v1' ? { ...signed, received_at: int(a.receivedAtMs), transport: str(a.transport), lsn: int(a.lsn) } : signed,
    timeNs: f.timestampMs * 1_000_000n,
  });
}

describe('FrameHistory', () => {
  it('reads highest seq, each sensor’s end and the newest hashes, as the local state would hold them', async () => {
    const d = testDevice('hist-two-sensors');
    const frames = interleaved(d, 12);
    const { history } = await store(frames);
    const got = await history.device(d.id);
    const want = reference(frames);
    expect(got).toEqual(want);
    expect(got!.highestSeq).toBe(12n);
    const lastHr = frames.filter((a) => a.frame.spec.name === 'heart_rate').at(-1)!.frame;
    expect(got!.lastEndMs.get(sensorByName('heart_rate').code)).toBe(frameEndMs(lastHr));
  });

  it(`keeps only the newest ${HISTORY_RECENT} hashes by seq, whatever the sensors`, async () => {
    const d = testDevice('hist-many');
    const frames = interleaved(d, HISTORY_RECENT + 20);
    const { history } = await store(frames);
    const got = (await history.device(d.id))!;
    expect([...got.recent.keys()]).toEqual(frames.slice(-HISTORY_RECENT).map((a) => a.frame.seq));
    expect(got).toEqual(reference(frames));
  });

  it('reads v1 points (gateway tag) and v2 points alike, a frame stored under both counted once', async () => {
    const d = testDevice('hist-mixed');
    const frames = interleaved(d, 9);
    const database = `vp_hist_${++dbCounter}`;
    const http = new InfluxHttp({ url: influx.handle.url });
    await http.query(`CREATE DATABASE ${database}`);
    // Old data from two gateways (v1), then the newest frames in v2; frame 6 in both shapes.
    const lines = [
      ...frames.slice(0, 4).map((a) => framesLine(a, 'v1', 'gw-a')),
      ...frames.slice(4, 6).map((a) => framesLine(a, 'v1', 'gw-b')),
      ...frames.slice(5).map((a) => framesLine(a, 'v2')),
    ];
    await http.write(database, lines);
    const got = await new FrameHistory({ url: influx.handle.url, database }).device(d.id);
    expect(got).toEqual(reference(frames));
    expect(got!.recent.size).toBe(9);
  });

  it('says whether one (device, seq) is stored with a given hash', async () => {
    const d = testDevice('hist-holds');
    const other = testDevice('hist-holds-other');
    const frames = interleaved(d, 5);
    const { history } = await store([...frames, ...interleaved(other, 2)]);
    const f = frames[3]!;
    expect(await history.holds(d.id, f.frame.seq, f.frame.timestampMs, f.sha256)).toBe(true);
    expect(await history.holds(d.id, f.frame.seq, f.frame.timestampMs, frames[2]!.sha256)).toBe(false);
    expect(await history.holds(d.id, f.frame.seq + 1n, f.frame.timestampMs, f.sha256)).toBe(false);
    expect(await history.holds(other.id, f.frame.seq, f.frame.timestampMs, f.sha256)).toBe(false);
  });

  it('knows nothing of a device never stored, nor of a database no gateway has written yet', async () => {
    const { history } = await store(interleaved(testDevice('hist-someone'), 2));
    expect(await history.device(testDevice('hist-nobody').id)).toBeUndefined();
    const fresh = new FrameHistory({ url: influx.handle.url, database: 'vp_hist_never_written' });
    expect(await fresh.device(testDevice('hist-nobody').id)).toBeUndefined();
    expect(await fresh.holds(testDevice('hist-nobody').id, 1n, BigInt(T0), 'ab')).toBe(false);
  });

  it('fails with INFLUX_TIMEOUT at its deadline when the store accepts but never answers', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((sock) => void sockets.push(sock));
    const port = await findFreePort();
    await new Promise<void>((res) => silent.listen(port, '127.0.0.1', res));
    try {
      const h = new FrameHistory({ url: `http://127.0.0.1:${port}`, database: 'x', timeoutMs: 200 });
      const err = await h.device('0011223344556677').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isStorageError(err, 'INFLUX_TIMEOUT')).toBe(true);
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((res) => silent.close(res));
    }
  });
});
