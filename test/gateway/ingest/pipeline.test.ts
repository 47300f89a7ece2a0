import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wal } from '../../../gateway/spool/wal.js';
import { FileRegistry } from '../../../gateway/registry/file-registry.js';
import { VerifyPool } from '../../../gateway/verify/pool.js';
import { Quarantine } from '../../../gateway/ingest/quarantine.js';
import { Metrics } from '../../../gateway/status/metrics.js';
import { DeviceStates } from '../../../gateway/ingest/device-state.js';
import { IngestPipeline, type IngestContext } from '../../../gateway/ingest/pipeline.js';
import { decodeSpoolRecord } from '../../../gateway/ingest/spool-record.js';
import { heartRate, testDevice, type TestDevice } from '../../support/devices.js';

let dir: string;
let wal: Wal;
let registry: FileRegistry;
let metrics: Metrics;
let pipeline: IngestPipeline;
let quarantine: Quarantine;
let alice: TestDevice;
let bob: TestDevice;
const NOW = 1_800_000_000_000;
const ctx = (d: TestDevice, extra: Partial<IngestContext> = {}): IngestContext => ({
  transport: 'mqtt',
  sender: d.id,
  channelDevice: d.id,
  retransmission: false,
  ...extra,
});

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-pipe-'));
  wal = await Wal.open(join(dir, 'spool'));
  registry = new FileRegistry(join(dir, 'registry.json'));
  alice = testDevice('alice');
  bob = testDevice('bob');
  const res = await registry.enrol([alice.enrolment, bob.enrolment]);
  expect(res.enrolled).toHaveLength(2);
  metrics = new Metrics();
  quarantine = new Quarantine(join(dir, 'quarantine'));
  pipeline = new IngestPipeline({ registry, verifier: new VerifyPool(0), wal, states: new DeviceStates(), quarantine, metrics, now: () => NOW });
});
afterEach(async () => {
  await wal.close();
  rmSync(dir, { recursive: true, force: true });
});

function spooled(): { device: string; seq: bigint; patient: string }[] {
  const r = wal.reader();
  const out = r
    .read(10_000)
    .map((rec) => decodeSpoolRecord(rec.lsn, rec.payload))
    .map((f) => ({ device: f.frame.deviceId, seq: f.frame.seq, patient: f.patient }));
  r.close();
  return out;
}

