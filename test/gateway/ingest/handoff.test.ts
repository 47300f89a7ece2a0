/**
 * The pipeline of gateway B with handoff on, against a real influxd that "gateway A" (the real
 * InfluxSink under another gateway id) wrote to: a wearable that moved from A continues at B
 * without a false REPLAY, TIME_OVERLAP or gap, and a frame A accepted is a duplicate at B
 * (docs/fleet.md; PROTOCOL.md §5.3).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signFrame } from '../../../firmware-proto/device.js';
import { decodeFrame } from '../../../firmware-proto/frame.js';
import { DeviceStates } from '../../../gateway/ingest/device-state.js';
import { Handoff } from '../../../gateway/ingest/handoff.js';
import { IngestPipeline, type IngestContext } from '../../../gateway/ingest/pipeline.js';
import { Quarantine } from '../../../gateway/ingest/quarantine.js';
import { decodeSpoolRecord, sha256Hex } from '../../../gateway/ingest/spool-record.js';
import { FileRegistry } from '../../../gateway/registry/file-registry.js';
import { Wal } from '../../../gateway/spool/wal.js';
import { Metrics } from '../../../gateway/status/metrics.js';
import { FrameHistory } from '../../../gateway/storage/history.js';
import { InfluxSink } from '../../../gateway/storage/influx-sink.js';
import { VerifyPool } from '../../../gateway/verify/pool.js';
import { heartRate, testDevice, type TestDevice } from '../../support/devices.js';
import { useInfluxd } from '../../support/influxd.js';

const influx = useInfluxd();
const NOW = 1_800_000_000_000;
let dbCounter = 0;

/** Gateway B: a real spool, registry, verifier and device state, deciding with handoff. */
interface GatewayB {
  pipeline: IngestPipeline;
  metrics: Metrics;
  states: DeviceStates;
  wal: Wal;
  /** Moves the handoff's clock (its per-device lookup interval) forward. */
  advance(ms: number): void;
  spooled(): bigint[];
}

let dir: string;
let database: string;
let dev: TestDevice;
let opened: Wal[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-handoff-'));
  database = `vp_handoff_${++dbCounter}`;
  dev = testDevice(`handoff-${dbCounter}`);
});
afterEach(async () => {
  for (const w of opened) await w.close();
  opened = [];
  rmSync(dir, { recursive: true, force: true });
});

async function gatewayB(opts: { storeDown?: () => boolean; maxConcurrent?: number; others?: TestDevice[] } = {}): Promise<GatewayB> {
  const home = mkdtempSync(join(dir, 'gw-b-'));
  const wal = await Wal.open(join(home, 'spool'));
  opened.push(wal);
  const registry = new FileRegistry(join(home, 'registry.json'));
  await registry.enrol([dev, ...(opts.others ?? [])].map((d) => d.enrolment));
  const metrics = new Metrics();
  const states = new DeviceStates();
  let clock = NOW;
  const history = new FrameHistory({ url: influx.handle.url, database, timeoutMs: 1500 });
  const handoff = new Handoff({
    history,
    states,
    metrics,
    storeDown: opts.storeDown ?? (() => false),
    now: () => clock,
    ...(opts.maxConcurrent !== undefined ? { maxConcurrent: opts.maxConcurrent } : {}),
  });
  const pipeline = new IngestPipeline({
    registry,
    verifier: new VerifyPool(0),
    wal,
    states,
    quarantine: new Quarantine(join(home, 'quarantine')),
    metrics,
    handoff,
    now: () => NOW,
  });
  return {
    pipeline,
    metrics,
    states,
    wal,
    advance: (ms) => (clock += ms),
    spooled: () => {
      const r = wal.reader();
      const seqs = r.read(10_000).map((rec) => decodeSpoolRecord(rec.lsn, rec.payload).frame.seq);
      r.close();
      return seqs;
    },
  };
}

/** The device's next frame: 5 heart-rate samples at 1 Hz, 10 s after the previous one. */
function next(k: number): Uint8Array {
  return dev.core.record(heartRate(NOW - 3_600_000 + k * 10_000, [60, 61, 62, 63, 64])).raw;
}

