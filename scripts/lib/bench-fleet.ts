/**
 * The bench's hospital figures (docs/bench.md, (h); docs/fleet-scale.md scales them on paper):
 * a hospital on one box from scripts/lib/hospital.ts (the recipe the demo and
 * test/e2e/fleet.test.ts share) with three bedside gateways and one hub instance, every part a
 * real process, and a researcher per patient connected to the hub.
 *
 *   (h1) delivery latency: devices spread over the three gateways publish heart_rate frames at
 *        a paced total rate; each frame's delivery to its researcher through the hub (the
 *        delivery carries device and seq) is joined with the gateway's acceptance of it (the
 *        `received_at` of its `acceptances` point in InfluxDB: the receivedAtMs the uplink
 *        envelope carries) and with the bench's publish() call. p50 / p99 of both.
 *   (h3) hub throughput: the same devices publish as fast as their in-flight windows allow;
 *        deliveries counted at the researchers against the hub process's CPU seconds (/proc),
 *        from the first publish to the last delivery; then, every researcher gone, the hub's
 *        CPU per frame taken in (what every hub instance pays for every frame of the hospital).
 *   (h2), the uplink's cost on a gateway, is ./bench-uplink.ts; fleetFigures runs all three.
 *
 * One subscriber per patient: each device is one patient, who grants heart_rate to a researcher
 * of their own (distinct accounts: one login each). Bounded: a fixed number of frames, and a
 * time cap on every wait.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { keccak256, parseEther, toUtf8Bytes, Wallet } from 'ethers';
import type { MqttClient } from 'mqtt';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { frameIdentity } from '../../firmware-proto/frame.js';
import { frameTopic } from '../../firmware-proto/topics.js';
import { fleetDevices, type SimDevice } from '../../device-sim/fleet.js';
import { consentRegistryAt, sensorMaskOf } from '../../gateway/chain/contracts.js';
import { EMBEDDED_ACCOUNTS } from '../../gateway/chain/runtime.js';
import { resolvePatientRef } from '../../gateway/cli/patient-ref.js';
import type { HubSnapshot } from '../../gateway/hub/status.js';
import { LiveSubscription, type Delivery } from '../../gateway/research-client/index.js';
import { InfluxHttp, seriesRows } from '../../gateway/storage/influx-http.js';
import { devWallet, startAnvil } from '../../gateway/chain/anvil.js';
import type { InfluxdHandle } from '../../gateway/storage/influxd.js';
import { startHospital, until as untilDefined, type Hospital } from './hospital.js';
import { startMosquitto, type MosquittoHandle } from './mosquitto.js';
import { startUplinkGateways, uplinkCostRun, UPLINK_DEVICES, UPLINK_FRAMES_PER_DEVICE, type UplinkCostFigure, type UplinkGateways } from './bench-uplink.js';
import { presign } from './bench-frames.js';
import { closeAll, connectAll, pacedPublish, pollStatus, roundShare } from './bench-mqtt.js';
import { cpuWindow, type CpuShare } from './proc.js';
import { percentile, sig } from './stats.js';

export const FLEET_GATEWAYS = ['gw-a', 'gw-b', 'gw-c'] as const;
export const FLEET_HUB = 'hub-1';
/** Devices (= patients = researchers), spread round-robin over the gateways. */
export const FLEET_DEVICES = 12;
/** (h1): total frames per second, for how long, and the warm-up not counted. */
export const DELIVERY_RATE = 200;
export const DELIVERY_SECONDS = 6;
const DELIVERY_WARMUP_MS = 1000;
/** (h3): frames per device, published as fast as ≤ WINDOW in flight per device allows; then as many again with no researcher connected. */
export const HUB_FRAMES_PER_DEVICE = 200;
export const INTAKE_FRAMES_PER_DEVICE = 100;
const WINDOW = 32;
/** Every wait for deliveries, grants or storage is capped (the bench stops by itself). */
const WAIT_CAP_MS = 30_000;

