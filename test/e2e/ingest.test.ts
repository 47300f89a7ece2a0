/**
 * The whole ingest path against real servers: simulated wearables (device-sim, MQTT.js
 * clients) → the real gateway process (embedded aedes, worker pool, spool) → a real
 * influxd. Every check reads back from InfluxDB and re-verifies what it finds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions, type FleetReport } from '../../device-sim/run.js';
import { connectOnce } from '../../device-sim/mqtt-link.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { drained, expectStoredExactly } from '../support/stored.js';
import { anchoredAll, embeddedChainUrl, expectBatchesConsistent } from '../support/anchored.js';

const influx = useInfluxd();
const FLEETS = { path: 5, faults: 6, influxDown: 4, sigkill: 4, late: 3 } as const;
let dir: string;
let gw: GatewayProcess;
let sink: InfluxSink;
const fleets = new Map<string, SimDevice[]>();

function gatewayFlags(extra: Record<string, string | number> = {}): Record<string, string | number> {
  return {
    dataDir: join(dir, 'gw'),
    gatewayId: 'gw-e2e',
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'storage.retryMinMs': 50,
    'storage.retryMaxMs': 400,
    'batch.intervalMs': 500,
    ...extra,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-e2e-'));
  for (const [seed, n] of Object.entries(FLEETS).filter(([s]) => s !== 'late')) {
    const devices = fleetDevices(seed, n, 'mix');
    fleets.set(seed, devices);
    const file = join(dir, `${seed}.json`);
    writeEnrolmentFile(file, devices);
    execFileSync(process.execPath, [CLI, 'enrol', file, '--dataDir', join(dir, 'gw')]);
  }
  gw = await GatewayProcess.start(gatewayFlags());
  sink = new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: 'gw-e2e' });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function fleet(seed: keyof typeof FLEETS, o: Partial<FleetOptions>): Promise<FleetReport> {
  return runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: FLEETS[seed],
    seed,
    stateDir: join(dir, `state-${seed}`),
    backoff: { initialMs: 50, maxMs: 500 },
    drainTimeoutMs: 60_000,
    ...o,
  });
}

describe('ingest end to end', () => {
  it('stores every reading of a simulated fleet exactly as it was signed', async () => {
    const report = await fleet('path', { frames: 40, sensors: 'all' });
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.path * 40);
    const s = await drained(gw);
    expect(s.frames.accepted).toBeGreaterThanOrEqual(report.frames.acked);
    const points = await expectStoredExactly(sink, fleets.get('path')!, report);
    expect(points).toBeGreaterThan(report.frames.acked);
  });

  it('refuses every injected fault under its reason and keeps every honest frame', async () => {
    const before = await gw.status();
    const report = await fleet('faults', {
      frames: 80,
      faults:
        'tamper=0.04,bad_signature=0.04,malformed=0.05,oversized=0.02,wrong_topic=0.03,replay=0.03,skew=0.03,gap=0.03,unknown_device=0.02,disconnect=0.02',
    });
    expect(report.drained).toBe(true);
    expect(report.faults.lost).toBe(0);
    expect(report.faults.unexpected).toBe(0);
    const injected = Object.values(report.faults.injected).reduce((a, b) => a + (b ?? 0), 0);
    expect(injected).toBeGreaterThan(20);
    const after = await drained(gw);
    const delta = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
      Object.fromEntries(
        Object.entries(a)
          .map(([k, v]) => [k, v - (b[k] ?? 0)])
          .filter(([, v]) => (v as number) > 0),
      );
    expect(delta(after.frames.rejectedBy, before.frames.rejectedBy)).toEqual(report.faults.expectedRejections);
    expect(delta(after.mqtt.connectRefusedBy, before.mqtt.connectRefusedBy)).toEqual(report.faults.expectedConnectRefusals);
    expect(after.frames.seqGaps - before.frames.seqGaps).toBe(report.faults.expectedSeqGaps);
    expect(report.frames.acked).toBe(report.frames.recorded);
    await expectStoredExactly(sink, fleets.get('faults')!, report);
  });

  it('keeps acknowledging while InfluxDB is down and stores everything once when it returns', async () => {
    let killed: Promise<void> | undefined;
    const report = await fleet('influxDown', {
      frames: 150,
      progressIntervalMs: 20,
      onProgress: (p) => {
        if (!killed && p.acked >= 60) killed = influx.handle.kill();
      },
    });
    await killed;
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.influxDown * 150);
    // Every frame was acknowledged although InfluxDB was down for part of the run: the spool holds them.
    const down = await gw.until((s) => !s.storage.up && s.spool.backlogFrames > 0, 30_000, 'storage reported down with a backlog');
    expect(down.storage.lagMs).toBeGreaterThan(0);
    await influx.handle.restart();
    await drained(gw);
    await expectStoredExactly(sink, fleets.get('influxDown')!, report);
  });

  it('takes enrolments and revocations from the CLI while running', async () => {
    const devices = fleetDevices('late', FLEETS.late, 'mix');
    fleets.set('late', devices);
    const file = join(dir, 'late.json');
    writeEnrolmentFile(file, devices);
    const total = (FLEETS.path + FLEETS.faults + FLEETS.influxDown + FLEETS.sigkill + FLEETS.late) as number;
    execFileSync(process.execPath, [CLI, 'enrol', file, '--dataDir', join(dir, 'gw')]);
    await gw.waitFor((l) => l.event === 'registry_changed' && l.devices === total);
    const report = await fleet('late', { frames: 10 });
    expect(report.frames.acked).toBe(FLEETS.late * 10);
    const victim = devices[0]!;
    const before = await gw.status();
    execFileSync(process.execPath, [CLI, 'revoke', victim.deviceId, '--dataDir', join(dir, 'gw')]);
    await gw.waitFor((l) => l.event === 'registry_changed' && l.revoked === 1);
    const attempt = await connectOnce(`mqtt://127.0.0.1:${gw.mqttPort}`, victim.deviceId, victim.keys.secretKey);
    expect(attempt).toMatchObject({ connected: false, returnCode: 5 });
    const after = await gw.status();
    expect((after.mqtt.connectRefusedBy.CONNECT_REVOKED ?? 0) - (before.mqtt.connectRefusedBy.CONNECT_REVOKED ?? 0)).toBe(1);
    const other = await connectOnce(`mqtt://127.0.0.1:${gw.mqttPort}`, devices[1]!.deviceId, devices[1]!.keys.secretKey);
    expect(other).toMatchObject({ connected: true });
    await drained(gw);
    await expectStoredExactly(sink, devices, report);
  });

  it('loses nothing and stores nothing twice when the gateway is SIGKILLed mid-run', async () => {
    const port = gw.mqttPort;
    let restarted: Promise<void> | undefined;
    const report = await fleet('sigkill', {
      frames: 200,
      progressIntervalMs: 20,
      onProgress: (p) => {
        if (!restarted && p.acked >= 150) {
          restarted = (async () => {
            await gw.kill();
            gw = await GatewayProcess.start(gatewayFlags({ 'mqtt.port': port }));
          })();
        }
      },
    });
    await restarted;
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.sigkill * 200);
    expect(report.connections.connects).toBeGreaterThan(FLEETS.sigkill);
    const recovered = await gw.waitFor((l) => l.event === 'spool_recovered');
    expect(recovered.event).toBe('spool_recovered');
    await drained(gw);
    await expectStoredExactly(sink, fleets.get('sigkill')!, report);
  });

  it('puts every stored frame, across the outage and the crash, in exactly one anchored batch', async () => {
    const s = await anchoredAll(gw);
    expect(Number(s.batches.lastAnchored)).toBeGreaterThan(4);
    // Every frame the fleets had acknowledged (checked by the tests above) is a leaf.
    const { leaves } = await expectBatchesConsistent(join(dir, 'gw'), sink, embeddedChainUrl(join(dir, 'gw')));
    expect(leaves).toBe((await sink.queryFrames()).length);
  });
});
