/**
 * The bench's other runs: (g) a login flood beside honest devices, (f) BLE wearables over
 * the simulated BlueZ, (e) anchoring and proofs (docs/bench.md).
 */
import { join } from 'node:path';
import { fleetDevices, type SimDevice } from '../../device-sim/fleet.js';
import type { InfluxdHandle } from '../../gateway/storage/influxd.js';
import type { GatewayProcess } from './gateway-process.js';
import { cpuWindow, type CpuShare } from './proc.js';
import { percentile, sig } from './stats.js';
import { BatchStore } from '../../gateway/anchor/batch-store.js';
import { chainProvider } from '../../gateway/chain/runtime.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { parseBundles, type ProofBundle } from '../../gateway/proof/bundle.js';
import { VerifyCache, verifyBundle } from '../../gateway/proof/verify.js';
import { readFileSync } from 'node:fs';
import { type PrivateBus } from '../../device-sim/bluez/bus-daemon.js';
import { runFleet } from '../../device-sim/run.js';
import { LoginFlood, type FloodFigure } from './login-flood.js';
import { type LatencyFigure, latencyRun, pollStatus, roundShare } from './bench-mqtt.js';
import { splitFrames } from './bench-frames.js';

// ---------------------------------------------------------------- (g) login flood

export interface LoginFloodFigure {
  honestPerSecond: number;
  devices: number;
  baseline: LatencyFigure;
  underFlood: LatencyFigure;
  /** underFlood ÷ baseline: 1 means the flood cost honest devices nothing. */
  ratioP50: number;
  ratioP95: number;
  flood: FloodFigure;
  /** secp256k1 recoveries the gateway did during the flood run (/status http.login.recoveries). */
  recoveries: number;
  /** The flood's answers by code as the gateway counted them (/status http): rate-limited per source, and refused logins. */
  gatewayRefusedBy: Record<string, number>;
  /** (gateway CPU in the flood run − in the baseline run) ÷ forged logins sent: what one costs the gateway, in µs. */
  gatewayCpuUsPerForgedLogin: number;
}

/** Fresh devices for the latency runs of (g): frames carry sequence numbers, so each run needs its own. */
export function loginFloodFleets(n: number): { base: SimDevice[]; attack: SimDevice[]; warm: SimDevice[] } {
  return {
    base: fleetDevices('bench-flood-base', n, 'heart_rate'),
    attack: fleetDevices('bench-flood-attack', n, 'heart_rate'),
    warm: fleetDevices('bench-flood-warm', n, 'heart_rate'),
  };
}

export async function loginFloodRun(
  gw: GatewayProcess,
  influxd: InfluxdHandle,
  fleets: { base: SimDevice[]; attack: SimDevice[]; warm?: SimDevice[] },
  rate: number,
  floodRate: number,
  floodSources: number,
  window: number,
): Promise<LoginFloodFigure> {
  const seconds = 10;
  const per = Math.max(1, Math.ceil((rate * seconds) / fleets.base.length));
  if (fleets.warm) {
    // A gateway just started is still settling (deployment, first syncs): 5 s of the same load first.
    await latencyRun(gw, influxd, fleets.warm, splitFrames(fleets.warm, Math.ceil(per / 2), ['heart_rate']), rate, 1000, window);
    await pollStatus(gw, (s) => s.spool.backlogFrames === 0, 60_000, 100);
  }
  const baseline = await latencyRun(gw, influxd, fleets.base, splitFrames(fleets.base, per, ['heart_rate']), rate, 1000, window);
  await pollStatus(gw, (s) => s.spool.backlogFrames === 0, 60_000, 100);
  const attackFrames = splitFrames(fleets.attack, per, ['heart_rate']);
  const before = await gw.status();
  const flood = new LoginFlood({ port: gw.httpPort, ratePerS: floodRate, sources: floodSources, account: `0x${'5a'.repeat(20)}` });
  await flood.start();
  let underFlood: LatencyFigure;
  let floodFigure: FloodFigure;
  try {
    underFlood = await latencyRun(gw, influxd, fleets.attack, attackFrames, rate, 1000, window);
  } finally {
    floodFigure = await flood.stop();
  }
  const after = await gw.status();
  const delta = (a: Record<string, number> = {}, b: Record<string, number> = {}): Record<string, number> =>
    Object.fromEntries(
      Object.keys(a)
        .map((k) => [k, (a[k] ?? 0) - (b[k] ?? 0)])
        .filter(([, n]) => (n as number) > 0),
    );
  return {
    honestPerSecond: Math.round(rate),
    devices: fleets.base.length,
    baseline,
    underFlood,
    ratioP50: sig(underFlood.p50Ms / baseline.p50Ms),
    ratioP95: sig(underFlood.p95Ms / baseline.p95Ms),
    flood: floodFigure,
    recoveries: (after.http?.login.recoveries ?? 0) - (before.http?.login.recoveries ?? 0),
    gatewayRefusedBy: { ...delta(after.http?.refusedBy, before.http?.refusedBy), ...delta(after.http?.login.refusedBy, before.http?.login.refusedBy) },
    gatewayCpuUsPerForgedLogin: sig(
      (((underFlood.cpu.processes['gateway'] ?? 0) - (baseline.cpu.processes['gateway'] ?? 0)) * 1e6) / Math.max(1, floodFigure.requests),
    ),
  };
}