describe('IngestPipeline', () => {
  it('accepts a valid frame only once it is durable in the spool', async () => {
    const { raw } = alice.core.record(heartRate(NOW - 10_000, [70, 71, 72]));
    const out = await pipeline.submit(raw, ctx(alice));
    expect(out).toMatchObject({ status: 'accepted', seq: 1n, deviceId: alice.id });
    expect(wal.durableLsn).toBe(1n);
    expect(spooled()).toEqual([{ device: alice.id, seq: 1n, patient: 'pt-alice' }]);
    expect(metrics.accepted).toBe(1);
  });

  it('decides frames of one device in arrival order even when submitted together', async () => {
    const raws = Array.from({ length: 50 }, (_, i) => alice.core.record(heartRate(NOW - 100_000 + i * 1000, [60 + (i % 30)])).raw);
    const outs = await Promise.all(raws.map((r) => pipeline.submit(r, ctx(alice))));
    expect(outs.every((o) => o.status === 'accepted')).toBe(true);
    expect(spooled().map((s) => s.seq)).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(i + 1)));
  });

  it('treats a flagged retransmission of an accepted frame as a duplicate, and an unflagged one as a replay', async () => {
    const { raw } = alice.core.record(heartRate(NOW - 10_000, [70]));
    await pipeline.submit(raw, ctx(alice));
    expect(await pipeline.submit(raw, ctx(alice, { retransmission: true }))).toMatchObject({ status: 'duplicate', seq: 1n });
    expect(await pipeline.submit(raw, ctx(alice))).toMatchObject({ status: 'rejected', reason: 'REPLAY' });
    expect(spooled()).toHaveLength(1);
    expect(metrics.duplicates).toBe(1);
    expect(metrics.rejectedBy.REPLAY).toBe(1);
  });

  it('acknowledges a retransmission only once the original is durable', async () => {
    const { raw } = alice.core.record(heartRate(NOW - 10_000, [70]));
    const first = pipeline.submit(raw, ctx(alice));
    const dup = await pipeline.submit(raw, ctx(alice, { retransmission: true }));
    expect(dup).toMatchObject({ status: 'duplicate' });
    expect(wal.durableLsn).toBe(1n);
    expect(await first).toMatchObject({ status: 'accepted' });
  });

  it('refuses an older sequence number that was never accepted as REPLAY, even flagged', async () => {
    const first = alice.core.record(heartRate(NOW - 20_000, [70]));
    const second = alice.core.record(heartRate(NOW - 10_000, [71]));
    await pipeline.submit(second.raw, ctx(alice));
    expect(await pipeline.submit(first.raw, ctx(alice, { retransmission: true }))).toMatchObject({ status: 'rejected', reason: 'REPLAY' });
  });

  it.each([
    ['bad signature', (raw: Uint8Array) => flip(raw, raw.length - 1), 'BAD_SIGNATURE'],
    ['sample edited after signing', (raw: Uint8Array) => flip(raw, 36), 'BAD_SIGNATURE'],
    ['trailing byte', (raw: Uint8Array) => Buffer.concat([raw, Buffer.from([0])]), 'LENGTH_MISMATCH'],
    ['unknown version', (raw: Uint8Array) => set(raw, 0, 2), 'UNKNOWN_VERSION'],
    ['oversized', () => new Uint8Array(16_385), 'FRAME_OVERSIZED'],
  ])('rejects %s with its reason and stores nothing', async (_name, corrupt, reason) => {
    const { raw } = alice.core.record(heartRate(NOW - 10_000, [70]));
    const out = await pipeline.submit(corrupt(raw), ctx(alice));
    expect(out).toMatchObject({ status: 'rejected', reason });
    expect(spooled()).toEqual([]);
    expect(metrics.rejectedBy[reason as 'BAD_SIGNATURE']).toBe(1);
    await quarantine.flush();
    const q = readFileSync(join(dir, 'quarantine', 'quarantine.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { reason: string });
    expect(q.map((e) => e.reason)).toEqual([reason]);
  });

  it('keeps honest frames of a device after its faulty ones', async () => {
    const bad = alice.core.record(heartRate(NOW - 30_000, [70]));
    const good = alice.core.record(heartRate(NOW - 20_000, [71]));
    expect(await pipeline.submit(flip(bad.raw, 40), ctx(alice))).toMatchObject({ status: 'rejected', reason: 'BAD_SIGNATURE' });
    expect(await pipeline.submit(good.raw, ctx(alice))).toMatchObject({ status: 'accepted' });
    expect(spooled().map((s) => s.seq)).toEqual([2n]);
    expect(metrics.seqGaps).toBe(0);
  });

  it('refuses a frame from an unknown device, and one sent by another device', async () => {
    const stranger = testDevice('stranger');
    const s = stranger.core.record(heartRate(NOW - 10_000, [70]));
    expect(await pipeline.submit(s.raw, ctx(stranger))).toMatchObject({ status: 'rejected', reason: 'UNKNOWN_DEVICE' });
    const a = alice.core.record(heartRate(NOW - 10_000, [70]));
    expect(await pipeline.submit(a.raw, ctx(bob))).toMatchObject({ status: 'rejected', reason: 'DEVICE_MISMATCH' });
    expect(await pipeline.submit(a.raw, ctx(alice, { channelDevice: bob.id }))).toMatchObject({ status: 'rejected', reason: 'DEVICE_MISMATCH' });
    expect(await pipeline.submit(a.raw, ctx(alice))).toMatchObject({ status: 'accepted' });
  });

  it('enforces the clock skew bounds and refuses overlapping frames', async () => {
    const future = alice.core.record(heartRate(NOW + 31_000, [70]));
    expect(await pipeline.submit(future.raw, ctx(alice))).toMatchObject({ status: 'rejected', reason: 'CLOCK_SKEW' });
    const ancient = alice.core.record(heartRate(NOW - 8 * 24 * 3600_000, [70]));
    expect(await pipeline.submit(ancient.raw, ctx(alice))).toMatchObject({ status: 'rejected', reason: 'CLOCK_SKEW' });
    const a = alice.core.record(heartRate(NOW - 10_000, [70, 71, 72])); // covers NOW-10s … NOW-8s
    expect(await pipeline.submit(a.raw, ctx(alice))).toMatchObject({ status: 'accepted' });
    const overlap = alice.core.record(heartRate(NOW - 8_000, [70]));
    expect(await pipeline.submit(overlap.raw, ctx(alice))).toMatchObject({ status: 'rejected', reason: 'TIME_OVERLAP' });
    const next = alice.core.record(heartRate(NOW - 7_000, [70]));
    expect(await pipeline.submit(next.raw, ctx(alice))).toMatchObject({ status: 'accepted' });
    // The first accepted frame (seq 3) sets the baseline; seq 4 (refused) is a gap before seq 5.
    expect(metrics.seqGaps).toBe(1);
  });

  it('refuses frames timestamped at or after the device revocation', async () => {
    const before = alice.core.record(heartRate(NOW - 20_000, [70]));
    const after = alice.core.record(heartRate(NOW - 5_000, [70]));
    await registry.revoke(alice.id, NOW - 10_000);
    expect(await pipeline.submit(before.raw, ctx(alice))).toMatchObject({ status: 'accepted' });
    expect(await pipeline.submit(after.raw, ctx(alice))).toMatchObject({ status: 'rejected', reason: 'DEVICE_REVOKED' });
  });
});

function flip(raw: Uint8Array, i: number): Uint8Array {
  const c = Uint8Array.from(raw);
  c[i] = c[i]! ^ 0x01;
  return c;
}
function set(raw: Uint8Array, i: number, v: number): Uint8Array {
  const c = Uint8Array.from(raw);
  c[i] = v;
  return c;
}
