/**
 * Wearables that move between gateways (docs/fleet.md), with real processes: two gateways
 * sharing one influxd and one device registry, and simulated wearables (device-sim) that send
 * to gateway A, lose A's acknowledgements as they leave (a proxy in front of A stops passing
 * A's answers), and go on at gateway B from their state dir: the unacknowledged frames first,
 * flagged DUP (PROTOCOL.md §8.2), then new ones. Every acknowledged frame is stored exactly
 * once, B refuses nothing (no false REPLAY or TIME_OVERLAP), counts what A stored as
 * duplicates, and counts no gap.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions } from '../../device-sim/run.js';
import { InfluxHttp, seriesRows } from '../../gateway/storage/influx-http.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { drained } from '../support/stored.js';
import { leavingRelay } from '../../scripts/lib/leaving-relay.js';

const influx = useInfluxd();
const SEED = 'handoff';
const DEVICES = 2;
const devices = fleetDevices(SEED, DEVICES, 'accelerometer,ecg'); // 1-s frames: the second run waits little for the clock
const offChain = { 'chain.mode': 'off', 'registry.source': 'file' } as const;
let dir: string;
let gwA: GatewayProcess;
let gwB: GatewayProcess;

function flags(id: string): Record<string, string | number> {
  return {
    dataDir: join(dir, id),
    gatewayId: id,
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'storage.retryMinMs': 50,
    'batch.intervalMs': 300,
    ...offChain,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-handoff-e2e-'));
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  for (const id of ['gw-a', 'gw-b']) {
    execFileSync(process.execPath, [
      CLI,
      'enrol',
      join(dir, 'fleet.json'),
      '--dataDir',
      join(dir, id),
      ...Object.entries(offChain).flatMap(([k, v]) => [`--${k}`, v]),
    ]);
  }
  [gwA, gwB] = await Promise.all([GatewayProcess.start(flags('gw-a')), GatewayProcess.start(flags('gw-b'))]);
});

afterAll(async () => {
  await Promise.all([gwA?.stop(), gwB?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

/** seq of every `frames` point of a device, in time order (one point per stored frame, whatever the schema version). */
async function storedSeqs(deviceId: string): Promise<bigint[]> {
  return (await rowsOf('frames', deviceId)).map((r) => BigInt(r['seq'] as string | number));
}

/** A device's rows of a measurement (tags and fields). */
async function rowsOf(measurement: string, deviceId: string): Promise<Record<string, unknown>[]> {
  const http = new InfluxHttp({ url: influx.handle.url });
  return seriesRows(await http.query(`SELECT * FROM "${measurement}" WHERE "device" = $device`, { database: 'vitalproof', params: { device: deviceId } }));
}

/** The frames a device left unacknowledged in its state dir (device-sim/state-store.ts). */
function unacked(stateDir: string, deviceId: string): bigint[] {
  const file = join(stateDir, `${deviceId}.outbox.json`);
  if (!existsSync(file)) return [];
  return (JSON.parse(readFileSync(file, 'utf8')) as { frames: { seq: string }[] }).frames.map((f) => BigInt(f.seq));
}

it('moves wearables from A to B with their unacknowledged frames: stored once, no refusal, no gap', async () => {
  const stateDir = join(dir, 'wearables');
  const base: FleetOptions = { devices: DEVICES, seed: SEED, sensors: 'accelerometer,ecg', stateDir, backoff: { initialMs: 50, maxMs: 500 } };
  // At A: each wearable's first 3 frames are acknowledged, the rest reach A but their PUBACKs are lost.
  const relay = await leavingRelay(gwA.mqttPort, 3);
  const atA = await runFleet({ ...base, brokerUrl: `mqtt://127.0.0.1:${relay.port}`, frames: 12, drainTimeoutMs: 1500 });
  await relay.close();
  expect(atA.drained).toBe(false);
  expect(atA.frames.acked).toBe(3 * DEVICES);
  expect(atA.frames.unacked).toBe(9 * DEVICES);
  const sA = await drained(gwA);
  // What A stored (everything it accepted, acknowledged or not) and what each device still holds.
  const left = new Map(devices.map((d) => [d.deviceId, unacked(stateDir, d.deviceId)]));
  // The unacknowledged frames A accepted nonetheless: B must count them as duplicates.
  const tookAtA = new Map<string, Set<string>>();
  for (const d of devices) {
    const stored = new Set(await storedSeqs(d.deviceId));
    tookAtA.set(
      d.deviceId,
      new Set(
        left
          .get(d.deviceId)!
          .filter((s) => stored.has(s))
          .map(String),
      ),
    );
  }
  const acceptedAtA = [...tookAtA.values()].reduce((n, x) => n + x.size, 0);
  expect(acceptedAtA).toBeGreaterThan(0);

  // At B: the same wearables, from their state dirs.
  const atB = await runFleet({ ...base, brokerUrl: `mqtt://127.0.0.1:${gwB.mqttPort}`, frames: 8, drainTimeoutMs: 20_000 });
  expect(atB.drained).toBe(true);
  expect(atB.frames.restored).toBe(atA.frames.unacked);
  const sB = await drained(gwB);
  expect(sB.frames.rejected).toBe(0);
  expect(sB.frames.rejectedBy).toEqual({});
  expect(sB.frames.duplicates).toBe(acceptedAtA);
  expect(sB.frames.seqGaps).toBe(0);
  expect(sB.frames.handoff).toMatchObject({ mode: 'store', learned: DEVICES, failures: 0 });
  expect(sA.frames.rejected).toBe(0);

  // Every acknowledged frame stored exactly once: one point per seq, 1 … last, for each device.
  for (const r of atB.perDevice) {
    const seqs = (await storedSeqs(r.deviceId)).sort((a, b) => (a < b ? -1 : 1));
    const last = BigInt(r.nextSeq) - 1n;
    expect(seqs, `frames of ${r.deviceId}`).toEqual(Array.from({ length: Number(last) }, (_, i) => BigInt(i + 1)));
    // Each taken by one gateway (storage schema v2): what A accepted, B counted as a duplicate and did not take again.
    const takenBy = (await rowsOf('acceptances', r.deviceId)).map((a) => `${String(a['seq'])}@${String(a['gateway'])}`).sort();
    expect(takenBy.length, `acceptances of ${r.deviceId}`).toBe(seqs.length);
    for (const t of takenBy) if (tookAtA.get(r.deviceId)!.has(t.split('@')[0]!)) expect(t).toMatch(/@gw-a$/);
  }
  expect(atA.frames.acked + atB.frames.acked).toBe(atA.frames.recorded + atB.frames.recorded);
});
