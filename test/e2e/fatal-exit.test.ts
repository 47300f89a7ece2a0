/**
 * A fatal fault ends the process (issue #10, C): the gateway used to log "fatal fault;
 * exiting" and stay alive with its listeners closed — a synchronous throw while sealing the
 * last batch on the way down skipped the remaining shutdown steps — so a supervisor that
 * restarts on exit never fired. Here the batch store's directory is swapped for a file under
 * a running gateway: sealing fails, and the process must exit non-zero by itself.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { runFleet } from '../../device-sim/run.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';

const influx = useInfluxd();
let dir: string;
let gw: GatewayProcess;
const offChain = { 'chain.mode': 'off', 'registry.source': 'file' } as const;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-fatal-'));
  const devices = fleetDevices('fatal', 2, 'mix');
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  execFileSync(process.execPath, [
    CLI,
    'enrol',
    join(dir, 'fleet.json'),
    '--dataDir',
    join(dir, 'gw'),
    ...Object.entries(offChain).flatMap(([k, v]) => [`--${k}`, v]),
  ]);
  gw = await GatewayProcess.start({
    dataDir: join(dir, 'gw'),
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'batch.intervalMs': 200,
    ...offChain,
  });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('exits with status 1 when a batch cannot be sealed, with every shutdown step run', async () => {
  const report = await runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: 2,
    seed: 'fatal',
    sensors: 'mix',
    frames: 20,
    stateDir: join(dir, 'sim'),
  });
  expect(report.frames.acked).toBe(40);
  await gw.until((s) => Number(s.batches.lastSealed) >= 1, 30_000, 'a batch sealed');
  // The batch store's directory becomes a file: the next seal (and the seal on the way down) fails.
  rmSync(join(dir, 'gw', 'batches'), { recursive: true, force: true });
  writeFileSync(join(dir, 'gw', 'batches'), 'not a directory\n');
  // More frames, so that a seal is due; the fleet stops when the gateway has gone (it would
  // otherwise reconnect to a dead port until its own end, however early the seal came).
  const moreStop = new AbortController();
  const more = runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: 2,
    seed: 'fatal',
    sensors: 'mix',
    frames: 3,
    stateDir: join(dir, 'sim'),
    drainTimeoutMs: 2_000,
    signal: moreStop.signal,
  });
  const code = await gw.exited;
  moreStop.abort();
  expect(code).toBe(1);
  const fatal = gw.lines.find((l) => l.event === 'fatal');
  expect(fatal?.['what']).toBe('gateway fault');
  // The runtime file is removed by the last shutdown step: it ran although sealing had thrown.
  expect(gw.lines.some((l) => l.event === 'shutdown_step_failed')).toBe(true);
  expect(() => execFileSync('test', ['-e', join(dir, 'gw', 'gateway.json')])).toThrow();
  await more.catch(() => undefined);
});
