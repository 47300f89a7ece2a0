/**
 * `npm run demo`: the whole system on one box with nothing configured.
 *
 *   npm run demo                              run until Ctrl-C
 *   npm run demo -- --duration 60s            stop by itself after 60 s
 *   npm run demo -- --devices 5 --faults tamper=0.05,skew=0.02
 *   npm run demo -- --ble-devices 0           MQTT wearables only
 *   npm run demo -- --gateways 3 --duration 20s   a hospital on one box: 3 gateway processes, hubs,
 *                                             Mosquitto, a wearable that moves (scripts/lib/demo-hospital.ts)
 *
 * The gateway runs in this process on its embedded defaults (aedes broker, embedded
 * influxd, spool), with its data in ./data/demo (kept across runs). A fleet of simulated
 * wearables (seed "demo") is enrolled and runs against it at real-time pace with a few
 * faults injected; beside them, BLE wearables (seed "demo-ble") served by the simulator's
 * BlueZ-compatible D-Bus service on a private dbus-daemon, which the gateway's BLE central
 * reaches through DBUS_SYSTEM_BUS_ADDRESS exactly as it would reach BlueZ. The terminal shows
 * the gateway's status and the simulator's progress.
 * A researcher shares in the data of one MQTT wearable's patient (scripts/lib/demo-researcher.ts):
 * the patient (DEV ONLY account 3) grants a researcher (account 4) heart_rate and spo2, the
 * researcher receives them live over MQTT, and at the end exports them with proofs, verifies,
 * sees the subscription end when the patient revokes, and the patient reads the disclosure report.
 * At the end it compares what the gateway refused with what the simulator expects it to
 * refuse. Gateway logs go to ./data/demo/gateway.log.
 *
 * Nothing in clear (issue #10): the demo makes a DEV ONLY CA in ./data/demo/tls
 * (gateway/tls/dev-ca.ts), and the MQTT wearables and the researcher speak MQTT over TLS
 * (8883) and HTTPS (8080) with it, as they would on a ward network. The plain MQTT listener
 * stays on loopback (1883) for local tools; BLE wearables stay on the simulated BlueZ.
 */
import { X509Certificate } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../gateway/config.js';
import { startGateway, type Gateway } from '../gateway/gateway.js';
import { createLogger } from '../gateway/log.js';
import { formatStatus } from '../gateway/status/format.js';
import type { StatusSnapshot } from '../gateway/status/http.js';
import { findFreePorts, isAddrInUse } from '../gateway/util/net.js';
import { FAULT_KINDS, parseFaultRates } from '../device-sim/faults.js';
import { enrolmentFile, fleetDevices } from '../device-sim/fleet.js';
import { progressLine } from '../device-sim/format.js';
import { runFleet, type FleetProgress, type FleetReport } from '../device-sim/run.js';
import { parseDuration, positiveInt } from './lib/duration.js';
import { verifyBundle } from '../gateway/proof/verify.js';
import { startPrivateBus, type PrivateBus } from '../device-sim/bluez/bus-daemon.js';
import { RADIO_FAULT_KINDS } from '../device-sim/faults.js';
import { ApiError } from '../gateway/research-client/index.js';
import { ResearcherDemo } from './lib/demo-researcher.js';
import { ensureDevCa, type DevCa } from '../gateway/tls/dev-ca.js';
import { readTlsFiles } from '../device-sim/mqtt-link.js';
import { DEFAULT_DEVICES_PER_GATEWAY, DEFAULT_HOSPITAL_DURATION_MS, hospitalDemo, MAX_GATEWAYS, type HospitalDemoOptions } from './lib/demo-hospital.js';

const DATA_DIR = resolve('data', 'demo');
const SEED = 'demo';
const BLE_SEED = 'demo-ble';
const SENSORS = 'mix';
const DEFAULT_MQTT_PORT = 1883;
const DEFAULT_MQTT_TLS_PORT = 8883;
const DEFAULT_HTTP_PORT = 8080;
/** The DEV ONLY CA is made again when it or the server certificate expires within this long (dev-ca.ts issues them for 30 days). */
const CA_RENEW_BEFORE_MS = 24 * 3_600_000;
/** About 1 % per frame for each frame fault, 0.5 % for the connection faults. */
const DEFAULT_FAULTS = 'tamper=0.01,bad_signature=0.01,malformed=0.01,replay=0.01,skew=0.01,wrong_topic=0.01,unknown_device=0.005,disconnect=0.005';
/** The BLE wearables' faults: frame faults as over MQTT, plus broken fragment streams and radio trouble. */
const DEFAULT_BLE_FAULTS = 'tamper=0.01,bad_signature=0.01,replay=0.01,bad_fragment=0.005,out_of_range=0.003,vanish=0.002,disconnect=0.005';
/** How long the end waits for the simulator's outstanding acknowledgements, then for InfluxDB to catch up, then for the last anchor. */
const FLEET_DRAIN_MS = 20_000;
const STORAGE_DRAIN_MS = 15_000;
const ANCHOR_DRAIN_MS = 15_000;

