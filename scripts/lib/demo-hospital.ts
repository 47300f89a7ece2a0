/**
 * `npm run demo -- --gateways N`: a hospital on one box (docs/fleet.md, "Try it on one box").
 *
 * Every part is a real process, as in test/e2e/fleet.test.ts and with its recipe
 * (scripts/lib/hospital.ts): Mosquitto 2 as the hospital broker, one anvil with the contracts
 * deployed by `vitalproof chain deploy`, one influxd, N bedside gateways (`vitalproof run`,
 * gw-1 … gw-N) and one or two hubs (`vitalproof hub`), on free loopback ports, with everything
 * in ./data/demo-hospital (made afresh each run: the chain is new each time, and kept after it
 * for a look).
 *
 * A simulated fleet (device-sim) is split across the gateways; one more wearable walks the
 * wards: a while at gw-1, then gw-2, … gw-N. It leaves each gateway the way a patient does:
 * its last acknowledgements lost on the way out (scripts/lib/leaving-relay.ts), so it arrives
 * at the next gateway with frames the previous one took but it believes unacknowledged, and
 * resends them from its state dir, flagged DUP (PROTOCOL.md §8.2). A researcher with the
 * patient's grant (bound and granted on chain with `vitalproof admin` and `vitalproof consent`)
 * follows the patient at hub-1. At the end the demo checks, row by row against what is expected
 * (scripts/lib/demo-hospital-report.ts), what each gateway accepted, stored and anchored, that
 * storage holds every acknowledged frame once, what the researcher received, the hub's /fleet,
 * and one proof bundle per gateway fetched from a hub and verified; any FAIL makes exit code 1.
 * Ctrl-C stops everything at once (the children get the terminal's interrupt too), without the checks.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { devWallet, startAnvil, type AnvilHandle } from '../../gateway/chain/anvil.js';
import { adminCommand } from '../../gateway/cli/admin.js';
import { consentCommand } from '../../gateway/cli/consent.js';
import type { HubSnapshot } from '../../gateway/hub/status.js';
import { LiveSubscription, type Delivery } from '../../gateway/research-client/index.js';
import { startInfluxd, type InfluxdHandle } from '../../gateway/storage/influxd.js';
import { fleetDevices, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet } from '../../device-sim/run.js';
import { runCommand } from './demo-researcher.js';
import { hospitalReport, type WalkLeg } from './demo-hospital-report.js';
import { startHospital, until, type Hospital } from './hospital.js';
import { leavingRelay } from './leaving-relay.js';
import { startMosquitto, type MosquittoHandle } from './mosquitto.js';

const DATA_DIR = resolve('data', 'demo-hospital');
const SEED = 'demo-hospital';
const WALKER_SEED = 'demo-hospital-walker';
/** 1-s frames: a couple a second, so each leg of the walk is a handful of frames. */
const WALKER_SENSORS = 'accelerometer,ecg';
/** DEV ONLY accounts: 0-1 deployer and hospital admin, 3-7 gateways and hubs (hospital.ts). */
const PATIENT_ACCOUNT = 8;
const RESEARCHER_ACCOUNT = 9;
/** Gateways and hubs share the five dev accounts 3-7: two hubs up to three gateways, one beyond. */
export const MAX_GATEWAYS = 4;
export const DEFAULT_DEVICES_PER_GATEWAY = 3;
export const DEFAULT_HOSPITAL_DURATION_MS = 30_000;
/** Acknowledgements the walker loses as it leaves a gateway, and how long it waits for them to be lost. */
const LOST_ACKS = 2;
const LEAVE_TIMEOUT_MS = 10_000;
const LEAVING_DRAIN_MS = 300;
const FLEET_DRAIN_MS = 20_000;
const BACKOFF = { initialMs: 100, maxMs: 1000 };

export interface HospitalDemoOptions {
  gateways: number;
  /** Wearables of the fleet in all (the walker besides), dealt to the gateways in turn. */
  devices: number;
  durationMs: number;
}