/** Waits (capped) for `probe` to hold; throws "timed out waiting for <what>" after the cap (hospital.ts `until`). */
const until = async (what: string, probe: () => Promise<boolean> | boolean): Promise<boolean> =>
  untilDefined(what, async () => ((await probe()) ? true : undefined), WAIT_CAP_MS);
/** Self-issued researcher logins per second at the hub: the default (5, burst 10) would refuse most of 12 at once (docs/consent.md). */
const HUB_LOGINS_PER_S = 100;
/** DEV ONLY account that funds the patients' fresh accounts (hospital.ts leaves 8 and 9 for patients). */
const FUNDER_ACCOUNT = 9;

export interface Percentiles {
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface DeliveryFigure {
  gateways: number;
  devices: number;
  targetPerSecond: number;
  achievedPerSecond: number;
  frames: number;
  /** Frames published after the warm-up, delivered, and found in `acceptances`. */
  measured: number;
  warmupS: number;
  /** Hub delivery minus the gateway's receivedAtMs (its acceptance, as the uplink envelope carries it). */
  fromAcceptance: Percentiles;
  /** Hub delivery minus the bench's publish() call (the device's send). */
  fromSend: Percentiles;
  /** The device's PUBACK from its gateway, for comparison. */
  puback: Percentiles;
  delivered: number;
  /** Frames acknowledged but never delivered within the cap. */
  missing: number;
  errors: number;
  cpu: CpuShare;
}

export interface HubFigure {
  devices: number;
  frames: number;
  delivered: number;
  wallS: number;
  deliveriesPerSecond: number;
  hubCpuS: number;
  /** The headline: deliveries per CPU-second of the hub process. */
  deliveriesPerHubCpuSecond: number;
  hubCpuUsPerDelivery: number;
  /** Uplink frame messages the hub took in during the run (every frame once per hub instance). */
  uplinkFramesReceived: number;
  /** Mosquitto's CPU per uplink frame: one PUBLISH in from a gateway, one out to the hub. */
  mosquittoCpuUsPerFrame: number | null;
  /** The three gateways' CPU per frame, uplink included. */
  gatewayCpuUsPerFrame: number;
  complete: boolean;
  cpu: CpuShare;
  /** The same load with every researcher gone: what taking in the uplink alone costs the hub. */
  intake: { frames: number; hubCpuS: number; hubCpuUsPerFrame: number; complete: boolean; cpu: CpuShare };
}

export interface HospitalFigures {
  setupS: number;
  delivery: DeliveryFigure;
  hub: HubFigure;
}

/** Wall-clock ms with sub-ms resolution, comparable with the gateways' Date.now(). */
const epochMs = (): number => performance.timeOrigin + performance.now();
const frameKey = (device: string, seq: bigint | string): string => `${device}:${String(seq)}`;

function percentiles(xs: number[]): Percentiles {
  const s = [...xs].sort((a, b) => a - b);
  return { p50Ms: sig(percentile(s, 50)), p90Ms: sig(percentile(s, 90)), p99Ms: sig(percentile(s, 99)), maxMs: sig(s[s.length - 1] ?? Number.NaN) };
}

/** Every figure of (h), and how long it took. */
export interface FleetFigures {
  hospital: HospitalFigures;
  uplinkCost: UplinkCostFigure;
  seconds: number;
}

/**
 * (h): an anvil and a Mosquitto of its own in `dir`, the caller's influxd; (h1) and (h3) on the
 * hospital, then, the hospital stopped, (h2) on two gateways of its own.
 */
export async function fleetFigures(dir: string, influxd: InfluxdHandle, log: (s: string) => void): Promise<FleetFigures> {
  const t0 = performance.now();
  const anvil = await startAnvil({ dataDir: join(dir, 'anvil') });
  let broker: MosquittoHandle | undefined;
  let pair: UplinkGateways | undefined;
  try {
    broker = await startMosquitto({ dir: join(dir, 'mosquitto') });
    const hospital = await hospitalFigures({ dir: join(dir, 'hospital'), chainUrl: anvil.url, influxUrl: influxd.url, influxPid: influxd.pid, broker }, log);
    // Only now: two idle gateways with their embedded chains cost ~15 % of a CPU each while they start, which (h1) and (h3) would count as OTHER load.
    pair = await startUplinkGateways(join(dir, 'uplink'), influxd.url, broker);
    log(`(h2) uplink cost: ${UPLINK_DEVICES} devices × ${UPLINK_FRAMES_PER_DEVICE} frames, plain / uplink / uplink / plain ...`);
    const uplinkCost = await uplinkCostRun(pair!, influxd, WINDOW, log);
    log(`    gateway CPU per frame with the uplink ÷ without: ${uplinkCost.ratio} (${uplinkCost.uplinkUsPerFrame} / ${uplinkCost.plainUsPerFrame} µs)`);
    return { hospital, uplinkCost, seconds: Math.round((performance.now() - t0) / 1000) };
  } finally {
    await pair?.stop();
    await broker?.stop();
    await anvil.stop();
  }
}

/**
 * Starts the hospital on the running chain, InfluxDB and broker, runs (h1) then (h3), stops it.
 * `log` gets progress lines.
 */
export async function hospitalFigures(
  o: { dir: string; chainUrl: string; influxUrl: string; influxPid: number | undefined; broker: MosquittoHandle },
  log: (s: string) => void,
): Promise<HospitalFigures> {
  const t0 = performance.now();
  const devices = fleetDevices('bench-fleet', FLEET_DEVICES, 'heart_rate');
  const latPer = Math.ceil((DELIVERY_RATE * DELIVERY_SECONDS) / devices.length);
  const perDevice = latPer + HUB_FRAMES_PER_DEVICE + INTAKE_FRAMES_PER_DEVICE;
  log(`(h) pre-signing ${devices.length} × ${perDevice} heart_rate frames; starting 3 gateways and a hub ...`);
  const frames = devices.map((d) => presign(d, perDevice, ['heart_rate']));
  mkdirSync(o.dir, { recursive: true });
  const h = await startHospital({
    dir: o.dir,
    chainUrl: o.chainUrl,
    influxUrl: o.influxUrl,
    broker: o.broker,
    devices,
    gateways: FLEET_GATEWAYS,
    hubs: [FLEET_HUB],
    hubFlags: { 'login.selfIssuedPerS': HUB_LOGINS_PER_S },
  });
  const researchers: LiveSubscription[] = [];
  const clients: MqttClient[] = [];
  try {
    await grantEach(h, devices);
    const hub = h.hubs.get(FLEET_HUB)!;
    await until('the hub to see every grant', async () => (await hub.get<HubSnapshot>('/status')).consent.inForce >= devices.length);
    const arrivals = new Map<string, number>();
    for (const [i, d] of devices.entries()) researchers.push(await subscribe(h, d, i, (x) => arrivals.set(frameKey(x.deviceId, x.seq), epochMs())));
    const gwOf = (i: number): string => FLEET_GATEWAYS[i % FLEET_GATEWAYS.length]!;
    for (const [i, d] of devices.entries()) clients.push(...(await connectAll(h.gateways.get(gwOf(i))!.mqttPort, [d])));
    const topics = devices.map((d) => frameTopic(d.deviceId));
    const setupS = sig((performance.now() - t0) / 1000, 3);
    log(`    hospital up, grants seen, researchers subscribed in ${setupS} s`);
    const pids = {
      ...Object.fromEntries([...h.gateways].map(([name, g]) => [name, g.pid])),
      hub: hub.pid,
      mosquitto: o.broker.pid,
      influxd: o.influxPid,
    };
    const load: FleetLoad = { h, clients, topics, arrivals, pids };

    log(`(h1) ${devices.length} devices over 3 gateways paced at ${DELIVERY_RATE} frames/s for ~${DELIVERY_SECONDS} s, delivered through the hub ...`);
    const delivery = await deliveryRun(
      load,
      frames.map((f) => f.slice(0, latPer)),
      o.influxUrl,
    );
    log(
      `    acceptance → delivery p50 ${delivery.fromAcceptance.p50Ms} ms, p99 ${delivery.fromAcceptance.p99Ms} ms (send → delivery p50 ${delivery.fromSend.p50Ms}, p99 ${delivery.fromSend.p99Ms})`,
    );
    log(`(h3) ${devices.length} × ${HUB_FRAMES_PER_DEVICE} frames as fast as ≤ ${WINDOW} in flight per device allow ...`);
    const hubFig = await hubRun(
      load,
      frames.map((f) => f.slice(latPer, latPer + HUB_FRAMES_PER_DEVICE)),
      async () => {
        await Promise.all(researchers.splice(0).map((r) => r.close()));
        await until('the researchers gone from the hub', async () => (await hub.get<HubSnapshot>('/status')).mqtt.connections === 0);
      },
      frames.map((f) => f.slice(latPer + HUB_FRAMES_PER_DEVICE)),
    );
    log(`    ${hubFig.deliveriesPerSecond} deliveries/s; ${hubFig.deliveriesPerHubCpuSecond} deliveries per hub CPU-second`);
    return { setupS, delivery, hub: hubFig };
  } finally {
    await closeAll(clients);
    await Promise.all(researchers.map((r) => r.close()));
    await h.stop();
  }
}

/**
 * Each device's patient gets a fresh funded account, the hospital admin binds it to the
 * patient's ref, and the patient grants heart_rate (data window: the last 3 hours to an hour
 * ahead) to the researcher of the same index. Three rounds of transactions sent together.
 */
async function grantEach(h: Hospital, devices: readonly SimDevice[]): Promise<void> {
  const funder = devWallet(FUNDER_ACCOUNT, h.provider);
  const admin = devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin, h.provider);
  const registry = h.record.consentRegistry.address;
  const patients = devices.map((_, i) => new Wallet(keccak256(toUtf8Bytes(`vitalproof bench patient ${i}`)), h.provider));
  const refs = devices.map((d) => resolvePatientRef(h.dataDir(FLEET_GATEWAYS[0]), d.patient)!.patientRef);
  const mined = async (txs: Promise<{ wait(): Promise<{ status: number | null } | null> }>[]): Promise<void> => {
    for (const r of await Promise.all((await Promise.all(txs)).map((t) => t.wait())))
      if (!r || r.status !== 1) throw new Error('bench: a patient set-up transaction failed');
  };
  const fundNonce = await funder.getNonce('pending');
  await mined(patients.map((p, i) => funder.sendTransaction({ to: p.address, value: parseEther('1'), nonce: fundNonce + i })));
  const adminNonce = await admin.getNonce('pending');
  const asAdmin = consentRegistryAt(registry, admin);
  await mined(patients.map((p, i) => asAdmin.bindPatient(refs[i]!, p.address, { nonce: adminNonce + i })));
  const now = Date.now();
  const mask = sensorMaskOf([sensorByName('heart_rate').code]);
  await mined(
    patients.map((p, i) =>
      consentRegistryAt(registry, p).grant(
        refs[i]!,
        researcherKey(i).address,
        mask,
        now - 3 * 3600_000,
        now + 3600_000,
        now + 3600_000,
        keccak256(toUtf8Bytes('bench')),
      ),
    ),
  );
}