/** Frames accepted by gateway A, written to the shared store as A's storage writer does. */
async function storedByA(raws: Uint8Array[], patient = dev.patient): Promise<void> {
  const sink = new InfluxSink({ url: influx.handle.url, database, gatewayId: 'gw-a', timeoutMs: 3000 });
  await sink.write(
    raws.map((raw, i) => ({
      lsn: BigInt(i + 1),
      receivedAtMs: NOW,
      transport: 'mqtt' as const,
      patient,
      sha256: sha256Hex(raw),
      frame: decodeFrame(raw),
    })),
  );
}

const ctx = (retransmission = false): IngestContext => ({ transport: 'mqtt', sender: dev.id, channelDevice: dev.id, retransmission });

describe('handoff between gateways', () => {
  it('learns the state on first appearance: the resent last frame is a duplicate, the next continues without a gap', async () => {
    const atA = Array.from({ length: 10 }, (_, k) => next(k));
    await storedByA(atA);
    const b = await gatewayB();
    // The device moved; its last frame's PUBACK was lost, so it resends it (DUP) first.
    expect(await b.pipeline.submit(atA[9]!, ctx(true))).toMatchObject({ status: 'duplicate', seq: 10n });
    expect(await b.pipeline.submit(next(10), ctx())).toMatchObject({ status: 'accepted', seq: 11n });
    expect(b.metrics.handoff).toMatchObject({ lookups: 1, learned: 1, failures: 0 });
    expect(b.metrics.seqGaps).toBe(0);
    expect(b.metrics.duplicates).toBe(1);
    // What A accepted is not fresh at B either: an unflagged copy is a REPLAY.
    expect(await b.pipeline.submit(atA[4]!, ctx())).toMatchObject({ status: 'rejected', reason: 'REPLAY' });
    expect(b.spooled()).toEqual([11n]);
  });

  it('counts a resend of a frame only the store knows as a duplicate, not a REPLAY; other bytes under that seq stay a REPLAY', async () => {
    const atA = Array.from({ length: 40 }, (_, k) => next(k));
    await storedByA(atA);
    const b = await gatewayB();
    expect(await b.pipeline.submit(next(40), ctx())).toMatchObject({ status: 'accepted', seq: 41n });
    // Seq 3 is older than the newest hashes learned on first appearance: asked for, one point.
    expect(b.states.get(dev.id)!.recent.has(3n)).toBe(false);
    expect(await b.pipeline.submit(atA[2]!, ctx(true))).toMatchObject({ status: 'duplicate', seq: 3n });
    expect(b.metrics.handoff.duplicatesElsewhere).toBe(1);
    // Known here from now on: the same resend again needs no lookup.
    const lookups = b.metrics.handoff.lookups;
    expect(await b.pipeline.submit(atA[2]!, ctx(true))).toMatchObject({ status: 'duplicate', seq: 3n });
    expect(b.metrics.handoff.lookups).toBe(lookups);
    // A different frame signed under an accepted seq is not what the store holds.
    const forged = signFrame({ ...decodeFrame(atA[4]!), samples: Int32Array.from([90, 91, 92, 93, 94]) }, dev.keys.secretKey);
    expect(await b.pipeline.submit(forged, ctx(true))).toMatchObject({ status: 'rejected', reason: 'REPLAY' });
    expect(b.metrics.duplicates).toBe(2);
    expect(b.spooled()).toEqual([41n]);
  });

  it('knows each sensor’s end from the store: a frame overlapping one only A accepted is refused, the next one is not', async () => {
    const atA = Array.from({ length: 5 }, (_, k) => next(k));
    await storedByA(atA);
    const b = await gatewayB();
    // Starts inside frame 5's samples (NOW-1h+40 s … +44 s), which only A saw.
    const lastAtA = decodeFrame(atA[4]!);
    const overlapping = dev.core.record(heartRate(Number(lastAtA.timestampMs) + 2_000, [70])).raw;
    expect(await b.pipeline.submit(overlapping, ctx())).toMatchObject({ status: 'rejected', reason: 'TIME_OVERLAP' });
    expect(await b.pipeline.submit(next(5), ctx())).toMatchObject({ status: 'accepted', seq: 7n });
    expect(b.metrics.rejectedBy).toMatchObject({ TIME_OVERLAP: 1, REPLAY: 0 });
    expect(b.metrics.rejected).toBe(1);
  });

  it('learns sequence numbers sent elsewhere when a frame skips them, so only a real gap is counted', async () => {
    const b = await gatewayB();
    for (let k = 0; k < 3; k++) expect(await b.pipeline.submit(next(k), ctx())).toMatchObject({ status: 'accepted' });
    // The patient goes to A for seqs 4–8, then comes back.
    await storedByA(Array.from({ length: 5 }, (_, k) => next(3 + k)));
    b.advance(60_000);
    expect(await b.pipeline.submit(next(8), ctx())).toMatchObject({ status: 'accepted', seq: 9n });
    expect(b.metrics.seqGaps).toBe(0);
    expect(b.metrics.handoff.learned).toBe(1);
    // Two numbers the device never sent anywhere: a real gap, still counted.
    dev.core.record(heartRate(NOW - 3_600_000 + 9 * 10_000, [1]));
    dev.core.record(heartRate(NOW - 3_600_000 + 9 * 10_000 + 2_000, [1]));
    b.advance(60_000);
    expect(await b.pipeline.submit(next(10), ctx())).toMatchObject({ status: 'accepted', seq: 12n });
    expect(b.metrics.seqGaps).toBe(2);
    // Within the per-device interval a further skip is not looked up again.
    const lookups = b.metrics.handoff.lookups;
    dev.core.record(heartRate(NOW - 3_600_000 + 11 * 10_000, [1]));
    expect(await b.pipeline.submit(next(12), ctx())).toMatchObject({ status: 'accepted', seq: 14n });
    expect(b.metrics.handoff.lookups).toBe(lookups);
    expect(b.metrics.seqGaps).toBe(3);
  });

  it('makes at most maxConcurrent lookups at once: a device over the cap is decided locally, and asked about on its next frame', async () => {
    const other = testDevice(`handoff-other-${dbCounter}`);
    const otherFrame = (k: number): Uint8Array => other.core.record(heartRate(NOW - 3_600_000 + k * 10_000, [70, 71, 72, 73, 74])).raw;
    await storedByA([next(0), next(1)]);
    await storedByA([otherFrame(0), otherFrame(1)], other.patient);
    const b = await gatewayB({ maxConcurrent: 1, others: [other] });
    const ctxOf = (d: TestDevice): IngestContext => ({ transport: 'mqtt', sender: d.id, channelDevice: d.id, retransmission: false });
    // Both first appearances at once: the first device's lookup is in flight when the second one's comes.
    const outs = await Promise.all([b.pipeline.submit(next(2), ctxOf(dev)), b.pipeline.submit(otherFrame(2), ctxOf(other))]);
    expect(outs).toMatchObject([{ status: 'accepted' }, { status: 'accepted' }]);
    expect(b.metrics.handoff).toMatchObject({ lookups: 1, skipped: 1, learned: 1 });
    expect(b.metrics.seqGaps).toBe(0);
    expect(b.states.get(other.id)!.recent.size).toBe(1);
    expect(await b.pipeline.submit(otherFrame(3), ctxOf(other))).toMatchObject({ status: 'accepted', seq: 4n });
    expect(b.metrics.handoff).toMatchObject({ lookups: 2, skipped: 1, learned: 2 });
    expect(b.states.get(other.id)!.recent.size).toBe(4);
  });

  it('decides locally when the store is known down (no lookup) or fails (counted): frames are still accepted', async () => {
    const atA = Array.from({ length: 3 }, (_, k) => next(k));
    await storedByA(atA);
    const down = await gatewayB({ storeDown: () => true });
    expect(await down.pipeline.submit(next(3), ctx())).toMatchObject({ status: 'accepted', seq: 4n });
    expect(down.metrics.handoff).toMatchObject({ lookups: 0, skipped: 1, failures: 0 });
    await influx.handle.stop();
    let b: GatewayB;
    try {
      b = await gatewayB();
      // A's last frame resent: unknown here, the store unreachable, so accepted again (stored once, anchored by both).
      expect(await b.pipeline.submit(atA[2]!, ctx(true))).toMatchObject({ status: 'accepted', seq: 3n });
      expect(b.metrics.handoff).toMatchObject({ lookups: 1, failures: 1, learned: 0 });
    } finally {
      await influx.handle.restart();
    }
    // Not learned yet: asked again on a later frame (after the interval), now with an answer.
    b.advance(60_000);
    expect(await b.pipeline.submit(next(4), ctx())).toMatchObject({ status: 'accepted', seq: 5n });
    expect(b.metrics.handoff).toMatchObject({ lookups: 2, failures: 1, learned: 1 });
    expect(b.states.get(dev.id)!.recent.get(1n)).toBe(sha256Hex(atA[0]!));
    expect(b.spooled()).toEqual([3n, 5n]);
  });
});