const USAGE = `usage: npm run demo -- [--duration D] [--devices N] [--faults SPEC] [--ble-devices N] [--ble-faults SPEC]
       npm run demo -- --gateways N [--duration D] [--devices N]
  --duration D       stop after D (e.g. 20s, 5m, 1h); default: run until Ctrl-C
  --devices N        simulated MQTT wearables (default 20, seed "${SEED}", sensors "${SENSORS}")
  --faults SPEC      kind=probability per frame, comma-separated, or "none"
                     default: ${DEFAULT_FAULTS}
                     kinds: ${FAULT_KINDS.join(' ')}
  --ble-devices N    simulated BLE wearables (default 6, seed "${BLE_SEED}"); 0: no BLE
  --ble-faults SPEC  their faults, or "none"; default: ${DEFAULT_BLE_FAULTS}
                     kinds: ${FAULT_KINDS.filter((k) => k !== 'unknown_device').join(' ')} ${RADIO_FAULT_KINDS.join(' ')}
  --gateways N       a hospital on one box instead (2-${MAX_GATEWAYS}): N gateway processes, hubs, Mosquitto 2, influxd and anvil,
                     the fleet (--devices, default ${DEFAULT_DEVICES_PER_GATEWAY} per gateway, no faults) split across them and one
                     wearable that moves from gateway to gateway; runs --duration (default ${DEFAULT_HOSPITAL_DURATION_MS / 1000}s), checks
                     everything, exit code 1 on any FAIL; data in ./data/demo-hospital, made afresh each run
Everything listens on 127.0.0.1: MQTT over TLS on ${DEFAULT_MQTT_TLS_PORT} (the MQTT wearables and the researcher), plain MQTT on
${DEFAULT_MQTT_PORT} (loopback only, for local tools), HTTPS status and API on ${DEFAULT_HTTP_PORT}, or free ports when those
are taken. TLS certificates come from a DEV ONLY CA made in ${rel(join(DATA_DIR, 'tls'))} (ca.crt: curl --cacert, --ca).
Data (gateway, embedded InfluxDB, simulator state) stays in ${rel(DATA_DIR)} across runs;
delete that directory to start over. Gateway logs: ${rel(join(DATA_DIR, 'gateway.log'))}.`;

class UsageError extends Error {}

function rel(p: string): string {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') ? p : `./${r}`;
}

interface Options {
  durationMs: number | undefined;
  devices: number;
  faults: string;
  bleDevices: number;
  bleFaults: string;
  /** --gateways: the hospital demo instead. */
  hospital?: HospitalDemoOptions;
}

