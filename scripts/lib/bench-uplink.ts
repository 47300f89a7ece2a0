/**
 * (h2) What the uplink costs a bedside gateway (docs/bench.md; docs/uplink.md): two gateway
 * processes configured alike (the bench's gateway of (b): embedded chain, the shared influxd),
 * one with `uplink.url` set to the hospital Mosquitto, one without. The same load, small
 * heart_rate frames from fresh devices as fast as (b) sends them, runs on each twice, in the
 * order plain, uplink, uplink, plain (a drift of the machine's load over the run cancels out).
 * The gateway's CPU per frame (/proc, all threads, as in (c)) runs until every frame is in
 * InfluxDB and, with the uplink, acknowledged by the broker. The figure is the ratio of the two.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { DynsecClient } from '../../gateway/fleet/dynsec.js';
import { addGateway, initBroker } from '../../gateway/fleet/broker.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import type { InfluxdHandle } from '../../gateway/storage/influxd.js';
import { GATEWAY_CLI, GatewayProcess } from './gateway-process.js';
import type { MosquittoHandle } from './mosquitto.js';
import { splitFrames } from './bench-frames.js';
import { e2eRun, type E2EFigure } from './bench-mqtt.js';
import { sig } from './stats.js';

export const UPLINK_DEVICES = 15;
export const UPLINK_FRAMES_PER_DEVICE = 200;
const ORDER = ['plain', 'uplink', 'uplink', 'plain'] as const;

export interface UplinkCostFigure {
  devices: number;
  framesPerRun: number;
  runs: {
    variant: 'plain' | 'uplink';
    frames: number;
    gatewayCpuS: number;
    gatewayCpuUsPerFrame: number;
    framesPerSecond: number;
    /** CPU-s other processes used during the run (proc.ts cpuWindow). */
    otherCpuS: number;
    complete: boolean;
  }[];
  plainUsPerFrame: number;
  uplinkUsPerFrame: number;
  /** The headline: gateway CPU per frame with the uplink ÷ without. */
  ratio: number;
  /** What the uplink adds per frame, µs of gateway CPU. */
  extraUsPerFrame: number;
  complete: boolean;
}

export interface UplinkGateways {
  plain: GatewayProcess;
  uplink: GatewayProcess;
  devices: Record<'plain' | 'uplink', SimDevice[][]>;
  stop(): Promise<void>;
}

/** Frames the uplink has had acknowledged by the broker, per /status. */
const uplinkPublished = (s: StatusSnapshot): number => (s.uplink?.enabled ? s.uplink.published.frames : 0);

/** Starts the two gateways (in parallel), with the uplink one's broker account made through the dynamic-security API. */
export async function startUplinkGateways(dir: string, influxUrl: string, broker: MosquittoHandle): Promise<UplinkGateways> {
  const password = randomBytes(18).toString('base64url');
  const ds = await DynsecClient.connect({ url: broker.url, ...broker.admin });
  try {
    await initBroker(ds);
    await addGateway(ds, 'gw-up', password);
  } finally {
    await ds.close();
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'gw-up.broker'), `${password}\n`, { mode: 0o600 });
  const devices = {
    plain: [0, 1].map((r) => fleetDevices(`bench-uplink-plain-${r}`, UPLINK_DEVICES, 'heart_rate')),
    uplink: [0, 1].map((r) => fleetDevices(`bench-uplink-on-${r}`, UPLINK_DEVICES, 'heart_rate')),
  };
  const start = async (name: string, sets: SimDevice[][], extra: Record<string, string>): Promise<GatewayProcess> => {
    const dataDir = join(dir, name);
    const enrol = join(dir, `${name}.json`);
    writeEnrolmentFile(enrol, sets.flat());
    await promisify(execFile)(process.execPath, [GATEWAY_CLI, 'enrol', enrol, '--dataDir', dataDir]);
    return GatewayProcess.start({ dataDir, 'influx.url': influxUrl, 'mqtt.port': 0, 'http.port': 0, gatewayId: name, ...extra });
  };
  const [plain, uplink] = await Promise.allSettled([
    start('gw-plain', devices.plain, {}),
    start('gw-up', devices.uplink, { 'uplink.url': broker.url, 'uplink.passwordFile': join(dir, 'gw-up.broker') }),
  ]);
  if (plain.status === 'rejected' || uplink.status === 'rejected') {
    for (const s of [plain, uplink]) if (s.status === 'fulfilled') await s.value.stop();
    throw (plain.status === 'rejected' ? plain.reason : (uplink as PromiseRejectedResult).reason) as Error;
  }
  return {
    plain: plain.value,
    uplink: uplink.value,
    devices,
    stop: async () => void (await Promise.all([plain.value.stop(), uplink.value.stop()])),
  };
}

/** Runs the four loads; `bareUsPerFrame` only fills e2eRun's ratio to bare verification, not used here. */
export async function uplinkCostRun(g: UplinkGateways, influxd: InfluxdHandle, window: number, log: (s: string) => void): Promise<UplinkCostFigure> {
  const used = { plain: 0, uplink: 0 };
  const runs: UplinkCostFigure['runs'] = [];
  const figs: Record<'plain' | 'uplink', E2EFigure[]> = { plain: [], uplink: [] };
  for (const variant of ORDER) {
    const devices = g.devices[variant][used[variant]++]!;
    const frames = splitFrames(devices, UPLINK_FRAMES_PER_DEVICE, ['heart_rate']);
    const gw = variant === 'plain' ? g.plain : g.uplink;
    const settled =
      variant === 'uplink' ? (s: StatusSnapshot, s0: StatusSnapshot, sent: number) => uplinkPublished(s) - uplinkPublished(s0) >= sent : undefined;
    const e = await e2eRun(gw, influxd, `${variant}`, devices, frames, ['heart_rate'], Number.NaN, window, 60_000, settled);
    figs[variant].push(e);
    runs.push({
      variant,
      frames: e.frames,
      gatewayCpuS: e.gatewayCpuS,
      gatewayCpuUsPerFrame: e.gatewayCpuUsPerFrame,
      framesPerSecond: e.framesPerSecond,
      otherCpuS: e.cpu.otherS,
      complete: e.complete,
    });
    log(`    ${variant}: ${e.frames} frames, gateway ${e.gatewayCpuUsPerFrame} µs CPU per frame`);
  }
  const per = (v: 'plain' | 'uplink'): number => (figs[v].reduce((n, e) => n + e.gatewayCpuS, 0) * 1e6) / figs[v].reduce((n, e) => n + e.frames, 0);
  const plainUs = per('plain');
  const uplinkUs = per('uplink');
  return {
    devices: UPLINK_DEVICES,
    framesPerRun: UPLINK_DEVICES * UPLINK_FRAMES_PER_DEVICE,
    runs,
    plainUsPerFrame: sig(plainUs),
    uplinkUsPerFrame: sig(uplinkUs),
    ratio: sig(uplinkUs / plainUs),
    extraUsPerFrame: sig(uplinkUs - plainUs),
    complete: runs.every((r) => r.complete),
  };
}
