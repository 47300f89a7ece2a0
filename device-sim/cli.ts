#!/usr/bin/env node
/**
 * vp-sim: a fleet of simulated wearables.
 *
 *   vp-sim run --broker mqtt://127.0.0.1:1883 --devices 20 --seed 42 --duration 60s --faults tamper=0.01,skew=0.01
 *   vp-sim run --broker mqtts://127.0.0.1:8883 --ca data/dev-ca/ca.crt --devices 5 --frames 100   (MQTT over TLS)
 *   vp-sim run --devices 5 --frames 200 --report out.json
 *   vp-sim run --transport ble --start-bus /tmp/vp-bus --devices 5 --frames 200   (prints the gateway's DBUS_SYSTEM_BUS_ADDRESS)
 *   vp-sim bus --dir /tmp/vp-bus                              (a private D-Bus bus only, until Ctrl-C)
 *   vp-sim export --devices 20 --seed 42 --out fleet.json     (then: vitalproof enrol fleet.json)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { notificationBytes } from '../firmware-proto/fragment.js';
import { startPrivateBus, type PrivateBus } from './bluez/bus-daemon.js';
import { ALL_FAULT_KINDS, checkFaultsForTransport, parseFaultRates } from './faults.js';
import { assignSensors, fleetDevices, writeEnrolmentFile } from './fleet.js';
import { progressLine, summary } from './format.js';
import { checkBrokerUrl, readTlsFiles } from './mqtt-link.js';
import { runFleet, type BleFleetOptions, type FleetProgress, type FleetTlsOptions } from './run.js';

const USAGE = `usage: vp-sim <run|bus|export> [options]
  run     run the fleet against an MQTT broker (the gateway), or as BLE peripherals of a simulated BlueZ
  bus     run a private D-Bus bus only, until Ctrl-C, and print its address
  export  write the fleet's enrolment file, for "vitalproof enrol FILE"
common:
  --devices N         fleet size (default 20)
  --seed S            fleet seed (default 42): the same seed gives the same keys, patients and faults
  --sensors SPEC      mix (default) | all | heart_rate,spo2 | heart_rate,spo2;ecg  (";" sets are dealt in turn)
run:
  --transport T       mqtt (default) | ble
  --broker URL        MQTT: default mqtt://127.0.0.1:1883; mqtts://HOST:8883 for MQTT over TLS
  --ca FILE           mqtts: the CA certificate (PEM) the gateway's certificate must chain to
  --cert FILE --key FILE
                      mqtts with mutual TLS: one client certificate and key for every device
  --client-certs DIR  mqtts with mutual TLS: each device's own, DIR/client-<device id>.crt and .key
                      (the gateway checks CN = device id; gateway/tls/dev-ca.ts makes this layout)
  --duration D        stop after D (500ms, 90s, 5m, 1h); with neither this nor --frames, run until Ctrl-C
  --frames N          N frames per device, as fast as the gateway acknowledges, timestamped in the past
  --speed X           simulated time runs X times as fast (X > 1 needs --duration)
  --faults SPEC       kind=probability per frame, comma-separated; kinds: ${ALL_FAULT_KINDS.join(' ')}
                      (vanish, out_of_range, bad_fragment, stall need --transport ble; unknown_device needs mqtt)
  --state DIR         per-device sequence numbers, sensor clocks and unacknowledged frames (default .vp-sim-state)
  --report FILE       write the run report as JSON
  --max-inflight N    unacknowledged publishes per device (default 32)
  --drain-timeout D   at the end, wait this long for acknowledgements (default 30s)
run --transport ble (the gateway's node-ble talks to the simulated BlueZ on a D-Bus bus):
  --dbus-address A    the bus to serve org.bluez on (default $DBUS_SYSTEM_BUS_ADDRESS)
  --start-bus DIR     start a private dbus-daemon with its socket in DIR, print the gateway's
                      "export DBUS_SYSTEM_BUS_ADDRESS=…", and stop it at the end
  --mtu N             ATT_MTU of every connection (default 247)
  --notify-delay D    pause after each notification, a slow link (default 0)
  --appear-over D     wearables come into range one by one over D (default 0: all at once)
  --rogues N          non-enrolled wearables advertising alongside the fleet (default 0)
bus:
  --dir DIR           the bus socket's directory (created if missing)
export:
  --out FILE          default fleet.json`;

class UsageError extends Error {}

/** Runs an option parser; its TypeError or RangeError becomes a usage error (no stack trace). */
function option<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
}