function options(argv: string[]): Options | undefined {
  let v;
  try {
    ({ values: v } = parseArgs({
      args: argv,
      options: {
        duration: { type: 'string' },
        devices: { type: 'string', default: '20' },
        faults: { type: 'string', default: DEFAULT_FAULTS },
        'ble-devices': { type: 'string', default: '6' },
        'ble-faults': { type: 'string', default: DEFAULT_BLE_FAULTS },
        gateways: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (v.help) return undefined;
  try {
    const faults = v.faults.trim() === 'none' ? '' : v.faults;
    parseFaultRates(faults);
    const bleFaults = v['ble-faults'].trim() === 'none' ? '' : v['ble-faults'];
    parseFaultRates(bleFaults);
    const bleDevices = v['ble-devices'] === '0' ? 0 : positiveInt('ble-devices', v['ble-devices']);
    if (v.gateways !== undefined)
      return { durationMs: undefined, devices: 0, faults, bleDevices, bleFaults, hospital: hospitalOptions(argv, v.gateways, v.devices, v.duration) };
    return {
      durationMs: v.duration !== undefined ? parseDuration(v.duration) : undefined,
      devices: positiveInt('devices', v.devices),
      faults,
      bleDevices,
      bleFaults,
    };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** --gateways N: the hospital demo's options; the single-box demo's fault and BLE options do not apply to it. */
function hospitalOptions(argv: string[], gateways: string, devices: string, duration: string | undefined): HospitalDemoOptions {
  const n = positiveInt('gateways', gateways);
  if (n < 2 || n > MAX_GATEWAYS) throw new RangeError(`--gateways must be 2 to ${MAX_GATEWAYS} (dev accounts for the gateways and hubs), got ${n}`);
  const other = argv.find((a) => /^--(faults|ble-devices|ble-faults)(=|$)/.test(a));
  if (other) throw new RangeError(`${other.split('=')[0]} does not apply with --gateways (the hospital demo runs MQTT wearables without faults)`);
  const fleet = argv.some((a) => /^--devices(=|$)/.test(a)) ? positiveInt('devices', devices) : DEFAULT_DEVICES_PER_GATEWAY * n;
  if (fleet < n) throw new RangeError(`--devices must be at least --gateways (one wearable at each gateway), got ${fleet}`);
  return {
    gateways: n,
    devices: fleet,
    durationMs: duration !== undefined ? parseDuration(duration) : DEFAULT_HOSPITAL_DURATION_MS,
  };
}

/** True when nothing listens on host:port (checked by listening on it for a moment). */
function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => res(true)));
  });
}

/**
 * The demo's DEV ONLY CA and server certificate in dataDir/tls, made again when one of them
 * expires within a day (the data dir is kept across runs; dev-ca.ts reuses what it finds).
 */
function demoCa(dir: string): DevCa {
  const expiring = (p: string): boolean => existsSync(p) && Date.parse(new X509Certificate(readFileSync(p)).validTo) - Date.now() < CA_RENEW_BEFORE_MS;
  if (expiring(join(dir, 'ca.crt')) || expiring(join(dir, 'server.crt'))) rmSync(dir, { recursive: true, force: true });
  return ensureDevCa(dir);
}

/** The default ports when they are free, else free ones; retried when a port is taken between the check and the listen. */
async function startOnPorts(log: ReturnType<typeof createLogger>, ble: boolean, ca: DevCa): Promise<{ gw: Gateway; mqttTlsPort: number; fallback: string[] }> {
  const ports = { mqtt: DEFAULT_MQTT_PORT, mqttTls: DEFAULT_MQTT_TLS_PORT, http: DEFAULT_HTTP_PORT };
  const names = { mqtt: 'MQTT', mqttTls: 'MQTT over TLS', http: 'HTTPS' };
  const chosen: Record<keyof typeof ports, number> = { mqtt: 0, mqttTls: 0, http: 0 };
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) chosen[k] = (await portFree(ports[k])) ? ports[k] : 0;
  for (let attempt = 1; ; attempt++) {
    const fallback: string[] = [];
    const busy = (Object.keys(chosen) as (keyof typeof ports)[]).filter((k) => chosen[k] === 0);
    if (busy.length) {
      const free = await findFreePorts(busy.length);
      busy.forEach((k, i) => {
        chosen[k] = free[i]!;
        if (attempt === 1) fallback.push(`${names[k]} port ${ports[k]} is busy: using ${chosen[k]}`);
        else fallback.push(`${names[k]}: using port ${chosen[k]}`);
      });
    }
    // Built-in defaults only (no VP_* environment, no config file): the demo is the same everywhere.
    const config = loadConfig({
      env: {},
      flags: {
        dataDir: DATA_DIR,
        'mqtt.port': String(chosen.mqtt),
        // TLS on loopback too: the wearables and the researcher use it as they would on a ward network.
        'mqtt.tls.cert': ca.serverCert,
        'mqtt.tls.key': ca.serverKey,
        'mqtt.tls.port': String(chosen.mqttTls),
        'http.port': String(chosen.http),
        'http.tls.cert': ca.serverCert,
        'http.tls.key': ca.serverKey,
        'influx.url': '',
        'log.file': join(DATA_DIR, 'gateway.log'),
        ...(ble ? { 'ble.mode': 'on', 'ble.scanIntervalMs': '500', 'ble.refuseHoldMs': '10000' } : {}),
      },
    });
    try {
      return { gw: await startGateway(config, log), mqttTlsPort: chosen.mqttTls, fallback };
    } catch (e) {
      if (!isAddrInUse(e) || attempt >= 3) throw e;
      chosen.mqtt = chosen.mqttTls = chosen.http = 0; // someone took a port since the check: pick fresh ones
    }
  }
}

/** Redraws a block of lines in place (TTY), counting wrapped rows so the cursor goes back to its top. */
class LiveView {
  private rows = 0;
  draw(text: string): void {
    const cols = process.stdout.columns || 80;
    const lines = text.split('\n');
    const up = this.rows > 0 ? `\x1b[${this.rows}A` : '';
    process.stdout.write(`${up}\r\x1b[0J${text}\n`);
    this.rows = lines.reduce((n, l) => n + Math.max(1, Math.ceil(l.length / cols)), 0);
  }
}

function compactLine(s: StatusSnapshot, p: FleetProgress | undefined, ble: FleetProgress | undefined, elapsedS: number, researcher?: string): string {
  const list = (o: Record<string, number>): string =>
    Object.entries(o)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ') || 'none';
  return (
    `[${String(elapsedS).padStart(5)}s] gateway: received ${s.frames.received} accepted ${s.frames.accepted} (${s.frames.acceptedPerS.toFixed(1)}/s) ` +
    `rejected ${s.frames.rejected} (${list(s.frames.rejectedBy)}) connect refused ${list(s.mqtt.connectRefusedBy)} devices ${s.mqtt.devicesConnected} ` +
    `spool ${s.spool.backlogFrames} influxdb ${s.storage.up ? 'up' : 'DOWN'} written ${s.storage.framesWritten} ` +
    `batches sealed ${s.batches.lastSealed} anchored ${s.batches.lastAnchored}${s.chain.lastAnchor ? ` (last tx ${s.chain.lastAnchor.txHash.slice(0, 12)}… block ${s.chain.lastAnchor.block})` : ''}` +
    (s.ble.mode === 'on' ? ` | ble: ${s.ble.up ? 'up' : 'DOWN'} connected ${s.ble.devicesConnected} fragments refused ${list(s.ble.fragmentRejectedBy)}` : '') +
    (p ? ` | sim mqtt: ${p.phase} acked ${p.acked} faults ${p.faultsInjected} backlog ${p.backlog}` : '') +
    (ble ? ` | sim ble: ${ble.phase} acked ${ble.acked} faults ${ble.faultsInjected} backlog ${ble.backlog}` : '') +
    (researcher ? ` | ${researcher}` : '')
  );
}

function influxHints(url: string, database: string): string[] {
  const port = new URL(url).port;
  const q = (sql: string): string => `influx -host 127.0.0.1 -port ${port} -database ${database} -precision rfc3339 -execute '${sql}'`;
  return [q('SELECT device, value FROM heart_rate ORDER BY time DESC LIMIT 10'), q('SELECT count(seq) FROM frames GROUP BY sensor')];
}

async function main(argv: string[]): Promise<number> {
  const o = options(argv);
  if (!o) {
    console.log(USAGE);
    return 0;
  }
  if (o.hospital) return hospitalDemo(o.hospital);
  // Every wearable waits on runFleet's internal abort signal (device-sim/clock.ts): raise the
  // default listener limit for signals created from here on, so that Node's leak warning
  // (more than 10 listeners) does not scribble over the live view.
  setMaxListeners(Math.max(10, 2 * (o.devices + o.bleDevices) + 10));
  mkdirSync(DATA_DIR, { recursive: true });
  const stateDir = join(DATA_DIR, 'sim-state');
  const logFile = join(DATA_DIR, 'gateway.log');
  const log = createLogger('info', logFile);
  const tty = process.stdout.isTTY === true;

  // BLE: a private bus for the simulator's BlueZ; the gateway's central finds it through the
  // standard variable, exactly as it would find the system bus and bluetoothd.
  let bus: PrivateBus | undefined;
  if (o.bleDevices > 0) {
    const busDir = join(DATA_DIR, 'bus');
    mkdirSync(busDir, { recursive: true });
    bus = await startPrivateBus({ dir: busDir });
    process.env.DBUS_SYSTEM_BUS_ADDRESS = bus.address;
  }
  console.log(`VitalProof demo: starting the gateway (embedded MQTT broker, BLE central, spool, embedded influxd, embedded chain) in ${rel(DATA_DIR)} ...`);
  let ca: DevCa;
  try {
    ca = demoCa(join(DATA_DIR, 'tls'));
  } catch (e) {
    await bus?.stop();
    throw e;
  }
  const { gw, mqttTlsPort, fallback } = await startOnPorts(log, bus !== undefined, ca).catch(async (e: Error) => {
    await bus?.stop();
    throw e;
  });
  const httpsUrl = `https://127.0.0.1:${gw.httpPort}`;
  const mqttsUrl = `mqtts://127.0.0.1:${mqttTlsPort}`;
  const caFile = rel(ca.caCert);
  const stopGateway = (() => {
    let p: Promise<void> | undefined;
    return () =>
      (p ??= gw.stop().finally(async () => {
        log.flush();
        await bus?.stop();
      }));
  })();

  let fleetReport: FleetReport | undefined;
  let bleReport: FleetReport | undefined;
  try {
    const devices = fleetDevices(SEED, o.devices, SENSORS);
    const bleDevices = o.bleDevices > 0 ? fleetDevices(BLE_SEED, o.bleDevices, SENSORS) : [];
    const enrol = await gw.registry.enrol(enrolmentFile([...devices, ...bleDevices]).devices);
    if (enrol.refused.length) throw new Error(`enrolment refused: ${enrol.refused.map((r) => `${r.deviceId} ${r.reason}`).join(', ')}`);

    for (const f of fallback) console.log(`note: ${f}`);
    console.log(`  TLS           the MQTT wearables and the researcher speak MQTT over TLS and HTTPS, with certificates from a`);
    console.log(`                DEV ONLY CA made for this demo (never for patient data): ${caFile}  (curl --cacert, vitalproof --ca)`);
    console.log(`  MQTT broker   ${mqttsUrl}   (MQTT over TLS: the MQTT wearables and the researcher)`);
    console.log(`                mqtt://127.0.0.1:${gw.mqttPort}    (plain, loopback only: local tools)`);
    console.log(`  status        ${httpsUrl}/status   (also /metrics, /healthz; the API is HTTPS only)`);
    console.log(`                curl --cacert ${caFile} ${httpsUrl}/status`);
    console.log(`                npx vitalproof status --url ${httpsUrl} --ca ${caFile}`);
    console.log(`  InfluxDB      ${gw.influxUrl}  database ${gw.config.influx.database}  (embedded: it stops when the demo stops)`);
    if (gw.chain) {
      console.log(`  chain         ${gw.chain.url}  chain id ${gw.chain.chainId} (embedded anvil, DEV ONLY keys; state in ${rel(join(DATA_DIR, 'chain'))})`);
      console.log(
        `                DeviceRegistry ${gw.chain.record.deviceRegistry.address}  AnchorRegistry ${gw.chain.record.anchorRegistry.address}  gateway ${gw.chain.address}`,
      );
      console.log(`                a Merkle batch of accepted frames is sealed and anchored every ${gw.config.batch.intervalMs / 1000} s`);
    }
    console.log(`  gateway log   ${rel(logFile)}`);
    console.log(
      `  devices       ${devices.length} MQTT wearables (seed "${SEED}")${bleDevices.length ? ` and ${bleDevices.length} BLE wearables (seed "${BLE_SEED}")` : ''}: ${enrol.enrolled.length} newly enrolled, ${enrol.unchanged.length} already enrolled; state in ${rel(stateDir)}`,
    );
    if (bus) console.log(`  BLE           simulated BlueZ on a private D-Bus: DBUS_SYSTEM_BUS_ADDRESS=${bus.address}`);
    console.log(`  faults        MQTT: ${o.faults || 'none'}${bus ? `\n                BLE:  ${o.bleFaults || 'none'}` : ''}`);
    console.log('  look at the stored data from another terminal while the demo runs:');
    for (const h of influxHints(gw.influxUrl, gw.config.influx.database)) console.log(`    ${h}`);
    if (gw.chain) {
      console.log('  and export proofs, verify them against the chain, and audit InfluxDB:');
      for (const h of proofHints(devices[0]!.deviceId, gw.chain.url, caFile)) console.log(`    ${h}`);
    }
    // The researcher: bound patient, grant, live subscription (only with a ConsentRegistry and the research API).
    let researcher: ResearcherDemo | undefined;
    let researcherFailure: string | undefined;
    if (gw.chain?.record.consentRegistry) {
      const r = new ResearcherDemo({
        dataDir: DATA_DIR,
        httpUrl: httpsUrl,
        mqttUrl: mqttsUrl,
        caFile: ca.caCert,
        gatewayId: gw.config.gatewayId,
        pseudonym: devices[0]!.patient,
        durationMs: o.durationMs,
        provider: gw.chain.provider,
        show: rel,
      });
      try {
        await r.start();
        researcher = r;
        console.log(`  researcher    consent-governed sharing (DEV ONLY accounts; keys and exports in ${rel(r.dir)}):`);
        for (const n of r.notes) console.log(`                ${n}`);
        console.log('                the same by hand, from another terminal while the demo runs:');
        for (const h of r.hints()) console.log(`                  ${h}`);
      } catch (e) {
        await r.close();
        if (e instanceof ApiError && e.status === 404) console.log('  researcher    this gateway has no research API: no researcher in this demo');
        else {
          researcherFailure = (e as Error).message;
          console.log(`  researcher    FAILED to start: ${researcherFailure}`);
        }
      }
    }
    console.log(o.durationMs !== undefined ? `running for ${Math.round(o.durationMs / 1000)} s (Ctrl-C stops earlier)\n` : 'running until Ctrl-C\n');

    const started = Date.now();
    const stop = new AbortController();
    let stopReason = '';
    const requestStop = (why: string): void => {
      if (stop.signal.aborted) return;
      stopReason = why;
      stop.abort();
    };
    let interrupts = 0;
    const onSignal = (sig: string): void => {
      if (++interrupts > 1) {
        process.stdout.write('\nsecond interrupt: quitting without waiting (influxd is killed with this process)\n');
        process.exit(130);
      }
      requestStop(sig);
    };
    process.on('SIGINT', () => onSignal('Ctrl-C'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    const timer = o.durationMs !== undefined ? setTimeout(() => requestStop(`--duration ${Math.round(o.durationMs! / 1000)}s`), o.durationMs) : undefined;
    void gw.fatal.then((e) => {
      console.error(`\ngateway fault: ${e.message} (see ${rel(logFile)})`);
      requestStop('gateway fault');
    });

    let progress: FleetProgress | undefined;
    let bleProgress: FleetProgress | undefined;
    const view = new LiveView();
    let lastPlain = 0;
    const render = (final = false): void => {
      const s = gw.snapshot();
      const elapsedS = Math.round((Date.now() - started) / 1000);
      if (tty) {
        const head = stop.signal.aborted
          ? `stopping (${stopReason}): waiting for acknowledgements and InfluxDB writes ... (Ctrl-C again to quit at once)`
          : `running ${elapsedS}s${o.durationMs !== undefined ? ` of ${Math.round(o.durationMs / 1000)}s` : ''}  (Ctrl-C to stop)`;
        const sims = [
          `sim mqtt ${progress ? progressLine(progress).trim() : 'starting'}`,
          ...(bus ? [`sim ble  ${bleProgress ? progressLine(bleProgress).trim() : 'starting'}`] : []),
          ...(researcher ? [researcher.line()] : []),
        ];
        view.draw([head, formatStatus(s), ...sims].join('\n'));
      } else if (final || Date.now() - lastPlain >= 5000) {
        lastPlain = Date.now();
        console.log(compactLine(s, progress, bleProgress, elapsedS, researcher?.line()));
      }
    };
    render();
    const ticker = setInterval(() => render(), 1000);

    try {
      [fleetReport, bleReport] = await Promise.all([
        runFleet({
          brokerUrl: mqttsUrl,
          tls: readTlsFiles({ ca: ca.caCert }),
          devices: o.devices,
          seed: SEED,
          sensors: SENSORS,
          faults: o.faults,
          stateDir,
          signal: stop.signal,
          drainTimeoutMs: FLEET_DRAIN_MS,
          backoff: { initialMs: 200, maxMs: 2000 },
          onProgress: (p) => (progress = p),
          progressIntervalMs: 500,
        }),
        bus
          ? runFleet({
              transport: 'ble',
              ble: { busAddress: bus.address, temporaryTimeoutMs: 5000, appearOverMs: 3000 },
              devices: o.bleDevices,
              seed: BLE_SEED,
              sensors: SENSORS,
              faults: o.bleFaults,
              stateDir,
              signal: stop.signal,
              drainTimeoutMs: FLEET_DRAIN_MS,
              onProgress: (p) => (bleProgress = p),
              progressIntervalMs: 500,
            })
          : Promise.resolve(undefined),
      ]);
    } finally {
      clearTimeout(timer);
    }
    // Let the drainer catch up, so that the summary's counts are in InfluxDB too.
    const deadline = Date.now() + STORAGE_DRAIN_MS;
    for (;;) {
      const s = gw.snapshot();
      if ((s.spool.backlogFrames === 0 && s.storage.framesWritten >= s.frames.accepted) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // Seal the last batch and anchor it, then check one stored frame end to end, as a verifier would.
    const anchored = await gw.anchorNow(ANCHOR_DRAIN_MS);
    clearInterval(ticker);
    render(true);
    const final = gw.snapshot();
    const proofLines = await checkOneProof(gw, fleetReport.perDevice.find((d) => d.acked > 0)?.deviceId, anchored, caFile);
    const bleProofLines = bleReport ? await checkOneProof(gw, bleReport.perDevice.find((d) => d.acked > 0)?.deviceId, anchored, caFile, 'BLE ') : [];
    // The researcher's end: export with proofs and verify, revocation, disclosure report.
    const researched = researcher ? await researcher.finish() : undefined;
    await stopGateway();
    console.log(
      `\n${summary(final, [fleetReport, ...(bleReport ? [bleReport] : [])], gw.influxUrl, gw.config.influx.database, stopReason, Date.now() - started)}`,
    );
    console.log(`  TLS        MQTT wearables over ${mqttsUrl}, researcher over ${httpsUrl} and ${mqttsUrl}; DEV ONLY CA ${caFile}`);
    for (const l of [...proofLines, ...bleProofLines.slice(1, 2)]) console.log(l);
    for (const l of researched?.lines ?? []) console.log(l);
    if (researched)
      console.log(
        researched.ok
          ? '             every researcher step held: live deliveries, export verified, subscription cut on revocation, accesses in the report'
          : '  WARNING: a researcher step failed (see above)',
      );
    if (researcherFailure) console.log(`  WARNING: the researcher did not start: ${researcherFailure}`);
    const reports = [fleetReport, ...(bleReport ? [bleReport] : [])];
    return reports.every((r) => r.drained && r.faults.unexpected === 0) && researcherFailure === undefined && (researched?.ok ?? true) ? 0 : 1;
  } finally {
    await stopGateway();
  }
}

/** Exports the bundle of one stored frame of `device` and verifies it against the chain, as `vitalproof verify` does. */
async function checkOneProof(gw: Gateway, device: string | undefined, anchored: boolean, caFile: string, label = ''): Promise<string[]> {
  const s = gw.snapshot();
  if (!gw.chain) return ['  proofs     chain.mode is off: nothing anchored'];
  const out = [
    `  anchors    ${s.batches.lastAnchored} batches anchored on chain ${gw.chain.chainId}${anchored ? '' : ` (${s.batches.pendingAnchors} still waiting: anchored on the next start)`}` +
      (s.chain.lastAnchor
        ? `; last: batch ${s.chain.lastAnchor.batch}, root ${s.chain.lastAnchor.root.slice(0, 18)}…, tx ${s.chain.lastAnchor.txHash.slice(0, 18)}…, block ${s.chain.lastAnchor.block}`
        : ''),
  ];
  if (!device) return out;
  const r = await gw.proofs.byRange(device, undefined, undefined, 1).catch(() => undefined);
  const bundle = r?.export.bundles[0];
  if (!bundle) return [...out, `  proof      no anchored frame of ${device} to check yet`];
  const v = await verifyBundle(bundle, { provider: gw.chain.provider });
  out.push(
    `  ${`${label}proof`.padEnd(10)} frame ${bundle.frame.deviceId}/${bundle.frame.seq} (batch ${bundle.anchor.batchSeq}, leaf ${bundle.inclusion.leafIndex} of ${bundle.inclusion.treeSize}): ` +
      v.checks.map((c) => `${c.check} ${c.status === 'pass' ? 'ok' : c.status.toUpperCase()}`).join(', '),
  );
  out.push('  do the same yourself while a demo runs (e.g. npm run demo -- --duration 10m), from another terminal:');
  for (const h of proofHints(device, gw.chain.url.replace(/:\d+$/, ':<PORT>'), caFile)) out.push(`    ${h}`);
  return out;
}

/** `caFile`: the export reads the gateway's HTTPS API, so it trusts the demo's CA (--ca). */
function proofHints(device: string, chainUrl: string, caFile: string): string[] {
  const dd = rel(DATA_DIR);
  return [
    `npx vitalproof export --dataDir ${dd} --device ${device} --ca ${caFile} --out bundles.json`,
    `npx vitalproof verify bundles.json --rpc ${chainUrl}`,
    `npx vitalproof audit --dataDir ${dd} --device ${device}`,
  ];
}

function summary(s: StatusSnapshot, reports: FleetReport[], influxUrl: string, database: string, why: string, elapsedMs: number): string {
  const out: string[] = [];
  out.push(`VitalProof demo stopped (${why || 'done'}) after ${(elapsedMs / 1000).toFixed(0)} s`);
  for (const r of reports) {
    const f = r.frames;
    out.push(
      `  simulator  ${r.devices} ${r.transport === 'ble' ? 'BLE' : 'MQTT'} devices: ${f.recorded} honest frames recorded, ${f.acked} acknowledged, ${f.retransmitted} resent after reconnects` +
        (f.restored ? `, ${f.restored} left over from the previous run` : '') +
        (f.unacked ? `, ${f.unacked} NOT acknowledged (kept in the state dir for the next run)` : ''),
    );
  }
  const sum = <K extends string>(pick: (r: FleetReport) => Partial<Record<K, number>>): Record<string, number> => {
    const o: Record<string, number> = {};
    for (const r of reports) for (const [k, n] of Object.entries(pick(r)) as [string, number][]) o[k] = (o[k] ?? 0) + n;
    return o;
  };
  const r = {
    faults: {
      injected: sum((x) => x.faults.injected),
      expectedRejections: sum((x) => x.faults.expectedRejections),
      expectedConnectRefusals: sum((x) => x.faults.expectedConnectRefusals),
      expectedFragmentRejections: sum((x) => x.faults.expectedFragmentRejections),
      expectedSeqGaps: reports.reduce((n, x) => n + x.faults.expectedSeqGaps, 0),
      lost: reports.reduce((n, x) => n + x.faults.lost, 0),
      pending: reports.reduce((n, x) => n + x.faults.pending, 0),
      pendingSeqGaps: reports.reduce((n, x) => n + x.faults.pendingSeqGaps, 0),
      unexpected: reports.reduce((n, x) => n + x.faults.unexpected, 0),
    },
    drained: reports.every((x) => x.drained),
  };
  out.push(
    `  gateway    received ${s.frames.received}, accepted ${s.frames.accepted}, duplicates ${s.frames.duplicates}, rejected ${s.frames.rejected}; ` +
      `written to InfluxDB ${s.storage.framesWritten} frames (${s.storage.pointsWritten} readings)` +
      (s.spool.backlogFrames ? `; ${s.spool.backlogFrames} still in the spool (written on the next start)` : ''),
  );
  const injected =
    Object.entries(r.faults.injected)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ') || 'none';
  out.push(`  faults injected: ${injected}`);

  const rows: [string, number, number][] = [];
  const reasons = new Set([...Object.keys(s.frames.rejectedBy), ...Object.keys(r.faults.expectedRejections)]);
  for (const k of [...reasons].sort())
    rows.push([`rejected ${k}`, s.frames.rejectedBy[k] ?? 0, (r.faults.expectedRejections as Record<string, number>)[k] ?? 0]);
  const refusals = new Set([...Object.keys(s.mqtt.connectRefusedBy), ...Object.keys(r.faults.expectedConnectRefusals)]);
  for (const k of [...refusals].sort())
    rows.push([`connect ${k}`, s.mqtt.connectRefusedBy[k] ?? 0, (r.faults.expectedConnectRefusals as Record<string, number>)[k] ?? 0]);
  if (s.ble.mode === 'on') {
    const frags = new Set([...Object.keys(s.ble.fragmentRejectedBy), ...Object.keys(r.faults.expectedFragmentRejections)]);
    for (const k of [...frags].sort()) rows.push([`ble ${k}`, s.ble.fragmentRejectedBy[k] ?? 0, r.faults.expectedFragmentRejections[k] ?? 0]);
  }
  rows.push(['sequence gaps', s.frames.seqGaps, r.faults.expectedSeqGaps]);
  out.push(`  ${'what'.padEnd(34)}${'gateway'.padStart(9)}${'expected'.padStart(10)}`);
  let mismatches = 0;
  for (const [what, got, want] of rows) {
    const ok = got === want;
    if (!ok) mismatches++;
    out.push(`  ${what.padEnd(34)}${String(got).padStart(9)}${String(want).padStart(10)}  ${ok ? 'ok' : 'DIFFERENT'}`);
  }
  if (mismatches === 0) out.push('  every refusal the simulator provoked was counted under its reason, and nothing else was refused');
  else {
    const why: string[] = [];
    if (r.faults.lost) why.push(`${r.faults.lost} faulty frames went down with their connection (the gateway may have counted them)`);
    if (r.faults.pending) why.push(`${r.faults.pending} faults were unsettled when the run ended`);
    if (r.faults.pendingSeqGaps) why.push(`${r.faults.pendingSeqGaps} skipped numbers were not followed by an acknowledged frame`);
    out.push(`  ${mismatches} difference(s)${why.length ? `: ${why.join('; ')}` : ''}`);
  }
  if (r.faults.unexpected) out.push(`  WARNING: ${r.faults.unexpected} injections got an answer that contradicts the protocol`);
  if (!r.drained) out.push('  WARNING: the simulator stopped before every frame was acknowledged; the next run sends the rest first');
  out.push(`  InfluxDB   ${influxUrl} database ${database} (embedded influxd, now stopped; its files stay in ${rel(join(DATA_DIR, 'influxdb'))})`);
  out.push('  to query the data, run the demo again (e.g. npm run demo -- --duration 10m) and, from another terminal while it runs,');
  out.push(`  use the influx command it prints at start, e.g.: ${influxHints(influxUrl, database)[0]!.replace(/-port \d+/, '-port <PORT>')}`);
  return out.join('\n');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // The fleet's MQTT sockets, the registry watcher and the timers are closed; exit even if a handle lingers.
    setTimeout(() => process.exit(code), 500).unref();
  },
  (e: Error) => {
    console.error(e instanceof UsageError ? `demo: ${e.message}\n${USAGE}` : (e.stack ?? String(e)));
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
