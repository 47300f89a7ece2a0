/** Checks shared by the end-to-end suites: what InfluxDB holds against what devices signed. */
import { expect } from 'vitest';
import { createPublicKey, verify } from 'node:crypto';
import { decodeFrame, sampleValue, sampleTimeNs } from '../../firmware-proto/frame.js';
import { FRAME_TAG } from '../../firmware-proto/signing.js';
import type { SimDevice } from '../../device-sim/fleet.js';
import type { FleetReport } from '../../device-sim/run.js';
import type { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { sha256Hex } from '../../gateway/ingest/spool-record.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import type { GatewayProcess } from './gateway-process.js';

/** Waits until everything the gateway accepted is in InfluxDB and the spool is empty. */
export function drained(g: GatewayProcess): Promise<StatusSnapshot> {
  return g.until((s) => s.storage.up && s.spool.backlogFrames === 0 && s.storage.framesWritten >= s.frames.accepted, 60_000, 'spool drained into InfluxDB');
}

/**
 * For every device of a fleet: InfluxDB holds exactly the frames the device had
 * acknowledged, once each; each stored frame verifies under the device's key; each point
 * equals the sample its signed frame carries.
 */
export async function expectStoredExactly(sink: InfluxSink, devices: readonly SimDevice[], report: FleetReport): Promise<number> {
  let points = 0;
  for (const d of report.perDevice) {
    const dev = devices.find((x) => x.deviceId === d.deviceId)!;
    const key = createPublicKey({
      key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(dev.keys.publicKey)]),
      format: 'der',
      type: 'spki',
    });
    const stored = await sink.queryFrames(d.deviceId);
    expect(stored.length, `frames stored for ${d.deviceId}`).toBe(d.acked);
    expect(new Set(stored.map((f) => f.seq)).size).toBe(stored.length);
    const bySensor = new Map<string, Map<bigint, ReturnType<typeof decodeFrame>>>();
    for (const s of stored) {
      const f = decodeFrame(s.raw);
      expect(verify(null, Buffer.concat([FRAME_TAG, f.body]), key, f.signature)).toBe(true);
      expect(s.sha256).toBe(sha256Hex(s.raw));
      expect(f.seq).toBe(s.seq);
      expect(s.patient).toBe(dev.patient);
      const m = bySensor.get(f.spec.name) ?? new Map<bigint, ReturnType<typeof decodeFrame>>();
      m.set(f.seq, f);
      bySensor.set(f.spec.name, m);
    }
    for (const [sensor, frames] of bySensor) {
      const pts = await sink.queryPoints(sensor, d.deviceId);
      const expected = [...frames.values()].reduce((n, f) => n + f.count, 0);
      expect(pts.length, `${sensor} points of ${d.deviceId}`).toBe(expected);
      for (const p of pts) {
        const f = frames.get(p.seq)!;
        expect(f, `point traces to a stored frame`).toBeDefined();
        const i = Number((p.timeNs - sampleTimeNs(f, 0)) / (BigInt(f.intervalUs || 1) * 1000n));
        expect(p.timeNs).toBe(sampleTimeNs(f, i));
        f.spec.channels.forEach((ch, c) => expect(p.values[ch]).toBe(sampleValue(f, i, c)));
      }
      points += pts.length;
    }
  }
  return points;
}
