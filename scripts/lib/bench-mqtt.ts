/**
 * The bench's MQTT runs against the real gateway process: figures (b) and (c), end to end
 * with CPU shares, and (d), publish-to-PUBACK latency (docs/bench.md).
 */
import { connect, type MqttClient } from 'mqtt';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import { deviceClientId, frameTopic } from '../../firmware-proto/topics.js';
import { type SimDevice } from '../../device-sim/fleet.js';
import { type InfluxdHandle } from '../../gateway/storage/influxd.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import { GatewayProcess } from './gateway-process.js';
import { cpuWindow, type CpuShare } from './proc.js';
import { percentile, sig } from './stats.js';
import { type Kind, kindSpec } from './bench-frames.js';

// ---------------------------------------------------------------- MQTT clients

export async function connectDevice(port: number, d: SimDevice): Promise<MqttClient> {
  const clientId = deviceClientId(d.deviceId);
  const client = connect(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 4,
    clean: true,
    clientId,
    username: d.deviceId,
    password: Buffer.from(makeConnectPassword(d.deviceId, clientId, d.keys.secretKey)),
    reconnectPeriod: 0,
    connectTimeout: 15_000,
    keepalive: 60,
  });
  await new Promise<void>((res, rej) => {
    client.once('connect', () => res());
    client.once('error', (e) => rej(new Error(`device ${d.deviceId} could not connect: ${e.message}`)));
    client.once('close', () => rej(new Error(`device ${d.deviceId}: connection closed before CONNACK`)));
  });
  return client;
}

export async function connectAll(port: number, devices: readonly SimDevice[]): Promise<MqttClient[]> {
  const clients: MqttClient[] = [];
  try {
    for (let i = 0; i < devices.length; i += 10) clients.push(...(await Promise.all(devices.slice(i, i + 10).map((d) => connectDevice(port, d)))));
    return clients;
  } catch (e) {
    await closeAll(clients);
    throw e;
  }
}

export async function closeAll(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => new Promise<void>((res) => c.end(false, {}, () => res()))));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls /status until `pred` holds or `timeoutMs` passes; returns the last snapshot and whether it held. */
export async function pollStatus(
  gw: GatewayProcess,
  pred: (s: StatusSnapshot) => boolean,
  timeoutMs: number,
  everyMs = 20,
): Promise<{ s: StatusSnapshot; ok: boolean }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await gw.status();
    if (pred(s)) return { s, ok: true };
    if (Date.now() > deadline) return { s, ok: false };
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------- (b) + (c) end to end

export interface E2EFigure {
  case: string;
  devices: number;
  framesPerDevice: number;
  frames: number;
  /** Mean bytes per frame on the wire (MQTT payload). */
  frameBytes: number;
  pointsPerFrame: number;
  inFlightPerDevice: number;
  allAckedS: number;
  allStoredS: number;
  framesPerSecondAcked: number;
  /** The headline: frames per second until every frame was acknowledged and in InfluxDB. */
  framesPerSecond: number;
  complete: boolean;
  accepted: number;
  rejected: number;
  gatewayCpuS: number;
  gatewayCpuUsPerFrame: number;
  bareVerifyCpuUsPerFrame: number;
  /** (c): gateway CPU per frame ÷ bare verification CPU per frame. */
  cpuRatio: number;
  influxdCpuUsPerFrame: number | null;
  benchClientCpuUsPerFrame: number;
  /** Where the machine's CPU went during the run, including load from other processes. */
  cpu: CpuShare;
}

export function roundShare(c: CpuShare): CpuShare {
  return {
    wallS: sig(c.wallS, 4),
    processes: Object.fromEntries(Object.entries(c.processes).map(([k, v]) => [k, sig(v, 3)])),
    selfS: sig(c.selfS, 3),
    machineBusyS: sig(c.machineBusyS, 3),
    otherS: sig(c.otherS, 2),
    stealS: sig(c.stealS, 2),
  };
}