const researcherKey = (i: number): Wallet => new Wallet(keccak256(toUtf8Bytes(`vitalproof bench researcher ${i}`)));

/** Researcher `i` subscribes to device `d`'s patient on the hub; resolves once the subscription is active. */
async function subscribe(h: Hospital, d: SimDevice, i: number, onDelivery: (d: Delivery) => void): Promise<LiveSubscription> {
  const hub = h.hubs.get(FLEET_HUB)!;
  const live = new LiveSubscription({
    brokerUrl: `mqtt://127.0.0.1:${hub.mqttPort}`,
    key: researcherKey(i),
    gatewayId: h.hubId,
    pseudonym: d.patient,
    metrics: ['heart_rate'],
  });
  live.on('delivery', onDelivery);
  let timer: NodeJS.Timeout | undefined;
  const outcome = await new Promise<string>((res) => {
    live.once('ready', (n) => res(n === 1 ? 'ready' : `${n} subscriptions accepted`));
    live.once('loginRefused', (code, m) => res(`login refused (${code}): ${m}`));
    live.once('connectFailed', (e) => res(`connect failed: ${e.message}`));
    live.once('refused', (t, n) => res(`subscription ${t} refused: ${n?.code ?? 'no notice'}`));
    timer = setTimeout(() => res('no answer'), WAIT_CAP_MS);
  });
  clearTimeout(timer);
  if (outcome !== 'ready') {
    await live.close();
    throw new Error(`bench: researcher ${i} on ${FLEET_HUB}: ${outcome}`);
  }
  return live;
}

