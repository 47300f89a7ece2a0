/**
 * `npm run bench`: figures from ONE run on this machine, printed as a table and written to
 * ./data/bench-results.json. docs/bench.md says what each figure means.
 *
 *   (a) bare node:crypto Ed25519 verifications per second on one core (cached KeyObject,
 *       frame-sized messages), and CPU µs per verification;
 *   (b) the real gateway process end to end: N MQTT clients publish pre-signed frames at
 *       QoS 1 as fast as a bounded in-flight window allows; the clock stops when every PUBACK
 *       has arrived AND /status shows every frame written to a real InfluxDB;
 *   (c) the gateway process's CPU seconds per frame over (b), divided by (a)'s CPU per
 *       verification for the same frame mix;
 *   (d) publish-to-PUBACK latency (p50, p99) at half the rate measured in (b), paced.
 *   (g) login flood: publish-to-PUBACK latency (p50, p95) of honest devices at a quarter of (b)'s
 *       rate, without and then with a concurrent flood of forged researcher logins (POST
 *       /auth/login, well-formed, random signatures, --flood-rate per second from 16 sources),
 *       in the same run, and the ratio of the two (scripts/lib/login-flood.ts).
 *   (h) a hospital on one box (scripts/lib/bench-fleet.ts): frame accepted at one of three
 *       gateways → delivered to a researcher through the hub (p50, p99); the uplink's gateway
 *       CPU per frame as a ratio to the same gateway's without it (scripts/lib/bench-uplink.ts);
 *       the hub's deliveries per CPU-second.
 *
 * Everything listens on 127.0.0.1 on free ports, in a temp dir removed at the end. Every
 * loop is bounded in count and in time.
 *
 *   npm run bench -- [--devices 50] [--frames 600] [--flood-rate 500] [--flood-sources 16] [--only login-flood|fleet] [--out ./data/bench-results.json]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fleetDevices, writeEnrolmentFile } from '../device-sim/fleet.js';
import { startInfluxd, type InfluxdHandle } from '../gateway/storage/influxd.js';
import { positiveInt } from './lib/duration.js';
import { GATEWAY_CLI, GatewayProcess } from './lib/gateway-process.js';
import { clockTicksPerSecond, machineCpuSeconds } from './lib/proc.js';
import { sig } from './lib/stats.js';
import { startPrivateBus, type PrivateBus } from '../device-sim/bluez/bus-daemon.js';
import { benchVerify, KINDS, splitFrames } from './lib/bench-frames.js';
import { anchoringFigures, BLE_DEVICES, bleRun, loginFloodFleets, loginFloodRun } from './lib/bench-more.js';
import { e2eRun, latencyRun, pollStatus, sleep } from './lib/bench-mqtt.js';
import { fmt, print, printFleet, printLoginFlood } from './lib/bench-print.js';
import { fleetFigures, type FleetFigures } from './lib/bench-fleet.js';

async function main(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string', default: '50' },
      frames: { type: 'string', default: '600' },
      out: { type: 'string', default: join('data', 'bench-results.json') },
      'flood-rate': { type: 'string', default: '500' },
      'flood-sources': { type: 'string', default: '16' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(
      'usage: npm run bench -- [--devices 50] [--frames 600 (small frames per device; the mix sends a third)] [--flood-rate 500 (forged logins/s in (g))] [--flood-sources 16 (their loopback addresses)] [--only login-flood|fleet (one part: (g), or (h) the hospital)] [--out ./data/bench-results.json]',
    );
    return 0;
  }
  const nDevices = positiveInt('devices', v.devices);
  const perDevice = positiveInt('frames', v.frames);
  const outFile = resolve(v.out);
  const floodRate = positiveInt('flood-rate', v['flood-rate']);
  const floodSources = positiveInt('flood-sources', v['flood-sources']);
  if (floodSources > 254) throw new Error(`--flood-sources is at most 254 (127.0.2.1 … 127.0.2.254), got ${floodSources}`);
  if (v.only !== undefined && v.only !== 'login-flood' && v.only !== 'fleet') throw new Error(`--only takes login-flood or fleet, got "${v.only}"`);
  if (v.only === 'login-flood') return onlyLoginFlood(nDevices, floodRate, floodSources, outFile);
  if (v.only === 'fleet') return onlyFleet(outFile);
  const WINDOW = 32;
  const benchStarted = Date.now();
  const cpuList = cpus();
  const machine = {
    date: new Date().toISOString(),
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model.trim() ?? 'unknown',
    node: process.version,
    os: `${process.platform} ${release()}`,
    memoryGiB: sig(totalmem() / 2 ** 30),
    clockTicksPerSecond: clockTicksPerSecond(),
    loadAverageAtStart: loadavg().map((x) => sig(x, 2)),
    /** Busy CPU seconds of the whole machine in the second before the bench started anything. */
    busyCpuSecondsBeforeStart: 0,
    influxd: (() => {
      try {
        return execFileSync('influxd', ['version'], { encoding: 'utf8' }).trim();
      } catch {
        return 'unknown';
      }
    })(),
  };
  const log = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
  log(`${machine.cpus} CPUs (${machine.cpuModel}), Node ${machine.node}, load average ${machine.loadAverageAtStart.join(' ')}`);
  // Other load on the machine skews every figure: measure it for a second before starting.
  const m0 = machineCpuSeconds();
  await sleep(1000);
  const idleBusy = sig(machineCpuSeconds().busy - m0.busy, 2);
  machine.busyCpuSecondsBeforeStart = idleBusy;
  if (idleBusy > 0.2)
    log(`WARNING: the machine was already busy (${idleBusy} CPU-s in the last second, before the bench started anything): figures will be low`);

  // (a) before anything else runs, on this otherwise idle thread.
  log('(a) bare Ed25519 verification on one core ...');
  const verifyFigures = [
    benchVerify(['heart_rate'], 'heart_rate (5 samples)', 2),
    benchVerify(['accelerometer'], 'accelerometer (25 × 3)', 2),
    benchVerify(['ecg'], 'ecg (250 samples)', 2),
    benchVerify(KINDS, 'mix (⅓ each of the above)', 2),
  ];
  const bareSmall = verifyFigures[0]!.cpuUsPerVerification;
  const bareMix = verifyFigures[3]!.cpuUsPerVerification;

  const dir = mkdtempSync(join(tmpdir(), 'vp-bench-'));
  let influxd: InfluxdHandle | undefined;
  let gw: GatewayProcess | undefined;
  let bus: PrivateBus | undefined;
  try {
    log('starting influxd and the gateway process ...');
    influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
    const small = fleetDevices('bench-small', nDevices, 'heart_rate');
    const mix = fleetDevices('bench-mix', nDevices, 'heart_rate;accelerometer;ecg');
    const paced = fleetDevices('bench-latency', nDevices, 'heart_rate');
    const bleDevices = fleetDevices('bench-ble', BLE_DEVICES, 'heart_rate');
    const floodFleets = loginFloodFleets(nDevices);
    const gwDir = join(dir, 'gateway');
    const enrolFile = join(dir, 'enrol.json');
    writeEnrolmentFile(enrolFile, [...small, ...mix, ...paced, ...bleDevices, ...floodFleets.base, ...floodFleets.attack]);
    execFileSync(process.execPath, [GATEWAY_CLI, 'enrol', enrolFile, '--dataDir', gwDir], { stdio: 'pipe' });
    bus = await startPrivateBus({ dir: join(dir, 'bus') });
    gw = await GatewayProcess.start(
      { dataDir: gwDir, 'influx.url': influxd.url, 'mqtt.port': 0, 'http.port': 0, gatewayId: 'gw-bench', 'ble.mode': 'on', 'ble.scanIntervalMs': 200 },
      { DBUS_SYSTEM_BUS_ADDRESS: bus.address },
    );

    log(`(b) pre-signing ${nDevices} × ${perDevice} heart_rate frames ...`);
    const smallFrames = splitFrames(small, perDevice, ['heart_rate']);
    log(`(b) small frames: ${nDevices} clients publish ${nDevices * perDevice} frames, QoS 1, ≤ ${WINDOW} in flight each ...`);
    const e2eSmall = await e2eRun(gw, influxd, 'heart_rate, 5 samples', small, smallFrames, ['heart_rate'], bareSmall, WINDOW, 90_000);
    log(`    ${fmt(e2eSmall.framesPerSecond)} frames/s stored (${fmt(e2eSmall.framesPerSecondAcked)}/s acknowledged)`);

    const mixPer = Math.max(3, Math.round(perDevice / 3));
    log(`(b) pre-signing ${nDevices} × ${mixPer} mixed frames ...`);
    const mixFrames = splitFrames(mix, mixPer, KINDS);
    log(`(b) mix: ${nDevices * mixPer} frames ...`);
    const e2eMix = await e2eRun(gw, influxd, 'mix: heart_rate/accelerometer/ecg', mix, mixFrames, KINDS, bareMix, WINDOW, 90_000);
    log(`    ${fmt(e2eMix.framesPerSecond)} frames/s stored (${fmt(e2eMix.framesPerSecondAcked)}/s acknowledged)`);

    const rate = e2eSmall.framesPerSecond / 2;
    const seconds = 10;
    const latPer = Math.max(1, Math.ceil((rate * seconds) / nDevices));
    log(`(d) pre-signing ${nDevices} × ${latPer} heart_rate frames on fresh devices; paced at ${fmt(rate)} frames/s for ~${seconds} s ...`);
    const latFrames = splitFrames(paced, latPer, ['heart_rate']);
    const latency = await latencyRun(gw, influxd, paced, latFrames, rate, 1000, WINDOW);
    const settledS = await pollStatus(gw, (s) => s.spool.backlogFrames === 0, 60_000, 100);
    log('(e) waiting for the last batch to be sealed and anchored ...');
    const anchoredS = await pollStatus(gw, (s) => s.batches.open.frames === 0 && s.batches.pendingAnchors === 0, 60_000, 100);
    const anchoring = await anchoringFigures(gw, gwDir, influxd.url, anchoredS.ok);
    log(`    ${anchoring.batches} batches, ${fmt(anchoring.gasPerAnchor.mean)} gas per anchor, ${fmt(anchoring.gasPerMillionFrames)} gas per million frames`);
    const blePer = Math.max(10, Math.round(perDevice / 6));
    log(`(f) BLE: ${BLE_DEVICES} simulated wearables × ${blePer} heart_rate frames through the simulated BlueZ (private dbus-daemon) ...`);
    const ble = await bleRun(gw, influxd, bus, blePer, e2eSmall.gatewayCpuUsPerFrame);
    log(
      `    ${fmt(ble.framesPerSecond)} frames/s acknowledged; gateway ${fmt(ble.gatewayCpuUsPerFrame)} µs CPU per frame, ${fmt(ble.ratioToMqtt, 2)} × an MQTT frame's`,
    );
    log(`(g) login flood: honest devices paced at ${fmt(rate / 2)} frames/s, without and then with ${floodRate} forged logins/s ...`);
    const loginFlood = await loginFloodRun(gw, influxd, { base: floodFleets.base, attack: floodFleets.attack }, rate / 2, floodRate, floodSources, WINDOW);
    log(
      `    PUBACK p50 ${fmt(loginFlood.baseline.p50Ms, 1)} → ${fmt(loginFlood.underFlood.p50Ms, 1)} ms (× ${fmt(loginFlood.ratioP50, 2)}), p95 ${fmt(loginFlood.baseline.p95Ms, 1)} → ${fmt(loginFlood.underFlood.p95Ms, 1)} ms (× ${fmt(loginFlood.ratioP95, 2)})`,
    );
    const problems = gw.problems();
    log('(h) a hospital on one box: anvil, Mosquitto, 3 gateways and a hub on the same influxd ...');
    const fleet = await fleetFigures(join(dir, 'fleet'), influxd, log);

    const results = {
      version: 1,
      machine,
      settings: {
        devices: nDevices,
        inFlightPerDevice: WINDOW,
        gatewayVerifyWorkers: 2,
        storageBatchFrames: 1000,
        note: 'gateway defaults except data dir, ports and influx.url',
      },
      verify: verifyFigures,
      endToEnd: [e2eSmall, e2eMix],
      latency,
      anchoring,
      ble,
      loginFlood,
      fleet,
      gatewayWarnings: problems.slice(0, 20),
      finalStatus: settledS.s,
      benchSeconds: Math.round((Date.now() - benchStarted) / 1000),
    };
    mkdirSync(dirname(outFile), { recursive: true });
    writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
    print(results);
    console.log(`\nwritten to ${outFile}`);
    const ok =
      e2eSmall.complete &&
      e2eMix.complete &&
      latency.errors === 0 &&
      ble.complete &&
      loginFlood.baseline.errors === 0 &&
      loginFlood.underFlood.errors === 0 &&
      fleetComplete(fleet);
    if (!ok) console.log('WARNING: a run did not complete (see "complete" and "errors" in the JSON)');
    const busy = [e2eSmall.cpu, e2eMix.cpu, latency.cpu].filter((c) => c.otherS > 0.1 * machine.cpus * c.wallS);
    if (busy.length)
      console.log(
        `WARNING: other processes used more than 10 % of the machine's CPU during ${busy.length} of the 3 runs (OTHER above): those figures understate this gateway`,
      );
    return ok ? 0 : 1;
  } finally {
    let t = performance.now();
    await gw?.stop();
    log(`gateway stopped in ${Math.round(performance.now() - t)} ms (exit code ${gw ? String(await gw.exited) : 'n/a'})`);
    t = performance.now();
    await influxd?.stop();
    log(`influxd stopped in ${Math.round(performance.now() - t)} ms`);
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `--only login-flood`: influxd and the gateway, then (g) alone. */
async function onlyLoginFlood(nDevices: number, floodRate: number, floodSources: number, outFile: string): Promise<number> {
  const log = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'vp-bench-flood-'));
  let influxd: InfluxdHandle | undefined;
  let gw: GatewayProcess | undefined;
  try {
    influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
    const fleets = loginFloodFleets(nDevices);
    const gwDir = join(dir, 'gateway');
    const enrolFile = join(dir, 'enrol.json');
    writeEnrolmentFile(enrolFile, [...fleets.base, ...fleets.attack, ...fleets.warm]);
    execFileSync(process.execPath, [GATEWAY_CLI, 'enrol', enrolFile, '--dataDir', gwDir], { stdio: 'pipe' });
    gw = await GatewayProcess.start({ dataDir: gwDir, 'influx.url': influxd.url, 'mqtt.port': 0, 'http.port': 0, gatewayId: 'gw-bench' });
    // A moderate ward load that leaves the gateway headroom (the full bench uses a quarter of (b)).
    const rate = 100;
    log(`(g) login flood: honest devices paced at ${rate} frames/s, without and then with ${floodRate} forged logins/s ...`);
    const g = await loginFloodRun(gw, influxd, fleets, rate, floodRate, floodSources, 32);
    const out: string[] = [
      `VitalProof bench (g) only, ${new Date().toISOString()}, load average at start ${loadavg()
        .map((x) => sig(x, 2))
        .join(' ')}`,
    ];
    printLoginFlood(g, out);
    console.log(out.join('\n'));
    mkdirSync(dirname(outFile), { recursive: true });
    writeFileSync(outFile, `${JSON.stringify({ version: 1, loginFlood: g, gatewayWarnings: gw.problems().slice(0, 20) }, null, 2)}\n`);
    console.log(`\nwritten to ${outFile}`);
    return g.baseline.errors === 0 && g.underFlood.errors === 0 ? 0 : 1;
  } finally {
    await gw?.stop();
    await influxd?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every (h) run delivered and stored everything it sent. */
function fleetComplete(f: FleetFigures): boolean {
  const d = f.hospital.delivery;
  return d.missing === 0 && d.errors === 0 && f.uplinkCost.complete && f.hospital.hub.complete;
}

/** `--only fleet`: influxd, then (h) alone. */
async function onlyFleet(outFile: string): Promise<number> {
  const log = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'vp-bench-fleet-'));
  let influxd: InfluxdHandle | undefined;
  try {
    const m0 = machineCpuSeconds();
    await sleep(1000);
    const busy = sig(machineCpuSeconds().busy - m0.busy, 2);
    if (busy > 0.2) log(`WARNING: the machine was already busy (${busy} CPU-s in the last second, before the bench started anything): figures will be low`);
    influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
    const fleet = await fleetFigures(join(dir, 'fleet'), influxd, log);
    const out: string[] = [
      `VitalProof bench (h) only, ${new Date().toISOString()}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), Node ${process.version}, load average at start ${loadavg()
        .map((x) => sig(x, 2))
        .join(' ')}, busy CPU-s in the second before ${busy}`,
      '',
    ];
    printFleet(fleet, out);
    console.log(out.join('\n'));
    mkdirSync(dirname(outFile), { recursive: true });
    writeFileSync(outFile, `${JSON.stringify({ version: 1, fleet }, null, 2)}\n`);
    console.log(`\nwritten to ${outFile}`);
    return fleetComplete(fleet) ? 0 : 1;
  } finally {
    await influxd?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    console.error(e.stack ?? String(e));
    process.exitCode = 1;
  },
);