export async function e2eRun(
  gw: GatewayProcess,
  influxd: InfluxdHandle,
  label: string,
  devices: readonly SimDevice[],
  frames: Buffer[][],
  kinds: readonly Kind[],
  bareUsPerFrame: number,
  window: number,
  capMs: number,
  /** Also wait for this before the clock stops (the uplink's broker acknowledgements, in (h2)). */
  settled?: (s: StatusSnapshot, s0: StatusSnapshot, sent: number) => boolean,
): Promise<E2EFigure> {
  const total = frames.reduce((n, f) => n + f.length, 0);
  const clients = await connectAll(gw.mqttPort, devices);
  try {
    const s0 = await gw.status();
    const influxPid = influxd.pid;
    const cpu = cpuWindow({ gateway: gw.pid, influxd: influxPid });
    const t0 = performance.now();
    let acked = 0;
    let errors = 0;
    let stopped = false;
    const published = new Array<number>(clients.length).fill(0);
    const outstandingOf = new Array<number>(clients.length).fill(0);
    let done!: () => void;
    const allAcked = new Promise<void>((res) => (done = res));
    let outstanding = 0;
    clients.forEach((client, ci) => {
      const mine = frames[ci]!;
      const topic = frameTopic(devices[ci]!.deviceId);
      let next = 0;
      const pump = (): void => {
        while (!stopped && next < mine.length && outstandingOf[ci]! < window) {
          const payload = mine[next++]!;
          outstandingOf[ci]!++;
          outstanding++;
          published[ci]!++;
          client.publish(topic, payload, { qos: 1 }, (err) => {
            outstandingOf[ci]!--;
            outstanding--;
            if (err) errors++;
            else acked++;
            if (acked + errors === total || (stopped && outstanding === 0)) done();
            else pump();
          });
        }
      };
      pump();
    });
    const cap = setTimeout(() => {
      stopped = true;
      if (outstanding === 0) done();
    }, capMs);
    await allAcked;
    clearTimeout(cap);
    const tAck = performance.now();
    const sent = published.reduce((a, b) => a + b, 0);
    const { s: s1, ok } = await pollStatus(gw, (s) => s.storage.framesWritten - s0.storage.framesWritten >= sent && (settled?.(s, s0, sent) ?? true), 90_000);
    const tStored = performance.now();
    const share = cpu();
    const gwCpu = share.processes['gateway']!;
    const inCpu = influxd.pid === influxPid ? share.processes['influxd'] : undefined;
    const accepted = s1.frames.accepted - s0.frames.accepted;
    const rejected = s1.frames.rejected - s0.frames.rejected;
    const bytes = frames.reduce((n, f) => n + f.reduce((m, b) => m + b.length, 0), 0);
    const points = kinds.reduce((n, k) => n + kindSpec(k).count, 0) / kinds.length + 1;
    const gwUs = (gwCpu * 1e6) / sent;
    return {
      case: label,
      devices: devices.length,
      framesPerDevice: frames[0]!.length,
      frames: sent,
      frameBytes: Math.round(bytes / total),
      pointsPerFrame: sig(points),
      inFlightPerDevice: window,
      allAckedS: sig((tAck - t0) / 1000, 4),
      allStoredS: sig((tStored - t0) / 1000, 4),
      framesPerSecondAcked: Math.round((acked * 1000) / (tAck - t0)),
      framesPerSecond: Math.round((sent * 1000) / (tStored - t0)),
      complete: ok && !stopped && errors === 0 && acked === total && accepted === total,
      accepted,
      rejected,
      gatewayCpuS: sig(gwCpu, 4),
      gatewayCpuUsPerFrame: sig(gwUs),
      bareVerifyCpuUsPerFrame: sig(bareUsPerFrame),
      cpuRatio: sig(gwUs / bareUsPerFrame),
      influxdCpuUsPerFrame: inCpu === undefined ? null : sig((inCpu * 1e6) / sent),
      benchClientCpuUsPerFrame: sig((share.selfS * 1e6) / sent),
      cpu: roundShare(share),
    };
  } finally {
    await closeAll(clients);
  }
}
// ---------------------------------------------------------------- (d) latency

export interface LatencyFigure {
  targetPerSecond: number;
  achievedPerSecond: number;
  devices: number;
  publishedS: number;
  frames: number;
  measured: number;
  warmupS: number;
  /** Publishes that had to wait for a free in-flight slot (0 means pacing was never held back). */
  deferred: number;
  p50Ms: number;
  p90Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  cpu: CpuShare;
}

/** What pacedPublish saw: per slot (publish order), when it was published and how long its PUBACK took. */
export interface PacedResult {
  /** performance.now() of each slot's publish() call. Slot s is frame ⌊s / clients⌋ of client s mod clients. */
  publishedAt: Float64Array;
  /** publish() to PUBACK callback, ms. */
  latencies: Float64Array;
  /** The first slot published after the warm-up. */
  measuredFrom: number;
  settled: number;
  errors: number;
  deferred: number;
  /** The publishing clock: first due publish and the last one. */
  t0: number;
  lastPublish: number;
}