/** Runs the hospital demo; resolves with the exit code (0 every check ok, 1 a FAIL, 130 interrupted). */
export async function hospitalDemo(o: HospitalDemoOptions): Promise<number> {
  const started = Date.now();
  const names = Array.from({ length: o.gateways }, (_, i) => `gw-${i + 1}`);
  const hubNames = o.gateways <= 3 ? ['hub-1', 'hub-2'] : ['hub-1'];
  const stop = new AbortController();
  let interrupts = 0;
  let onInterrupt = (): void => undefined;
  /** Resolves at the first Ctrl-C or SIGTERM: the run stops waiting for the fleet (its gateways are going) and cleans up. */
  const interruptedNow = new Promise<'interrupted'>((res) => (onInterrupt = () => res('interrupted')));
  const onSignal = (sig: string): void => {
    if (++interrupts > 1) {
      process.stdout.write('\nsecond interrupt: quitting without waiting\n');
      process.exit(130);
    }
    console.log(`\n${sig}: stopping everything ...`);
    stop.abort();
    onInterrupt();
  };
  process.on('SIGINT', () => onSignal('Ctrl-C'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  rmSync(DATA_DIR, { recursive: true, force: true });
  mkdirSync(DATA_DIR, { recursive: true });
  console.log(
    `VitalProof hospital demo: ${o.gateways} bedside gateways, ${hubNames.length} hub${hubNames.length > 1 ? 's' : ''}, Mosquitto 2, one influxd, one anvil, in ./data/demo-hospital (made afresh) ...`,
  );
  let broker: MosquittoHandle | undefined;
  let chain: AnvilHandle | undefined;
  let influx: InfluxdHandle | undefined;
  let hospital: Hospital | undefined;
  let live: LiveSubscription | undefined;
  try {
    [broker, chain, influx] = await Promise.all([
      startMosquitto({ dir: join(DATA_DIR, 'mosquitto') }),
      startAnvil({ dataDir: join(DATA_DIR, 'chain'), checkpointIntervalMs: 0 }),
      startInfluxd({ dataDir: join(DATA_DIR, 'influxdb') }),
    ]);
    const fleets = names.map((_, k) => fleetDevices(`${SEED}-${names[k]}`, share(o.devices, o.gateways, k), 'mix'));
    const walker = fleetDevices(WALKER_SEED, 1, WALKER_SENSORS)[0]!;
    hospital = await startHospital({
      dir: DATA_DIR,
      chainUrl: chain.url,
      influxUrl: influx.url,
      broker,
      devices: [...fleets.flat(), walker],
      gateways: names,
      hubs: hubNames,
      gatewayFlags: { 'batch.intervalMs': 500, 'storage.retryMinMs': 50 },
      hubFlags: { 'hub.holdMs': 1500 },
    });
    const h = hospital;
    const hub1 = h.hubs.get('hub-1')!;
    const proofHub = h.hubs.get(hubNames[hubNames.length - 1]!)!;
    console.log(`  broker      Mosquitto ${broker.url} (dynamic security: each gateway may publish under its own uplink prefix only)`);
    console.log(
      `  chain       anvil ${chain.url} (chain ${chain.chainId}), contracts deployed by vitalproof chain deploy (${join('data/demo-hospital', 'deployment.json')})`,
    );
    console.log(`  influxdb    ${influx.url}, database vitalproof, shared by every gateway and hub`);
    names.forEach((n, k) => {
      const g = h.gateways.get(n)!;
      console.log(`  ${n.padEnd(11)} MQTT 127.0.0.1:${g.mqttPort}, HTTP 127.0.0.1:${g.httpPort}; ${fleets[k]!.length} wearables of the fleet`);
    });
    for (const [n, p] of h.hubs)
      console.log(`  ${n.padEnd(11)} MQTT 127.0.0.1:${p.mqttPort}, HTTP 127.0.0.1:${p.httpPort} (npx vitalproof fleet --url http://127.0.0.1:${p.httpPort})`);

    // The researcher: the hospital admin binds the walker's patient, the patient grants, the researcher follows at hub-1.
    const granted = await researcherGrant(h, walker, o.durationMs);
    await until('hub-1 to see the grant', async () => ((await hub1.get<HubSnapshot>('/status')).consent.inForce > 0 ? true : undefined), 15_000);
    const researcher = devWallet(RESEARCHER_ACCOUNT);
    const deliveries: Delivery[] = [];
    live = new LiveSubscription({
      brokerUrl: `mqtt://127.0.0.1:${hub1.mqttPort}`,
      key: researcher,
      gatewayId: h.hubId,
      pseudonym: walker.patient,
      metrics: ['+'],
    });
    const l = live;
    await new Promise<void>((res, rej) => {
      l.once('ready', (n) => (n > 0 ? res() : rej(new Error("the hub refused the researcher's subscription"))));
      l.once('loginRefused', (rc, m) => rej(new Error(`the hub refused the researcher's login (${rc}): ${m}`)));
      l.once('connectFailed', rej);
    });
    live.on('delivery', (d) => deliveries.push(d));
    console.log(
      `  researcher  ${researcher.address} (DEV ONLY account ${RESEARCHER_ACCOUNT}) follows patient ${walker.patient} at hub-1: grant ${granted} (${WALKER_SENSORS.replace(',', ', ')}) from patient ${devWallet(PATIENT_ACCOUNT).address} (account ${PATIENT_ACCOUNT})`,
    );
    const legMs = o.durationMs / o.gateways;
    console.log(`  wearable    ${walker.deviceId} (patient ${walker.patient}) walks ${names.join(' → ')}, ${(legMs / 1000).toFixed(0)} s at each`);
    console.log(`running for ${Math.round(o.durationMs / 1000)} s (Ctrl-C stops everything)\n`);

    // The fleet at its gateways, the walker on its rounds, a progress line every 5 s.
    const timer = setTimeout(() => stop.abort(), o.durationMs);
    let walkerAt = names[0]!;
    const ticker = setInterval(() => void progress(h, names, started, walkerAt, deliveries.length).catch(() => undefined), 5000);
    const stateDir = join(DATA_DIR, 'sim-state');
    const fleetRuns = Promise.all(
      names.map((n, k) =>
        runFleet({
          brokerUrl: `mqtt://127.0.0.1:${h.gateways.get(n)!.mqttPort}`,
          devices: fleets[k]!.length,
          seed: `${SEED}-${n}`,
          sensors: 'mix',
          stateDir,
          signal: stop.signal,
          drainTimeoutMs: FLEET_DRAIN_MS,
          backoff: BACKOFF,
        }),
      ),
    );
    const outcome = await Promise.race([Promise.all([fleetRuns, walk(h, names, legMs, stateDir, stop.signal, (n) => (walkerAt = n))]), interruptedNow]);
    clearTimeout(timer);
    clearInterval(ticker);
    if (outcome === 'interrupted') return 130;
    const [fleetReports, legs] = outcome;

    const lines = await hospitalReport({
      hospital: h,
      influxUrl: influx.url,
      names,
      hubNames,
      fleets,
      fleetReports,
      walker,
      legs,
      deliveries,
      proofHub,
      proofHubName: hubNames[hubNames.length - 1]!,
    });
    console.log(`\nVitalProof hospital demo stopped after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    for (const line of lines.text) console.log(line);
    console.log(`  data in ./data/demo-hospital (kept until the next run); gateway and hub logs were their stdout, not kept`);
    return lines.ok ? 0 : 1;
  } finally {
    await live?.close();
    await hospital?.stop();
    await Promise.all([broker?.stop(), influx?.stop(), chain?.stop()]);
  }
}

/**
 * The walker's rounds: `legMs` at each gateway, then out of range of its acknowledgements
 * (leaving-relay.ts) until LOST_ACKS are lost, then on to the next with its state dir; at the last
 * gateway until `stop`. Resolves with each leg's report.
 */
async function walk(h: Hospital, names: string[], legMs: number, stateDir: string, stop: AbortSignal, at: (gateway: string) => void): Promise<WalkLeg[]> {
  const legs: WalkLeg[] = [];
  for (let k = 0; k < names.length && !stop.aborted; k++) {
    const last = k === names.length - 1;
    const walkerAt = names[k]!;
    at(walkerAt);
    const gw = h.gateways.get(walkerAt)!;
    // A wearable is in range of its next gateway once the last one's frames are in the shared store.
    if (k > 0)
      await h.gateways
        .get(names[k - 1]!)!
        .until((s) => s.storage.framesWritten >= s.frames.accepted, 10_000, 'storage caught up')
        .catch(() => undefined);
    const relay = last ? undefined : await leavingRelay(gw.mqttPort);
    const leg = new AbortController();
    const onStop = (): void => leg.abort();
    stop.addEventListener('abort', onStop);
    const run = runFleet({
      brokerUrl: `mqtt://127.0.0.1:${relay?.port ?? gw.mqttPort}`,
      devices: 1,
      seed: WALKER_SEED,
      sensors: WALKER_SENSORS,
      stateDir,
      signal: leg.signal,
      drainTimeoutMs: last ? FLEET_DRAIN_MS : LEAVING_DRAIN_MS,
      backoff: BACKOFF,
    });
    if (relay) {
      await new Promise<void>((res) => {
        const t = setTimeout(res, legMs);
        stop.addEventListener('abort', () => (clearTimeout(t), res()), { once: true });
      });
      relay.leave();
      if (!stop.aborted) await relay.untilDropped(LOST_ACKS, LEAVE_TIMEOUT_MS);
      leg.abort();
    }
    const report = await run;
    stop.removeEventListener('abort', onStop);
    await relay?.close();
    legs.push({ gateway: walkerAt, report: report, lostAcks: relay?.dropped ?? 0 });
    const r = report.frames;
    console.log(
      `  walker at ${walkerAt}: ${r.recorded} frames recorded${r.restored ? `, ${r.restored} unacknowledged ones brought from ${names[k - 1]} and resent` : ''}, ${r.acked} acknowledged` +
        (relay ? `; leaving: ${relay.dropped} acknowledgements lost on the way out, ${r.unacked} frames unacknowledged` : ''),
    );
  }
  return legs;
}

/** Wearables of the fleet at gateway `k` of `n`: dealt in turn, so they differ by one at most. */
function share(total: number, n: number, k: number): number {
  return Math.floor(total / n) + (k < total % n ? 1 : 0);
}

/** The hospital admin binds the walker's patient to a key (DEV ONLY account 8), which grants the researcher; resolves with the grant id. */
async function researcherGrant(h: Hospital, walker: SimDevice, durationMs: number): Promise<string> {
  const patient = devWallet(PATIENT_ACCOUNT);
  const keyFile = join(h.dir, 'patient.key');
  writeFileSync(keyFile, `${patient.privateKey}\n`, { mode: 0o600 });
  const gw1 = 'gw-1';
  const chainArgs = ['--dataDir', h.dataDir(gw1), ...Object.entries(h.chainFlags(gw1)).flatMap(([k, v]) => [`--${k}`, v])];
  await runCommand('admin bind-patient', adminCommand, ['bind-patient', walker.patient, patient.address, '--admin-key-file', h.adminKeyFile, ...chainArgs]);
  const span = `now+${Math.ceil(durationMs / 1000) + 600}s`;
  const out = await runCommand('consent grant', consentCommand, [
    'grant',
    '--key-file',
    keyFile,
    '--pseudonym',
    walker.patient,
    '--researcher',
    devWallet(RESEARCHER_ACCOUNT).address,
    '--metrics',
    WALKER_SENSORS,
    '--from',
    'now-1h',
    '--to',
    span,
    '--expires',
    span,
    '--purpose',
    'VitalProof hospital demo',
    '--json',
    ...chainArgs,
  ]);
  return (JSON.parse(out.join('\n')) as { grantId: string }).grantId;
}

/** One progress line: each gateway's accepted and stored frames, where the walker is, what the researcher has. */
async function progress(h: Hospital, names: string[], started: number, walkerAt: string, delivered: number): Promise<void> {
  const parts = await Promise.all(
    names.map(async (n) => {
      const s = await h.gateways.get(n)!.status();
      return `${n} accepted ${s.frames.accepted} stored ${s.storage.framesWritten} anchored batches ${s.batches.lastAnchored}`;
    }),
  );
  console.log(
    `[${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s] ${parts.join(' | ')} | walker at ${walkerAt} | researcher ${delivered} frames`,
  );
}