/** What both runs drive: the hospital, one device client per device on its gateway, and the researchers' arrivals. */
interface FleetLoad {
  h: Hospital;
  clients: readonly MqttClient[];
  topics: readonly string[];
  /** Delivery wall-clock time by device and seq, filled by the researchers' subscriptions. */
  arrivals: Map<string, number>;
  /** The processes whose CPU is accounted, by name. */
  pids: Record<string, number | undefined>;
}

async function deliveryRun({ h, clients, topics, arrivals, pids }: FleetLoad, frames: readonly Buffer[][], influxUrl: string): Promise<DeliveryFigure> {
  const total = frames.reduce((n, f) => n + f.length, 0);
  const keys = frames.map((f) => f.map((raw) => frameIdentity(raw)));
  const cpu = cpuWindow(pids);
  const r = await pacedPublish(clients, topics, frames, DELIVERY_RATE, DELIVERY_WARMUP_MS, WINDOW);
  const want = keys.flat().map((k) => frameKey(k.deviceId, k.seq));
  await until('every frame delivered', () => want.every((k) => arrivals.has(k))).catch(() => false);
  const share = cpu();
  // The gateways' acceptance times, from the shared store once each gateway has written what it took.
  for (const g of h.gateways.values()) await pollStatus(g, (s) => s.spool.backlogFrames === 0 && s.storage.framesWritten >= s.frames.accepted, WAIT_CAP_MS, 50);
  const receivedAt = await acceptanceTimes(influxUrl, [...new Set(keys.flat().map((k) => k.deviceId))]);
  const n = clients.length;
  const fromAcceptance: number[] = [];
  const fromSend: number[] = [];
  const puback: number[] = [];
  for (let slot = r.measuredFrom; slot < total; slot++) {
    const k = keys[slot % n]![Math.floor(slot / n)]!;
    const key = frameKey(k.deviceId, k.seq);
    const at = arrivals.get(key);
    const acc = receivedAt.get(key);
    if (at === undefined || acc === undefined) continue;
    fromAcceptance.push(at - acc);
    fromSend.push(at - (performance.timeOrigin + r.publishedAt[slot]!));
    puback.push(r.latencies[slot]!);
  }
  const delivered = want.filter((k) => arrivals.has(k)).length;
  return {
    gateways: h.gateways.size,
    devices: n,
    targetPerSecond: DELIVERY_RATE,
    achievedPerSecond: Math.round((total * 1000) / (r.lastPublish - r.t0)),
    frames: total,
    measured: fromAcceptance.length,
    warmupS: DELIVERY_WARMUP_MS / 1000,
    fromAcceptance: percentiles(fromAcceptance),
    fromSend: percentiles(fromSend),
    puback: percentiles(puback),
    delivered,
    missing: total - delivered,
    errors: r.errors,
    cpu: roundShare(share),
  };
}