/**
 * Publishes every client's frames at QoS 1 at a steady total rate, round-robin over the clients,
 * scheduled every millisecond, each client keeping at most `window` publishes in flight (more wait
 * their turn, counted as deferred). Resolves once every PUBACK came or `capMs` after the last
 * publish (unsettled slots then count as errors). Every client must have the same number of frames.
 */
export async function pacedPublish(
  clients: readonly MqttClient[],
  topics: readonly string[],
  frames: readonly (readonly Buffer[])[],
  ratePerS: number,
  warmupMs: number,
  window: number,
  capMs = 30_000,
): Promise<PacedResult> {
  const total = frames.reduce((n, f) => n + f.length, 0);
  const latencies = new Float64Array(total);
  const publishedAt = new Float64Array(total);
  let measuredFrom = Number.POSITIVE_INFINITY;
  let sent = 0;
  let settled = 0;
  let errors = 0;
  let deferred = 0;
  const inflight = new Array<number>(clients.length).fill(0);
  const waiting: number[][] = clients.map(() => []);
  const nextOf = new Array<number>(clients.length).fill(0);
  let done!: () => void;
  const finished = new Promise<void>((res) => (done = res));
  const publish = (ci: number, slot: number): void => {
    const payload = frames[ci]![nextOf[ci]!++]!;
    inflight[ci]!++;
    publishedAt[slot] = performance.now();
    clients[ci]!.publish(topics[ci]!, payload, { qos: 1 }, (err) => {
      latencies[slot] = performance.now() - publishedAt[slot]!;
      inflight[ci]!--;
      if (err) errors++;
      settled++;
      const w = waiting[ci]!.shift();
      if (w !== undefined) publish(ci, w);
      if (settled === total) done();
    });
  };
  const t0 = performance.now();
  let lastPublish = t0;
  await new Promise<void>((res) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor((ratePerS * (performance.now() - t0)) / 1000));
      while (sent < due) {
        const slot = sent++;
        const ci = slot % clients.length;
        if (measuredFrom === Number.POSITIVE_INFINITY && performance.now() - t0 >= warmupMs) measuredFrom = slot;
        if (inflight[ci]! < window) publish(ci, slot);
        else {
          deferred++;
          waiting[ci]!.push(slot);
        }
      }
      lastPublish = performance.now();
      if (sent >= total) res();
      else setTimeout(tick, 1);
    };
    tick();
  });
  let capTimer: NodeJS.Timeout | undefined;
  const capped = await Promise.race([finished.then(() => false), new Promise<boolean>((res) => (capTimer = setTimeout(() => res(true), capMs)))]);
  clearTimeout(capTimer);
  return {
    publishedAt,
    latencies,
    measuredFrom: Math.min(measuredFrom, total),
    settled,
    errors: errors + (capped ? total - settled : 0),
    deferred,
    t0,
    lastPublish,
  };
}

export async function latencyRun(
  gw: GatewayProcess,
  influxd: InfluxdHandle,
  devices: readonly SimDevice[],
  frames: Buffer[][],
  ratePerS: number,
  warmupMs: number,
  window: number,
): Promise<LatencyFigure> {
  const total = frames.reduce((n, f) => n + f.length, 0);
  const clients = await connectAll(gw.mqttPort, devices);
  try {
    const cpu = cpuWindow({ gateway: gw.pid, influxd: influxd.pid });
    const topics = devices.map((d) => frameTopic(d.deviceId));
    const r = await pacedPublish(clients, topics, frames, ratePerS, warmupMs, window);
    const share = cpu();
    const measured = Array.from(r.latencies.subarray(r.measuredFrom, r.settled)).sort((a, b) => a - b);
    return {
      targetPerSecond: Math.round(ratePerS),
      achievedPerSecond: Math.round((total * 1000) / (r.lastPublish - r.t0)),
      devices: devices.length,
      publishedS: sig((r.lastPublish - r.t0) / 1000, 3),
      frames: total,
      measured: measured.length,
      warmupS: warmupMs / 1000,
      deferred: r.deferred,
      p50Ms: sig(percentile(measured, 50)),
      p90Ms: sig(percentile(measured, 90)),
      p95Ms: sig(percentile(measured, 95)),
      p99Ms: sig(percentile(measured, 99)),
      maxMs: sig(measured[measured.length - 1] ?? Number.NaN),
      errors: r.errors,
      cpu: roundShare(share),
    };
  } finally {
    await closeAll(clients);
  }
}
