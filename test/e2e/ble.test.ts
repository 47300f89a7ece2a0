/**
 * BLE end to end, with no radio: simulated wearables (device-sim BleLink) served as a
 * BlueZ-compatible `org.bluez` on a private dbus-daemon → the real gateway process, whose
 * node-ble central only has DBUS_SYSTEM_BUS_ADDRESS pointed at that bus → spool → a real
 * influxd → Merkle batches anchored on the embedded anvil chain. Every check reads back what
 * InfluxDB and the chain hold.
 *
 * Covered: many devices at once (22 BLE beside an MQTT fleet), frames stored exactly as signed
 * and anchored like MQTT frames; frame faults refused under the same reasons as over MQTT;
 * broken fragment streams refused under their FRAGMENT_* reasons, the device disconnected and
 * nothing lost; links dropped mid-stream, devices out of range and vanishing, losing nothing
 * and duplicating nothing; a non-enrolled wearable never subscribed to; wearables that stall
 * mid-frame dropped by the stall timer and counted, while the others are served meanwhile.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions, type FleetReport } from '../../device-sim/run.js';
import { startSimulatedBluez } from '../../device-sim/bluez/service.js';
import { addRogueWearable } from '../../device-sim/ble-rogue.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import { useInfluxd } from '../support/influxd.js';
import { usePrivateBus } from '../support/dbus.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { drained, expectStoredExactly } from '../support/stored.js';
import { anchoredAll, embeddedChainUrl, expectBatchesConsistent } from '../support/anchored.js';

const influx = useInfluxd();
const bus = usePrivateBus();
const FLEETS = { many: 22, mqttSide: 3, faults: 6, radio: 5, stalls: 2, steady: 6 } as const;
let dir: string;
let gw: GatewayProcess;
let sink: InfluxSink;
const fleets = new Map<string, SimDevice[]>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-ble-'));
  for (const [seed, n] of Object.entries(FLEETS)) {
    const devices = fleetDevices(seed, n, 'mix');
    fleets.set(seed, devices);
    const file = join(dir, `${seed}.json`);
    writeEnrolmentFile(file, devices);
    execFileSync(process.execPath, [CLI, 'enrol', file, '--dataDir', join(dir, 'gw')]);
  }
  gw = await GatewayProcess.start(
    {
      dataDir: join(dir, 'gw'),
      gatewayId: 'gw-ble',
      'influx.url': influx.handle.url,
      'mqtt.port': 0,
      'http.port': 0,
      'batch.intervalMs': 500,
      'ble.mode': 'on',
      'ble.scanIntervalMs': 200,
      'ble.reconnectMinMs': 100,
      'ble.reconnectMaxMs': 1000,
      'ble.connectTimeoutMs': 3000,
      'ble.refuseHoldMs': 1000,
      'ble.stallMs': 2000,
    },
    { DBUS_SYSTEM_BUS_ADDRESS: bus.address },
  );
  sink = new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: 'gw-ble' });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function bleFleet(
  seed: keyof typeof FLEETS,
  o: Omit<Partial<FleetOptions>, 'ble'> & { ble?: Partial<NonNullable<FleetOptions['ble']>> },
): Promise<FleetReport> {
  return runFleet({
    ...o,
    transport: 'ble',
    ble: { temporaryTimeoutMs: 1000, connectTimeoutMs: 1000, ...o.ble, busAddress: bus.address },
    devices: FLEETS[seed],
    seed,
    stateDir: join(dir, `state-${seed}`),
    drainTimeoutMs: 90_000,
  });
}

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(after), ...Object.keys(before)])) {
    const d = (after[k] ?? 0) - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

function bleSection(s: StatusSnapshot): Extract<StatusSnapshot['ble'], { mode: 'on' }> {
  if (s.ble.mode !== 'on') throw new Error('the gateway runs without BLE');
  return s.ble;
}

describe('BLE end to end', () => {
  it('takes 22 BLE wearables beside an MQTT fleet: every frame stored once, as signed, and anchored like MQTT frames', async () => {
    const before = await gw.status();
    // While they run, the status lists the BLE wearables: connected, RSSI, frames, last frame.
    const live = gw.until(
      (x) => bleSection(x).devices.filter((d) => d.state === 'connected' && d.frames > 0).length >= 10,
      60_000,
      '10 BLE wearables delivering',
    );
    const [ble, mqtt, during] = await Promise.all([
      bleFleet('many', { frames: 25, ble: { notifyDelayMs: 2 } }),
      runFleet({
        brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
        devices: FLEETS.mqttSide,
        seed: 'mqttSide',
        frames: 25,
        stateDir: join(dir, 'state-mqttSide'),
        drainTimeoutMs: 60_000,
      }),
      live,
    ]);
    const ids = new Set(fleets.get('many')!.map((d) => d.deviceId));
    for (const d of bleSection(during).devices.filter((x) => x.state === 'connected' && x.frames > 0)) {
      expect(ids.has(d.deviceId!)).toBe(true);
      expect(d.rssi).toBeLessThan(0);
      expect(d.lastFrameAtMs).toBeGreaterThan(Date.now() - 120_000);
      expect(d.connects).toBeGreaterThanOrEqual(1);
    }
    expect(ble.drained).toBe(true);
    expect(ble.frames.acked).toBe(FLEETS.many * 25);
    expect(mqtt.drained).toBe(true);
    const s = await drained(gw);
    expect(s.frames.byTransport.ble.accepted - before.frames.byTransport.ble.accepted).toBe(FLEETS.many * 25);
    expect(s.frames.byTransport.mqtt.accepted - before.frames.byTransport.mqtt.accepted).toBe(FLEETS.mqttSide * 25);
    expect(delta(s.frames.rejectedBy, before.frames.rejectedBy)).toEqual({});
    await expectStoredExactly(sink, fleets.get('many')!, ble);
    await expectStoredExactly(sink, fleets.get('mqttSide')!, mqtt);
    // Every BLE wearable was connected (and none refused) by the central.
    const b = bleSection(s);
    expect(delta(b.connectRefusedBy, bleSection(before).connectRefusedBy)).toEqual({});
    expect(new Set(ble.perDevice.filter((d) => d.link.connects > 0).map((d) => d.deviceId)).size).toBe(FLEETS.many);
    const anchored = await anchoredAll(gw);
    expect(anchored.batches.pendingAnchors).toBe(0);
    const { leaves } = await expectBatchesConsistent(join(dir, 'gw'), sink, embeddedChainUrl(join(dir, 'gw')));
    expect(leaves).toBeGreaterThanOrEqual(FLEETS.many * 25 + FLEETS.mqttSide * 25);
  });

  it('refuses faulty frames under the MQTT reasons and broken fragment streams under FRAGMENT_* reasons, and loses no honest frame', async () => {
    const before = await gw.status();
    const report = await bleFleet('faults', {
      frames: 60,
      faults: 'tamper=0.04,bad_signature=0.04,malformed=0.04,replay=0.04,skew=0.03,gap=0.04,wrong_topic=0.04,oversized=0.02,disconnect=0.03,bad_fragment=0.05',
    });
    expect(report.drained).toBe(true);
    expect(report.faults.unexpected).toBe(0);
    expect(report.faults.lost).toBe(0);
    const s = await drained(gw);
    const injected = report.faults.injected;
    expect(injected.bad_fragment ?? 0).toBeGreaterThan(0);
    expect(injected.tamper ?? 0).toBeGreaterThan(0);
    expect(delta(s.frames.rejectedBy, before.frames.rejectedBy)).toEqual(report.faults.expectedRejections);
    const b = bleSection(s);
    const frags = delta(b.fragmentRejectedBy, bleSection(before).fragmentRejectedBy);
    // A device dropped mid-frame by the radio fault leaves no partial frame behind (frames end at boundaries),
    // so every fragment refusal is one the simulator provoked.
    expect(frags).toEqual(report.faults.expectedFragmentRejections);
    // Each broken stream cost its connection, and the device resent everything unacknowledged on the next.
    const lossDisconnects = (b.endedBy.BLE_FRAGMENT_LOSS ?? 0) - (bleSection(before).endedBy.BLE_FRAGMENT_LOSS ?? 0);
    expect(lossDisconnects).toBe(Object.values(report.faults.expectedFragmentRejections).reduce((n, x) => n + x, 0));
    expect(s.frames.seqGaps - before.frames.seqGaps).toBe(report.faults.expectedSeqGaps);
    await expectStoredExactly(sink, fleets.get('faults')!, report);
  });

  it('loses and duplicates nothing when links drop, devices go out of range and vanish: the backlog arrives after they return', async () => {
    const before = await gw.status();
    const report = await bleFleet('radio', {
      frames: 80,
      faults: 'out_of_range=0.03,vanish=0.02,disconnect=0.03',
      ble: { notifyDelayMs: 1, outOfRangeMs: [500, 1500], vanishMs: [500, 1500] },
    });
    expect(report.drained).toBe(true);
    expect(report.faults.unexpected).toBe(0);
    expect(report.faults.injected.out_of_range ?? 0).toBeGreaterThan(0);
    // Devices came back: more connections than devices, and the central connected again each time.
    expect(report.connections.connects).toBeGreaterThan(FLEETS.radio);
    const s = await drained(gw);
    expect(s.frames.byTransport.ble.accepted - before.frames.byTransport.ble.accepted).toBe(FLEETS.radio * 80);
    expect(delta(s.frames.rejectedBy, before.frames.rejectedBy)).toEqual({});
    await expectStoredExactly(sink, fleets.get('radio')!, report);
  });

  it('never subscribes to a wearable that is not enrolled, and counts the refusal', async () => {
    const before = bleSection(await gw.status());
    const bluez = await startSimulatedBluez({ busAddress: bus.address, temporaryTimeoutMs: 1000 });
    try {
      const rogue = addRogueWearable(bluez, { seed: 'rogues', n: 0 });
      const s = await gw.until((x) => bleSection(x).devices.some((d) => d.deviceId === rogue.deviceId && d.state === 'refused'), 30_000, 'the rogue refused');
      expect((bleSection(s).connectRefusedBy.CONNECT_UNKNOWN_DEVICE ?? 0) - (before.connectRefusedBy.CONNECT_UNKNOWN_DEVICE ?? 0)).toBeGreaterThanOrEqual(1);
      expect(rogue.peripheral.stats.notifyStarts).toBe(0);
      expect(rogue.link.backlog).toBe(3);
      // `vitalproof status` lists it, with its state and RSSI, under the BLE section.
      const text = execFileSync(process.execPath, [CLI, 'status', '--url', `http://127.0.0.1:${gw.httpPort}`], { encoding: 'utf8' });
      const line = text.split('\n').find((l) => l.includes(rogue.deviceId));
      expect(line).toMatch(/refused\s+-\d+ dBm/);
      expect(text).toMatch(/^ble {6}hci0 up/m);
    } finally {
      await bluez.close();
    }
  });

  it('drops a wearable that stalls mid-frame after ble.stallMs (FRAGMENT_STALLED) and counts it, while the other wearables keep being served', async () => {
    const before = await gw.status();
    // Two fleets at once on one simulated BlueZ (org.bluez is exclusive on the bus): 6 healthy
    // wearables on the clock, and 2 that often send the first fragments of a frame and then
    // nothing until the gateway hangs up (stall, ble-streams.ts stalledStream).
    const bluez = await startSimulatedBluez({ busAddress: bus.address, temporaryTimeoutMs: 1000, connectTimeoutMs: 1000 });
    const stopHealthy = new AbortController();
    try {
      let healthyAcks = 0;
      const served = new Set<string>();
      let allServed!: () => void;
      const healthyUp = new Promise<void>((resolve) => (allServed = resolve));
      const healthyRun = bleFleet('steady', {
        signal: stopHealthy.signal,
        ble: { bluez },
        onAck: (deviceId) => {
          healthyAcks++;
          served.add(deviceId);
          if (served.size === FLEETS.steady) allServed();
        },
      });
      await Promise.race([healthyUp, healthyRun.then(() => Promise.reject(new Error('the healthy fleet ended before each of its wearables was served')))]);

      // Per stall: the healthy fleet's acknowledgements when the device went silent, and when the gateway hung up on it.
      const silentAt = new Map<string, number>();
      const windows: { deviceId: string; ackedAtSilence: number; ackedAtDisconnect: number; outcome: string | undefined }[] = [];
      const stalled = await bleFleet('stalls', {
        frames: 16,
        faults: 'stall=0.25',
        ble: { bluez },
        onFault: (e) => {
          if (e.kind !== 'stall') return;
          if (e.event === 'holding') silentAt.set(e.deviceId, healthyAcks);
          if (e.event === 'settled' && silentAt.has(e.deviceId)) {
            windows.push({ deviceId: e.deviceId, ackedAtSilence: silentAt.get(e.deviceId)!, ackedAtDisconnect: healthyAcks, outcome: e.outcome });
            silentAt.delete(e.deviceId);
          }
        },
      }).finally(() => stopHealthy.abort());
      const healthy = await healthyRun;

      expect(stalled.drained).toBe(true);
      expect(healthy.drained).toBe(true);
      expect(stalled.faults.unexpected).toBe(0);
      expect(stalled.faults.lost).toBe(0);
      const stalls = stalled.faults.injected.stall ?? 0;
      expect(stalls).toBeGreaterThan(0);
      expect(stalled.faults.expectedFragmentRejections).toEqual({ FRAGMENT_STALLED: stalls });
      expect(healthy.faults.injected).toEqual({});
      // The healthy wearables were served during every stall, and never lost their connection to it.
      expect(windows).toHaveLength(stalls);
      for (const w of windows) {
        expect(w.outcome).toBe('confirmed');
        expect(w.ackedAtDisconnect, `healthy acknowledgements while ${w.deviceId} was stalled`).toBeGreaterThan(w.ackedAtSilence);
      }
      expect(healthy.connections.connects).toBe(FLEETS.steady);

      const s = await drained(gw);
      const b = bleSection(s);
      const b0 = bleSection(before);
      expect(delta(b.fragmentRejectedBy, b0.fragmentRejectedBy)).toEqual({ FRAGMENT_STALLED: stalled.faults.expectedFragmentRejections.FRAGMENT_STALLED });
      // Each stall cost its connection: the gateway's stall timer ended it as a loss in transit.
      expect((b.endedBy.BLE_FRAGMENT_LOSS ?? 0) - (b0.endedBy.BLE_FRAGMENT_LOSS ?? 0)).toBe(stalls);
      const stallIds = new Set(fleets.get('stalls')!.map((d) => d.deviceId));
      const timerLosses = gw.lines.filter((l) => l.event === 'ble_disconnected' && l['reason'] === 'BLE_FRAGMENT_LOSS' && stallIds.has(l['device'] as string));
      expect(timerLosses.map((l) => l['reasons'])).toEqual(Array.from({ length: stalls }, () => ['FRAGMENT_STALLED']));
      // Nothing honest lost: every frame of both fleets accepted and stored once.
      expect(stalled.frames.acked).toBe(FLEETS.stalls * 16);
      expect(s.frames.byTransport.ble.accepted - before.frames.byTransport.ble.accepted).toBe(stalled.frames.recorded + healthy.frames.recorded);
      expect(delta(s.frames.rejectedBy, before.frames.rejectedBy)).toEqual({});
      await expectStoredExactly(sink, fleets.get('stalls')!, stalled);
      await expectStoredExactly(sink, fleets.get('steady')!, healthy);
    } finally {
      stopHealthy.abort();
      await bluez.close();
    }
  });
});