/** BLE wearables in one run. */
export const BLE_DEVICES = 20;

export interface BleFigure {
  devices: number;
  framesPerDevice: number;
  frames: number;
  mtu: number;
  /** From the run's start (connections included) until the last acknowledgement. */
  wallS: number;
  framesPerSecond: number;
  complete: boolean;
  gatewayCpuUsPerFrame: number;
  /** Gateway CPU per BLE frame ÷ per MQTT small frame (b): the cost of reassembly, D-Bus and ACK writes. */
  ratioToMqtt: number;
  /** The simulator and its BlueZ service run in the bench process; dbus-daemon is a process of its own. */
  simulatorCpuUsPerFrame: number;
  dbusDaemonCpuUsPerFrame: number | null;
  cpu: CpuShare;
}

/**
 * (f) BLE: a fleet of simulated wearables (frames pace: as fast as acknowledgements allow) over
 * the simulated BlueZ; every frame goes as one notification at ATT_MTU 247 (a heart-rate frame is 117 bytes).
 */
export async function bleRun(gw: GatewayProcess, influxd: InfluxdHandle, bus: PrivateBus, perDevice: number, mqttUsPerFrame: number): Promise<BleFigure> {
  const cpu = cpuWindow({ gateway: gw.pid, influxd: influxd.pid, dbusDaemon: bus.pid });
  const report = await runFleet({
    transport: 'ble',
    ble: { busAddress: bus.address, mtu: 247 },
    devices: BLE_DEVICES,
    seed: 'bench-ble',
    sensors: 'heart_rate',
    frames: perDevice,
    drainTimeoutMs: 120_000,
  });
  const share = roundShare(cpu());
  const frames = report.frames.acked;
  const gwUs = ((share.processes['gateway'] ?? 0) * 1e6) / Math.max(1, frames);
  return {
    devices: BLE_DEVICES,
    framesPerDevice: perDevice,
    frames,
    mtu: 247,
    wallS: sig(report.elapsedMs / 1000, 3),
    framesPerSecond: sig(frames / (report.elapsedMs / 1000), 3),
    complete: report.drained && frames === BLE_DEVICES * perDevice,
    gatewayCpuUsPerFrame: sig(gwUs, 3),
    ratioToMqtt: sig(gwUs / mqttUsPerFrame, 3),
    simulatorCpuUsPerFrame: sig((share.selfS * 1e6) / Math.max(1, frames), 3),
    dbusDaemonCpuUsPerFrame: share.processes['dbusDaemon'] !== undefined ? sig((share.processes['dbusDaemon'] * 1e6) / Math.max(1, frames), 3) : null,
    cpu: share,
  };
}

export interface AnchoringFigure {
  complete: boolean;
  batchIntervalMs: number;
  batches: number;
  leaves: number;
  leavesPerBatch: { min: number; median: number; max: number };
  gasPerAnchor: { mean: number; min: number; max: number; first: number };
  gasPerMillionFrames: number;
  /** From a frame's arrival at the gateway to the confirmation of its batch's anchor. */
  arrivalToAnchorMs: { frames: number; p50: number; p99: number; max: number };
  /** GET /proofs from the gateway: InfluxDB read, leaf check, audit path, bundle. */
  proofGeneration: { bundles: number; wallMs: number; usPerBundle: number };
  /** verifyBundle in this process, one bundle after another: against the embedded chain with a shared VerifyCache (chain reads and key checks shared), without one (every bundle pays its own), and offline with one. */
  verify: { bundles: number; onlineUsPerBundle: number; onlineFirstOfBatchUsPerBundle: number; offlineUsPerBundle: number; allOk: boolean };
}