/** "90s" → 90000; a bare number is seconds. */
function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new UsageError(`"${s}" is not a duration (e.g. 500ms, 90s, 5m, 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}

function positiveInt(name: string, s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, got "${s}"`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      broker: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      'client-certs': { type: 'string' },
      transport: { type: 'string', default: 'mqtt' },
      'dbus-address': { type: 'string' },
      'start-bus': { type: 'string' },
      mtu: { type: 'string' },
      'notify-delay': { type: 'string' },
      'appear-over': { type: 'string' },
      rogues: { type: 'string' },
      dir: { type: 'string' },
      devices: { type: 'string', default: '20' },
      seed: { type: 'string', default: '42' },
      sensors: { type: 'string', default: 'mix' },
      duration: { type: 'string' },
      frames: { type: 'string' },
      speed: { type: 'string', default: '1' },
      faults: { type: 'string', default: '' },
      state: { type: 'string', default: '.vp-sim-state' },
      report: { type: 'string' },
      'max-inflight': { type: 'string' },
      'drain-timeout': { type: 'string', default: '30s' },
      out: { type: 'string', default: 'fleet.json' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const cmd = positionals[0];
  if (v.help || !cmd) {
    console.log(USAGE);
    return cmd || v.help ? 0 : 2;
  }
  if (cmd === 'bus') return runBus(v.dir);
  const devices = positiveInt('devices', v.devices);
  option(() => assignSensors(v.sensors, devices, v.seed));
  if (cmd === 'export') {
    const doc = writeEnrolmentFile(v.out, fleetDevices(v.seed, devices, v.sensors));
    console.log(`wrote ${doc.devices.length} devices to ${v.out}; enrol them with: vitalproof enrol ${v.out}`);
    return 0;
  }
  if (cmd !== 'run') throw new UsageError(`unknown command "${cmd}"`);

  const transport = v.transport;
  if (transport !== 'mqtt' && transport !== 'ble') throw new UsageError(`--transport must be mqtt or ble, got "${transport}"`);
  if (transport === 'mqtt') option(() => checkBrokerUrl(v.broker));
  const tls = tlsRunOptions(v);
  if (tls && (transport !== 'mqtt' || !v.broker.startsWith('mqtts:')))
    throw new UsageError('--ca, --cert, --key and --client-certs need --broker mqtts://HOST:PORT');
  const faults = option(() => parseFaultRates(v.faults));
  option(() => checkFaultsForTransport(faults, transport));
  const ble = transport === 'ble' ? bleRunOptions(v) : undefined;
  const speed = Number(v.speed);
  if (!(speed > 0)) throw new UsageError(`--speed must be a number > 0, got "${v.speed}"`);
  const durationMs = v.duration !== undefined ? parseDuration(v.duration) : undefined;
  if (speed > 1 && durationMs === undefined && v.frames === undefined) throw new UsageError('--speed above 1 needs --duration');
  const stop = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write('\nstopping: waiting for outstanding acknowledgements (Ctrl-C again to quit at once)\n');
    stop.abort();
  });
  const tty = process.stderr.isTTY === true;
  let lastPlain = 0;
  const onProgress = (p: FleetProgress): void => {
    if (tty) process.stderr.write(`\r\x1b[2K${progressLine(p)}${p.phase === 'done' ? '\n' : ''}`);
    else if (p.phase === 'done' || p.elapsedMs - lastPlain >= 5000) {
      lastPlain = p.elapsedMs;
      process.stderr.write(`${progressLine(p)}\n`);
    }
  };
  let bus: PrivateBus | undefined;
  if (ble && v['start-bus'] !== undefined) {
    mkdirSync(v['start-bus'], { recursive: true });
    bus = await startPrivateBus({ dir: v['start-bus'] });
    ble.busAddress = bus.address;
    console.log(`export DBUS_SYSTEM_BUS_ADDRESS=${shellQuote(bus.address)}`);
  }
  if (ble && !ble.busAddress) throw new UsageError('--transport ble needs --dbus-address, $DBUS_SYSTEM_BUS_ADDRESS, or --start-bus DIR');
  const report = await runFleet({
    transport,
    ...(ble ? { ble } : { brokerUrl: v.broker, ...(tls ? { tls } : {}) }),
    devices,
    seed: v.seed,
    sensors: v.sensors,
    ...(v.frames !== undefined ? { frames: positiveInt('frames', v.frames) } : {}),
    ...(durationMs !== undefined ? { durationMs } : {}),
    speed,
    faults,
    stateDir: v.state,
    signal: stop.signal,
    drainTimeoutMs: parseDuration(v['drain-timeout']),
    ...(v['max-inflight'] !== undefined ? { maxInFlight: positiveInt('max-inflight', v['max-inflight']) } : {}),
    onProgress,
    progressIntervalMs: tty ? 250 : 1000,
  }).finally(() => bus?.stop());
  console.log(summary(report));
  if (v.report) {
    writeFileSync(v.report, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`report written to ${v.report}`);
  }
  return report.drained && report.faults.unexpected === 0 ? 0 : 1;
}

