/**
 * A permanent InfluxDB refusal through the real gateway process (issue #10, item 9): another
 * writer stored `heart_rate`'s field `value` as a string, so InfluxDB refuses every heart-rate
 * frame of the fleet with 400 "field type conflict". Before, the storage writer retried that
 * batch forever and nothing behind it was stored. Now the gateway stores every other frame,
 * sets each heart-rate frame aside in the storage quarantine (counted in /status and /metrics,
 * one error line each, no readings), and `vitalproof storage replay` stores them once the
 * operator dropped the foreign data: then InfluxDB holds every acknowledged frame exactly once.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet } from '../../device-sim/run.js';
import { InfluxHttp } from '../../gateway/storage/influx-http.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { STORAGE_QUARANTINE_DIR } from '../../gateway/storage/quarantine.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { expectStoredExactly } from '../support/stored.js';

const influx = useInfluxd();
const DEVICES = 3;
const FRAMES = 30;
const SENSORS = 'heart_rate,spo2,skin_temperature';
let dir: string;
let gw: GatewayProcess;
let devices: SimDevice[];
/** No chain: the registry file is enough here, and the gateway starts faster. */
const light = { 'registry.source': 'file', 'chain.mode': 'off' } as const;
const lightArgs = Object.entries(light).flatMap(([k, v]) => [`--${k}`, v]);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-e2e-squar-'));
  devices = fleetDevices('squar', DEVICES, SENSORS);
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  execFileSync(process.execPath, [CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', join(dir, 'gw'), ...lightArgs]);
  gw = await GatewayProcess.start({
    dataDir: join(dir, 'gw'),
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'storage.retryMinMs': 50,
    'storage.retryMaxMs': 400,
    ...light,
  });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function cli(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, 'storage', ...args, '--dataDir', join(dir, 'gw'), '--influx.url', influx.handle.url, ...lightArgs], {
    encoding: 'utf8',
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

it('quarantines the refused frames without blocking the others, and the replay stores them once the database is fixed', async () => {
  // Another writer's string `value` in heart_rate, in every shard the fleet's frames can fall in
  // (a type lives per shard; frames are timestamped up to a few minutes in the past).
  const http = new InfluxHttp({ url: influx.handle.url });
  await http.query('CREATE DATABASE vitalproof');
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const hourNs = 3_600_000_000_000n;
  await http.write(
    'vitalproof',
    [-25n, -1n, 0n, 1n].map((h, i) => `heart_rate,device=ffffffffffffff0${i},gateway=other value="seventy" ${nowNs + h * hourNs}`),
  );

  const report = await runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: DEVICES,
    seed: 'squar',
    sensors: SENSORS,
    frames: FRAMES,
    stateDir: join(dir, 'sim'),
    drainTimeoutMs: 60_000,
  });
  expect(report.drained).toBe(true);
  expect(report.frames.acked).toBe(DEVICES * FRAMES);

  // The writer went on: every accepted frame is either stored or set aside, and the spool is empty.
  const s = await gw.until(
    (x) =>
      x.spool.backlogFrames === 0 && x.storage.framesWritten + x.storage.quarantined >= x.frames.accepted && x.storage.quarantineHeld === x.storage.quarantined,
    60_000,
    'every frame stored or quarantined',
  );
  expect(s.frames.accepted).toBe(DEVICES * FRAMES);
  expect(s.storage.quarantined).toBeGreaterThan(0);
  expect(s.storage.framesWritten).toBeGreaterThan(0);
  expect(s.storage.up).toBe(true);
  const sink = new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: 'gw-local' });
  for (const d of devices) expect(await sink.queryPoints('heart_rate', d.deviceId), `no heart_rate of ${d.deviceId} stored yet`).toEqual([]);
  for (const d of devices) expect((await sink.queryPoints('spo2', d.deviceId)).length).toBeGreaterThan(0);

  // One error line per quarantined frame: device, seq and InfluxDB's message, never a reading.
  const lines = gw.lines.filter((l) => l.event === 'storage_quarantined');
  expect(lines).toHaveLength(s.storage.quarantined);
  expect(new Set(lines.map((l) => `${String(l['device'])}/${String(l['seq'])}`)).size).toBe(lines.length);
  for (const l of lines) {
    expect(l.level).toBe(50);
    expect(devices.map((d) => d.deviceId)).toContain(l['device']);
    expect(l['status']).toBe(400);
    expect(String(l['err'])).toContain('field type conflict');
    expect(JSON.stringify(l)).not.toMatch(/value=|patient|pt-/);
  }
  expect(readdirSync(join(dir, 'gw', STORAGE_QUARANTINE_DIR))).toHaveLength(s.storage.quarantined);
  const metrics = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
  expect(metrics).toContain(`vitalproof_storage_quarantined_total ${s.storage.quarantined}`);
  expect(metrics).toContain(`vitalproof_storage_quarantine_held ${s.storage.quarantined}`);

  // A replay before the fix stores nothing and says why; a dry run lists every held frame.
  const early = cli('replay');
  expect(early.code, early.out).toBe(1);
  expect(early.out).toContain(`still refused ${s.storage.quarantined} frame(s)`);
  const dry = cli('replay', '--dry-run');
  expect(dry.code, dry.out).toBe(1);
  expect(dry.out).toContain(`a replay would write ${s.storage.quarantined} frame(s)`);

  // The operator's fix: drop the measurement with the foreign type (it holds none of our points).
  await http.query('DROP MEASUREMENT heart_rate', { database: 'vitalproof' });
  const done = cli('replay');
  expect(done.code, done.out).toBe(0);
  expect(done.out).toContain(`replayed ${s.storage.quarantined} frame(s)`);
  expect(readdirSync(join(dir, 'gw', STORAGE_QUARANTINE_DIR))).toEqual([]);
  await gw.until((x) => x.storage.quarantineHeld === 0, 10_000, 'the status to see the quarantine emptied');

  // Now InfluxDB holds every acknowledged frame once, each point equal to its signed sample;
  // the quarantined ones are exactly the heart-rate frames.
  await expectStoredExactly(sink, devices, report);
  let heartRateFrames = 0;
  for (const d of devices) heartRateFrames += (await sink.queryFrames(d.deviceId)).filter((f) => f.sensor === 'heart_rate').length;
  expect(heartRateFrames).toBe(s.storage.quarantined);

  const again = cli('replay');
  expect(again.code, again.out).toBe(0);
  expect(again.out).toContain('0 frame(s) held');
});