/**
 * (e) Anchoring: gas from the anchor records, arrival → confirmed anchor from each stored
 * frame's received_at and its batch's confirmation time, proof generation through the
 * gateway's HTTP API, and verification of those bundles.
 */
export async function anchoringFigures(gw: GatewayProcess, gwDir: string, influxUrl: string, complete: boolean): Promise<AnchoringFigure> {
  const store = new BatchStore(join(gwDir, 'batches'));
  const gas: number[] = [];
  const sizes: number[] = [];
  const confirmedAt = new Map<bigint, number>();
  for (let s = 1n; s <= store.lastAnchored; s++) {
    const a = store.anchorOf(s)!;
    gas.push(Number(a.gasUsed));
    sizes.push(store.get(s)!.leafCount);
    confirmedAt.set(s, a.confirmedAtMs);
  }
  const leaves = sizes.reduce((a, b) => a + b, 0);
  const sink = new InfluxSink({ url: influxUrl, database: 'vitalproof', gatewayId: 'gw-bench' });
  const frames = await sink.queryFrames();
  const waits = frames
    .filter((f) => f.batch !== undefined && confirmedAt.has(f.batch))
    .map((f) => confirmedAt.get(f.batch!)! - f.receivedAtMs)
    .sort((a, b) => a - b);

  const n = Math.min(2000, frames.length);
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${gw.httpPort}/proofs?limit=${n}`);
  const body = (await res.json()) as { export: unknown };
  const proofMs = performance.now() - t0;
  const bundles: ProofBundle[] = parseBundles(body.export);

  const endpoint = JSON.parse(readFileSync(join(gwDir, 'chain', 'endpoint.json'), 'utf8')) as { url: string };
  const provider = chainProvider(endpoint.url, bundles[0]?.anchor.chainId ?? 31337, 100);
  const sample = bundles.slice(0, 300);
  let allOk = true;
  const cache = new VerifyCache();
  let t = performance.now();
  for (const b of sample) allOk = (await verifyBundle(b, { provider, cache })).ok && allOk;
  const onlineUs = ((performance.now() - t) * 1000) / Math.max(1, sample.length);
  // Without the cache: every bundle pays its anchor and device look-ups (a verifier with one bundle).
  const firsts = sample.slice(0, 50);
  t = performance.now();
  for (const b of firsts) allOk = (await verifyBundle(b, { provider })).ok && allOk;
  const firstUs = ((performance.now() - t) * 1000) / Math.max(1, firsts.length);
  const offlineCache = new VerifyCache();
  t = performance.now();
  for (const b of sample) await verifyBundle(b, { offline: true, cache: offlineCache });
  const offlineUs = ((performance.now() - t) * 1000) / Math.max(1, sample.length);
  provider.destroy();

  const sorted = [...sizes].sort((a, b) => a - b);
  return {
    complete: complete && store.pendingAnchors === 0,
    batchIntervalMs: 10_000,
    batches: gas.length,
    leaves,
    leavesPerBatch: { min: sorted[0] ?? 0, median: sorted[Math.floor(sorted.length / 2)] ?? 0, max: sorted[sorted.length - 1] ?? 0 },
    gasPerAnchor: {
      mean: Math.round(gas.reduce((a, b) => a + b, 0) / Math.max(1, gas.length)),
      min: Math.min(...gas),
      max: Math.max(...gas),
      first: gas[0] ?? 0,
    },
    gasPerMillionFrames: Math.round((gas.reduce((a, b) => a + b, 0) / Math.max(1, leaves)) * 1e6),
    arrivalToAnchorMs: { frames: waits.length, p50: percentile(waits, 50), p99: percentile(waits, 99), max: waits[waits.length - 1] ?? 0 },
    proofGeneration: { bundles: bundles.length, wallMs: Math.round(proofMs), usPerBundle: sig((proofMs * 1000) / Math.max(1, bundles.length)) },
    verify: {
      bundles: sample.length,
      onlineUsPerBundle: sig(onlineUs),
      onlineFirstOfBatchUsPerBundle: sig(firstUs),
      offlineUsPerBundle: sig(offlineUs),
      allOk,
    },
  };
}