/** The TLS material of `run` (--ca, --cert/--key, --client-certs), read; undefined without any. */
function tlsRunOptions(v: { ca?: string; cert?: string; key?: string; 'client-certs'?: string }): FleetTlsOptions | undefined {
  if (!v.ca && !v.cert && !v.key && !v['client-certs']) return undefined;
  if (v['client-certs'] && v.cert) throw new UsageError('--cert/--key and --client-certs are alternatives: one certificate for all devices, or one each');
  const material = option(() => readTlsFiles({ ca: v.ca, cert: v.cert, key: v.key }));
  return { ...material, ...(v['client-certs'] ? { clientCertsDir: v['client-certs'] } : {}) };
}

/** The BLE options of `run`, checked; the bus address may still be empty (--start-bus makes one). */
function bleRunOptions(v: { 'dbus-address'?: string; mtu?: string; 'notify-delay'?: string; 'appear-over'?: string; rogues?: string }): BleFleetOptions {
  const o: BleFleetOptions = { busAddress: v['dbus-address'] ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? '' };
  if (v.mtu !== undefined) {
    const mtu = Number(v.mtu);
    option(() => notificationBytes(mtu)); // RangeError for an MTU no LE link has
    o.mtu = mtu;
  }
  if (v['notify-delay'] !== undefined) o.notifyDelayMs = parseDuration(v['notify-delay']);
  if (v['appear-over'] !== undefined) o.appearOverMs = parseDuration(v['appear-over']);
  if (v.rogues !== undefined) o.rogues = v.rogues === '0' ? 0 : positiveInt('rogues', v.rogues);
  return o;
}

/** `vp-sim bus`: a private bus until SIGINT or SIGTERM. */
async function runBus(dir: string | undefined): Promise<number> {
  if (!dir) throw new UsageError('bus needs --dir DIR');
  mkdirSync(dir, { recursive: true });
  const bus = await startPrivateBus({ dir });
  console.log(`export DBUS_SYSTEM_BUS_ADDRESS=${shellQuote(bus.address)}`);
  process.stderr.write('private D-Bus bus running; Ctrl-C to stop\n');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await bus.stop();
  return 0;
}

/** Single quotes for a POSIX shell: the address has commas and `=`, and a directory may have spaces. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    // Option errors are the user's to fix: no stack trace.
    const userError = e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
    console.error(userError ? `vp-sim: ${e.message}\n${USAGE}` : (e.stack ?? String(e)));
    process.exitCode = userError ? 2 : 1;
  },
);