/** received_at of every `acceptances` point of these devices, by device and seq (docs/storage.md, schema v2). */
async function acceptanceTimes(influxUrl: string, devices: string[]): Promise<Map<string, number>> {
  const http = new InfluxHttp({ url: influxUrl });
  const out = new Map<string, number>();
  for (const d of devices) {
    const rows = seriesRows(await http.query(`SELECT "seq", "received_at" FROM "acceptances" WHERE "device" = $d`, { database: 'vitalproof', params: { d } }));
    for (const row of rows) out.set(frameKey(d, String(row['seq'])), Number(row['received_at']));
  }
  return out;
}

/** (h3): deliveries per hub CPU-second; then, after `dropResearchers`, the intake alone on `intakeFrames`. */
async function hubRun(
  { h, clients, topics, arrivals, pids }: FleetLoad,
  frames: readonly Buffer[][],
  dropResearchers: () => Promise<void>,
  intakeFrames: readonly Buffer[][],
): Promise<HubFigure> {
  const hub = h.hubs.get(FLEET_HUB)!;
  const total = frames.reduce((n, f) => n + f.length, 0);
  const before = arrivals.size;
  const s0 = await hub.get<HubSnapshot>('/status');
  const cpu = cpuWindow(pids);
  const t0 = performance.now();
  // As fast as the windows allow: a rate no box reaches, so pacing never holds a publish back.
  const r = await pacedPublish(clients, topics, frames, 1e9, 0, WINDOW);
  const complete = await until('every frame delivered', () => arrivals.size - before >= total).catch(() => false);
  const wallS = (performance.now() - t0) / 1000;
  const share = cpu();
  const s1 = await hub.get<HubSnapshot>('/status');
  const delivered = arrivals.size - before;
  const hubCpuS = share.processes['hub']!;
  const gwCpuS = FLEET_GATEWAYS.reduce((n, g) => n + (share.processes[g] ?? 0), 0);
  const mosq = share.processes['mosquitto'];
  const received = s1.uplink.received.frames - s0.uplink.received.frames;
  await dropResearchers();
  const intakeTotal = intakeFrames.reduce((n, f) => n + f.length, 0);
  const i0 = await hub.get<HubSnapshot>('/status');
  const intakeCpu = cpuWindow(pids);
  const ri = await pacedPublish(clients, topics, intakeFrames, 1e9, 0, WINDOW);
  const taken = await until(
    'the hub to take in every frame',
    // With nobody following, a frame is taken in once the hub received it (it goes no further: gateway/hub/uplink-feed.ts).
    async () => (await hub.get<HubSnapshot>('/status')).uplink.received.frames - i0.uplink.received.frames >= intakeTotal,
  ).catch(() => false);
  const intakeShare = intakeCpu();
  const intakeHubS = intakeShare.processes['hub']!;
  return {
    devices: clients.length,
    frames: total,
    delivered,
    wallS: sig(wallS, 3),
    deliveriesPerSecond: Math.round(delivered / wallS),
    hubCpuS: sig(hubCpuS, 3),
    deliveriesPerHubCpuSecond: Math.round(delivered / hubCpuS),
    hubCpuUsPerDelivery: sig((hubCpuS * 1e6) / delivered),
    uplinkFramesReceived: received,
    mosquittoCpuUsPerFrame: mosq === undefined ? null : sig((mosq * 1e6) / received),
    gatewayCpuUsPerFrame: sig((gwCpuS * 1e6) / total),
    complete: complete && r.errors === 0 && delivered === total,
    cpu: roundShare(share),
    intake: {
      frames: intakeTotal,
      hubCpuS: sig(intakeHubS, 3),
      hubCpuUsPerFrame: sig((intakeHubS * 1e6) / intakeTotal),
      complete: taken && ri.errors === 0,
      cpu: roundShare(intakeShare),
    },
  };
}
