/**
 * A long InfluxDB outage against a small spool quota: the gateway raises its alarm, stops
 * acknowledging at the quota (devices keep their frames), and when InfluxDB returns it
 * drains, takes the waiting frames, and stores every one exactly once.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetProgress } from '../../device-sim/run.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { drained, expectStoredExactly } from '../support/stored.js';

const influx = useInfluxd();
const QUOTA = 256 * 1024;
const DEVICES = 4;
const FRAMES = 150;
let dir: string;
let gw: GatewayProcess;
let devices: SimDevice[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-quota-'));
  devices = fleetDevices('quota', DEVICES, 'all');
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  execFileSync(process.execPath, [CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', join(dir, 'gw')]);
  gw = await GatewayProcess.start({
    dataDir: join(dir, 'gw'),
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'spool.quotaBytes': QUOTA,
    'storage.retryMinMs': 50,
    'storage.retryMaxMs': 300,
  });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('alarms near the quota, holds acknowledgements at it, and loses nothing', async () => {
  await influx.handle.kill();
  let progress: FleetProgress | undefined;
  const run = runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: DEVICES,
    seed: 'quota',
    sensors: 'all',
    frames: FRAMES,
    stateDir: join(dir, 'sim'),
    drainTimeoutMs: 90_000,
    progressIntervalMs: 50,
    onProgress: (p) => (progress = p),
  });
  const alarm = await gw.waitFor((l) => l.event === 'spool_alarm');
  expect(alarm.event).toBe('spool_alarm');
  // At the quota the gateway stops acknowledging: frames wait in the devices' outboxes.
  const full = await gw.until((s) => s.spool.bytes >= QUOTA && s.spool.alarm, 60_000, 'spool at its quota');
  expect(full.storage.up).toBe(false);
  const held = await gw.status();
  expect(held.frames.accepted).toBeLessThan(DEVICES * FRAMES);
  expect(progress === undefined || progress.acked < DEVICES * FRAMES).toBe(true);
  const health = await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`);
  expect(health.status).toBe(503);

  await influx.handle.restart();
  const report = await run;
  expect(report.drained).toBe(true);
  expect(report.frames.acked).toBe(DEVICES * FRAMES);
  expect(report.frames.droppedFromOutbox).toBe(0);
  const s = await drained(gw);
  expect(s.spool.alarm).toBe(false);
  await gw.waitFor((l) => l.event === 'spool_alarm_cleared');
  await expectStoredExactly(new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: 'gw-local' }), devices, report);
});
