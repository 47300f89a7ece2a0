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
 *
 * Everything listens on 127.0.0.1 on free ports, in a temp dir removed at the end. Every
 * loop is bounded in count and in time.
 *
 *   npm run bench -- [--devices 50] [--frames 600] [--flood-rate 500] [--flood-sources 16] [--only login-flood] [--out ./data/bench-results.json]
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type MqttClient } from 'mqtt';
import { sensorByName } from '../firmware-proto/catalogue.js';
import { makeConnectPassword } from '../firmware-proto/connect.js';
import { signFrame } from '../firmware-proto/device.js';
import { encodeBody, type FrameBody } from '../firmware-proto/frame.js';
import { concat, frameSigningMessage } from '../firmware-proto/signing.js';
import { deviceClientId, frameTopic } from '../firmware-proto/topics.js';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../device-sim/fleet.js';
import { startInfluxd, type InfluxdHandle } from '../gateway/storage/influxd.js';
import type { StatusSnapshot } from '../gateway/status/http.js';
import { positiveInt } from './lib/duration.js';
import { GATEWAY_CLI, GatewayProcess } from './lib/gateway-process.js';
import { clockTicksPerSecond, cpuWindow, machineCpuSeconds, type CpuShare } from './lib/proc.js';
import { percentile, sig } from './lib/stats.js';
import { BatchStore } from '../gateway/anchor/batch-store.js';
import { chainProvider } from '../gateway/chain/runtime.js';
import { InfluxSink } from '../gateway/storage/influx-sink.js';
import { parseBundles, type ProofBundle } from '../gateway/proof/bundle.js';
import { VerifyCache, verifyBundle } from '../gateway/proof/verify.js';
import { readFileSync } from 'node:fs';
import { startPrivateBus, type PrivateBus } from '../device-sim/bluez/bus-daemon.js';
import { runFleet } from '../device-sim/run.js';
import { LoginFlood, type FloodFigure } from './lib/login-flood.js';

// ---------------------------------------------------------------- frames

type Kind = 'heart_rate' | 'accelerometer' | 'ecg';
const KINDS: readonly Kind[] = ['heart_rate', 'accelerometer', 'ecg'];

/** Catalogue defaults: heart_rate 5 samples at 1 Hz, accelerometer 25 × (x, y, z) at 25 Hz, ecg 250 samples at 250 Hz. */
function kindSpec(kind: Kind): { code: number; scale: number; intervalUs: number; count: number; channels: number; frameMs: number } {
  const s = sensorByName(kind);
  return {
    code: s.code,
    scale: s.defaultScale,
    intervalUs: s.defaultIntervalUs,
    count: s.defaultSamplesPerFrame,
    channels: s.channels.length,
    frameMs: Math.ceil((s.defaultSamplesPerFrame * s.defaultIntervalUs) / 1000),
  };
}

/** Plausible raw samples, inside each sensor's range. */
function samplesFor(kind: Kind, n: number): Int32Array {
  const { count, channels } = kindSpec(kind);
  const out = new Int32Array(count * channels);
  for (let i = 0; i < out.length; i++) {
    const t = n * count + Math.floor(i / channels);
    if (kind === 'heart_rate') out[i] = 70 + Math.round(8 * Math.sin(t / 7));
    else if (kind === 'accelerometer') out[i] = Math.round((i % channels === 2 ? 9806 : 0) + 300 * Math.sin(t / 3 + (i % channels)));
    else out[i] = Math.round(900 * Math.sin(t / 10) * Math.exp(-((t % 200) / 40)));
  }
  return out;
}

/**
 * Signs frames for one device with node:crypto (about 9× faster than @noble/ed25519, which
 * the simulator uses). Ed25519 signatures are deterministic, so the bytes are exactly what
 * firmware-proto's signFrame makes; `checkAgainstFirmwareProto` proves it per device.
 */
class FastSigner {
  private readonly key: KeyObject;
  constructor(private readonly secretKey: Uint8Array) {
    this.key = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), secretKey]), format: 'der', type: 'pkcs8' });
  }
  sign(body: FrameBody): Buffer {
    const b = encodeBody(body);
    const raw = concat(b, sign(null, frameSigningMessage(b), this.key));
    return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  }
  checkAgainstFirmwareProto(body: FrameBody, raw: Uint8Array): void {
    if (Buffer.compare(Buffer.from(signFrame(body, this.secretKey)), Buffer.from(raw)) !== 0) throw new Error(`node:crypto and firmware-proto signFrame disagree for device ${body.deviceId}`);
  }
}

/**
 * `count` frames of one device, seq 1, 2, … in order; the kinds cycle through `kinds`. Each
 * kind's frames tile time without overlap (the gateway's TIME_OVERLAP rule) and the last one
 * ends at least two minutes before now (no CLOCK_SKEW; far inside the 7-day backlog bound).
 */
function presign(d: SimDevice, count: number, kinds: readonly Kind[]): Buffer[] {
  const signer = new FastSigner(d.keys.secretKey);
  const perKind = new Map<Kind, number>();
  for (let i = 0; i < count; i++) perKind.set(kinds[i % kinds.length]!, (perKind.get(kinds[i % kinds.length]!) ?? 0) + 1);
  const now = Date.now();
  const next = new Map<Kind, number>([...perKind].map(([k, n]) => [k, now - 120_000 - n * kindSpec(k).frameMs]));
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const kind = kinds[i % kinds.length]!;
    const s = kindSpec(kind);
    const start = next.get(kind)!;
    next.set(kind, start + s.frameMs);
    const body: FrameBody = { deviceId: d.deviceId, seq: BigInt(i + 1), timestampMs: BigInt(start), sensor: s.code, scale: s.scale, intervalUs: s.intervalUs, samples: samplesFor(kind, i) };
    const raw = signer.sign(body);
    if (i === 0) signer.checkAgainstFirmwareProto(body, raw);
    out.push(raw);
  }
  return out;
}

// ---------------------------------------------------------------- (a) bare verification

interface VerifyFigure {
  frames: string;
  frameBytes: number;
  messageBytes: number;
  verifications: number;
  wallS: number;
  perSecond: number;
  cpuUsPerVerification: number;
}

/** Verifies signed messages of the given kinds in a tight loop on this thread, like one verify worker. */
function benchVerify(kinds: readonly Kind[], label: string, seconds: number): VerifyFigure {
  const devices = fleetDevices('bench-verify', 8, 'heart_rate');
  const keys = devices.map((d) => createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), d.keys.publicKey]), format: 'der', type: 'spki' }));
  const jobs: { key: KeyObject; msg: Buffer; sig: Buffer }[] = [];
  let frameBytes = 0;
  let msgBytes = 0;
  devices.forEach((d, di) => {
    for (const [i, raw] of presign(d, 32 * kinds.length, kinds).entries()) {
      const kind = kinds[i % kinds.length]!;
      const s = kindSpec(kind);
      const bodyLen = 33 + 4 * s.count * s.channels;
      const msg = Buffer.from(frameSigningMessage(raw.subarray(0, bodyLen)));
      jobs.push({ key: keys[di]!, msg, sig: raw.subarray(bodyLen) });
      frameBytes += raw.length;
      msgBytes += msg.length;
    }
  });
  const run = (ms: number): { n: number; wallS: number; cpuUs: number } => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const end = t0 + ms;
    let n = 0;
    while (performance.now() < end) {
      for (let k = 0; k < 64; k++) {
        const j = jobs[n % jobs.length]!;
        if (!verify(null, j.msg, j.key, j.sig)) throw new Error('a valid signature did not verify');
        n++;
      }
    }
    const wallS = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    return { n, wallS, cpuUs: c.user + c.system };
  };
  run(300); // warm-up
  const r = run(seconds * 1000);
  return {
    frames: label,
    frameBytes: Math.round(frameBytes / jobs.length),
    messageBytes: Math.round(msgBytes / jobs.length),
    verifications: r.n,
    wallS: sig(r.wallS, 4),
    perSecond: Math.round(r.n / r.wallS),
    cpuUsPerVerification: sig(r.cpuUs / r.n),
  };
}

// ---------------------------------------------------------------- MQTT clients

async function connectDevice(port: number, d: SimDevice): Promise<MqttClient> {
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

async function connectAll(port: number, devices: readonly SimDevice[]): Promise<MqttClient[]> {
  const clients: MqttClient[] = [];
  try {
    for (let i = 0; i < devices.length; i += 10) clients.push(...(await Promise.all(devices.slice(i, i + 10).map((d) => connectDevice(port, d)))));
    return clients;
  } catch (e) {
    await closeAll(clients);
    throw e;
  }
}

async function closeAll(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => new Promise<void>((res) => c.end(false, {}, () => res()))));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls /status until `pred` holds or `timeoutMs` passes; returns the last snapshot and whether it held. */
async function pollStatus(gw: GatewayProcess, pred: (s: StatusSnapshot) => boolean, timeoutMs: number, everyMs = 20): Promise<{ s: StatusSnapshot; ok: boolean }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await gw.status();
    if (pred(s)) return { s, ok: true };
    if (Date.now() > deadline) return { s, ok: false };
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------- (b) + (c) end to end

interface E2EFigure {
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

function roundShare(c: CpuShare): CpuShare {
  return {
    wallS: sig(c.wallS, 4),
    processes: Object.fromEntries(Object.entries(c.processes).map(([k, v]) => [k, sig(v, 3)])),
    selfS: sig(c.selfS, 3),
    machineBusyS: sig(c.machineBusyS, 3),
    otherS: sig(c.otherS, 2),
    stealS: sig(c.stealS, 2),
  };
}

async function e2eRun(
  gw: GatewayProcess,
  influxd: InfluxdHandle,
  label: string,
  devices: readonly SimDevice[],
  frames: Buffer[][],
  kinds: readonly Kind[],
  bareUsPerFrame: number,
  window: number,
  capMs: number,
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
    const { s: s1, ok } = await pollStatus(gw, (s) => s.storage.framesWritten - s0.storage.framesWritten >= sent, 90_000);
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

interface LatencyFigure {
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

async function latencyRun(gw: GatewayProcess, influxd: InfluxdHandle, devices: readonly SimDevice[], frames: Buffer[][], ratePerS: number, warmupMs: number, window: number): Promise<LatencyFigure> {
  const total = frames.reduce((n, f) => n + f.length, 0);
  const clients = await connectAll(gw.mqttPort, devices);
  try {
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
      clients[ci]!.publish(frameTopic(devices[ci]!.deviceId), payload, { qos: 1 }, (err) => {
        latencies[slot] = performance.now() - publishedAt[slot]!;
        inflight[ci]!--;
        if (err) errors++;
        settled++;
        const w = waiting[ci]!.shift();
        if (w !== undefined) publish(ci, w);
        if (settled === total) done();
      });
    };
    const cpu = cpuWindow({ gateway: gw.pid, influxd: influxd.pid });
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
    const capped = await Promise.race([finished.then(() => false), new Promise<boolean>((res) => (capTimer = setTimeout(() => res(true), 30_000)))]);
    clearTimeout(capTimer);
    const share = cpu();
    const from = Math.min(measuredFrom, total);
    const measured = Array.from(latencies.subarray(from, settled)).sort((a, b) => a - b);
    return {
      targetPerSecond: Math.round(ratePerS),
      achievedPerSecond: Math.round((total * 1000) / (lastPublish - t0)),
      devices: devices.length,
      publishedS: sig((lastPublish - t0) / 1000, 3),
      frames: total,
      measured: measured.length,
      warmupS: warmupMs / 1000,
      deferred,
      p50Ms: sig(percentile(measured, 50)),
      p90Ms: sig(percentile(measured, 90)),
      p95Ms: sig(percentile(measured, 95)),
      p99Ms: sig(percentile(measured, 99)),
      maxMs: sig(measured[measured.length - 1] ?? Number.NaN),
      errors: errors + (capped ? total - settled : 0),
      cpu: roundShare(share),
    };
  } finally {
    await closeAll(clients);
  }
}

// ---------------------------------------------------------------- main

function splitFrames(devices: readonly SimDevice[], perDevice: number, kinds: readonly Kind[]): Buffer[][] {
  return devices.map((d) => presign(d, perDevice, kinds));
}

function fmt(n: number | null, digits = 0): string {
  if (n === null || !Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ');
}

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
    console.log('usage: npm run bench -- [--devices 50] [--frames 600 (small frames per device; the mix sends a third)] [--flood-rate 500 (forged logins/s in (g))] [--flood-sources 16 (their loopback addresses)] [--only login-flood] [--out ./data/bench-results.json]');
    return 0;
  }
  const nDevices = positiveInt('devices', v.devices);
  const perDevice = positiveInt('frames', v.frames);
  const outFile = resolve(v.out);
  const floodRate = positiveInt('flood-rate', v['flood-rate']);
  const floodSources = positiveInt('flood-sources', v['flood-sources']);
  if (floodSources > 254) throw new Error(`--flood-sources is at most 254 (127.0.2.1 … 127.0.2.254), got ${floodSources}`);
  if (v.only !== undefined && v.only !== 'login-flood') throw new Error(`--only takes login-flood, got "${v.only}"`);
  if (v.only === 'login-flood') return onlyLoginFlood(nDevices, floodRate, floodSources, outFile);
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
  if (idleBusy > 0.2) log(`WARNING: the machine was already busy (${idleBusy} CPU-s in the last second, before the bench started anything): figures will be low`);

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
    gw = await GatewayProcess.start({ dataDir: gwDir, 'influx.url': influxd.url, 'mqtt.port': 0, 'http.port': 0, gatewayId: 'gw-bench', 'ble.mode': 'on', 'ble.scanIntervalMs': 200 }, { DBUS_SYSTEM_BUS_ADDRESS: bus.address });

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
    log(`    ${fmt(ble.framesPerSecond)} frames/s acknowledged; gateway ${fmt(ble.gatewayCpuUsPerFrame)} µs CPU per frame, ${fmt(ble.ratioToMqtt, 2)} × an MQTT frame's`);
    log(`(g) login flood: honest devices paced at ${fmt(rate / 2)} frames/s, without and then with ${floodRate} forged logins/s ...`);
    const loginFlood = await loginFloodRun(gw, influxd, { base: floodFleets.base, attack: floodFleets.attack }, rate / 2, floodRate, floodSources, WINDOW);
    log(`    PUBACK p50 ${fmt(loginFlood.baseline.p50Ms, 1)} → ${fmt(loginFlood.underFlood.p50Ms, 1)} ms (× ${fmt(loginFlood.ratioP50, 2)}), p95 ${fmt(loginFlood.baseline.p95Ms, 1)} → ${fmt(loginFlood.underFlood.p95Ms, 1)} ms (× ${fmt(loginFlood.ratioP95, 2)})`);
    const problems = gw.problems();

    const results = {
      version: 1,
      machine,
      settings: { devices: nDevices, inFlightPerDevice: WINDOW, gatewayVerifyWorkers: 2, storageBatchFrames: 1000, note: 'gateway defaults except data dir, ports and influx.url' },
      verify: verifyFigures,
      endToEnd: [e2eSmall, e2eMix],
      latency,
      anchoring,
      ble,
      loginFlood,
      gatewayWarnings: problems.slice(0, 20),
      finalStatus: settledS.s,
      benchSeconds: Math.round((Date.now() - benchStarted) / 1000),
    };
    mkdirSync(dirname(outFile), { recursive: true });
    writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
    print(results);
    console.log(`\nwritten to ${outFile}`);
    const ok = e2eSmall.complete && e2eMix.complete && latency.errors === 0 && ble.complete && loginFlood.baseline.errors === 0 && loginFlood.underFlood.errors === 0;
    if (!ok) console.log('WARNING: a run did not complete (see "complete" and "errors" in the JSON)');
    const busy = [e2eSmall.cpu, e2eMix.cpu, latency.cpu].filter((c) => c.otherS > 0.1 * machine.cpus * c.wallS);
    if (busy.length) console.log(`WARNING: other processes used more than 10 % of the machine's CPU during ${busy.length} of the 3 runs (OTHER above): those figures understate this gateway`);
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

interface Results {
  machine: { date: string; cpus: number; cpuModel: string; node: string; os: string; loadAverageAtStart: number[]; influxd: string };
  verify: VerifyFigure[];
  endToEnd: E2EFigure[];
  latency: LatencyFigure;
  anchoring: AnchoringFigure;
  ble: BleFigure;
  loginFlood: LoginFloodFigure;
  benchSeconds: number;
}

// ---------------------------------------------------------------- (g) login flood

interface LoginFloodFigure {
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
function loginFloodFleets(n: number): { base: SimDevice[]; attack: SimDevice[]; warm: SimDevice[] } {
  return { base: fleetDevices('bench-flood-base', n, 'heart_rate'), attack: fleetDevices('bench-flood-attack', n, 'heart_rate'), warm: fleetDevices('bench-flood-warm', n, 'heart_rate') };
}

async function loginFloodRun(gw: GatewayProcess, influxd: InfluxdHandle, fleets: { base: SimDevice[]; attack: SimDevice[]; warm?: SimDevice[] }, rate: number, floodRate: number, floodSources: number, window: number): Promise<LoginFloodFigure> {
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
    Object.fromEntries(Object.keys(a).map((k) => [k, (a[k] ?? 0) - (b[k] ?? 0)]).filter(([, n]) => (n as number) > 0));
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
    gatewayCpuUsPerForgedLogin: sig((((underFlood.cpu.processes['gateway'] ?? 0) - (baseline.cpu.processes['gateway'] ?? 0)) * 1e6) / Math.max(1, floodFigure.requests)),
  };
}

function printLoginFlood(g: LoginFloodFigure, out: string[]): void {
  out.push(`(g) login flood: honest PUBACK latency, ${g.devices} clients paced at ${fmt(g.honestPerSecond)} frames/s, without and with ${fmt(g.flood.achievedPerSecond)} forged logins/s (target ${g.flood.targetPerSecond}) from ${g.flood.sources} sources`);
  const w = [14, 10, 10, 10, 10, 10];
  out.push(row(['run', 'measured', 'p50 ms', 'p95 ms', 'p99 ms', 'errors'], w));
  out.push(row(['baseline', fmt(g.baseline.measured), fmt(g.baseline.p50Ms, 1), fmt(g.baseline.p95Ms, 1), fmt(g.baseline.p99Ms, 1), g.baseline.errors], w));
  out.push(row(['under flood', fmt(g.underFlood.measured), fmt(g.underFlood.p50Ms, 1), fmt(g.underFlood.p95Ms, 1), fmt(g.underFlood.p99Ms, 1), g.underFlood.errors], w));
  out.push(`  RATIO under flood ÷ baseline: p50 × ${fmt(g.ratioP50, 2)}, p95 × ${fmt(g.ratioP95, 2)} (issue #10 before the fix: p50 2 → 166 ms, p95 6 → 248 ms at 435 logins/s)`);
  out.push(`  flood answers: ${Object.entries(g.flood.byCode).map(([k, n]) => `${k} ${n}`).join(', ')}${g.flood.failed ? `, no answer ${g.flood.failed}` : ''}; signature recoveries by the gateway during the run: ${g.recoveries}`);
  out.push(`  gateway CPU per forged login: ${fmt(g.gatewayCpuUsPerForgedLogin, 0)} µs (flood run's gateway CPU − baseline's, ÷ logins sent)`);
  out.push(`  ${cpuLine('baseline run', g.baseline.cpu)}`);
  out.push(`  ${cpuLine('flood run', g.underFlood.cpu)}`);
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
    const out: string[] = [`VitalProof bench (g) only, ${new Date().toISOString()}, load average at start ${loadavg().map((x) => sig(x, 2)).join(' ')}`];
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

/** BLE wearables in one run. */
const BLE_DEVICES = 20;

interface BleFigure {
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
async function bleRun(gw: GatewayProcess, influxd: InfluxdHandle, bus: PrivateBus, perDevice: number, mqttUsPerFrame: number): Promise<BleFigure> {
  const cpu = cpuWindow({ gateway: gw.pid, influxd: influxd.pid, dbusDaemon: bus.pid });
  const report = await runFleet({ transport: 'ble', ble: { busAddress: bus.address, mtu: 247 }, devices: BLE_DEVICES, seed: 'bench-ble', sensors: 'heart_rate', frames: perDevice, drainTimeoutMs: 120_000 });
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

interface AnchoringFigure {
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
async function anchoringFigures(gw: GatewayProcess, gwDir: string, influxUrl: string, complete: boolean): Promise<AnchoringFigure> {
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
  const waits = frames.filter((f) => f.batch !== undefined && confirmedAt.has(f.batch)).map((f) => confirmedAt.get(f.batch!)! - f.receivedAtMs).sort((a, b) => a - b);

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
    gasPerAnchor: { mean: Math.round(gas.reduce((a, b) => a + b, 0) / Math.max(1, gas.length)), min: Math.min(...gas), max: Math.max(...gas), first: gas[0] ?? 0 },
    gasPerMillionFrames: Math.round((gas.reduce((a, b) => a + b, 0) / Math.max(1, leaves)) * 1e6),
    arrivalToAnchorMs: { frames: waits.length, p50: percentile(waits, 50), p99: percentile(waits, 99), max: waits[waits.length - 1] ?? 0 },
    proofGeneration: { bundles: bundles.length, wallMs: Math.round(proofMs), usPerBundle: sig((proofMs * 1000) / Math.max(1, bundles.length)) },
    verify: { bundles: sample.length, onlineUsPerBundle: sig(onlineUs), onlineFirstOfBatchUsPerBundle: sig(firstUs), offlineUsPerBundle: sig(offlineUs), allOk },
  };
}

function cpuLine(label: string, c: CpuShare): string {
  const p = c.processes;
  return `${label}: ${fmt(c.wallS, 1)} s wall; gateway ${fmt(p['gateway'] ?? Number.NaN, 1)}, influxd ${fmt(p['influxd'] ?? Number.NaN, 1)}, bench clients ${fmt(c.selfS, 1)}, OTHER processes ${fmt(c.otherS, 1)}, steal ${fmt(c.stealS, 1)}`;
}

function print(r: Results): void {
  const m = r.machine;
  const out: string[] = [];
  out.push(`VitalProof bench, ${m.date}`);
  out.push(`machine: ${m.cpus} CPUs (${m.cpuModel}), Node ${m.node}, ${m.os}, ${m.influxd}, load average at start ${m.loadAverageAtStart.join(' ')}`);
  out.push('');
  out.push('(a) bare node:crypto Ed25519 verify, one core, cached KeyObject');
  let w = [30, 8, 8, 10, 14];
  out.push(row(['frames', 'frame B', 'msg B', 'verify/s', 'CPU µs/verify'], w));
  for (const f of r.verify) out.push(row([f.frames, f.frameBytes, f.messageBytes, fmt(f.perSecond), fmt(f.cpuUsPerVerification, 1)], w));
  out.push('');
  const e0 = r.endToEnd[0]!;
  out.push(`(b) gateway end to end: ${e0.devices} MQTT clients, QoS 1, ≤ ${e0.inFlightPerDevice} in flight each, until every PUBACK arrived and every frame is in InfluxDB`);
  w = [36, 8, 8, 12, 12, 12, 12];
  out.push(row(['case', 'frames', 'frame B', 'all acked s', 'stored s', 'acked/s', 'FRAMES/S'], w));
  for (const e of r.endToEnd) out.push(row([e.case + (e.complete ? '' : ' (INCOMPLETE)'), fmt(e.frames), e.frameBytes, fmt(e.allAckedS, 2), fmt(e.allStoredS, 2), fmt(e.framesPerSecondAcked), fmt(e.framesPerSecond)], w));
  out.push('');
  out.push('(c) gateway process CPU per frame (utime+stime from /proc, all threads) ÷ bare verify CPU per frame (a)');
  w = [36, 10, 12, 12, 16, 14, 14];
  out.push(row(['case', 'gw CPU s', 'gw µs/frame', 'bare µs', 'RATIO (≤ 1.5)', 'influxd µs/fr', 'client µs/fr'], w));
  for (const e of r.endToEnd) out.push(row([e.case, fmt(e.gatewayCpuS, 2), fmt(e.gatewayCpuUsPerFrame, 0), fmt(e.bareVerifyCpuUsPerFrame, 0), fmt(e.cpuRatio, 2), fmt(e.influxdCpuUsPerFrame, 0), fmt(e.benchClientCpuUsPerFrame, 0)], w));
  out.push(`CPU seconds used during each run (${m.cpus} CPUs: ${m.cpus} CPU-s available per wall second):`);
  for (const e of r.endToEnd) out.push(`  ${cpuLine(e.case, e.cpu)}`);
  out.push(`  ${cpuLine('(d) latency run', r.latency.cpu)}`);
  out.push('');
  const l = r.latency;
  out.push(`(d) publish-to-PUBACK latency, heart_rate frames paced at half of (b)'s small-frame rate, ${l.devices} clients`);
  w = [12, 12, 10, 10, 10, 10, 10, 10];
  out.push(row(['target/s', 'achieved/s', 'measured', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'deferred'], w));
  out.push(row([fmt(l.targetPerSecond), fmt(l.achievedPerSecond), fmt(l.measured), fmt(l.p50Ms, 1), fmt(l.p90Ms, 1), fmt(l.p99Ms, 1), fmt(l.maxMs, 1), l.deferred], w));
  out.push('');
  const a = r.anchoring;
  out.push(`(e) anchoring (embedded anvil, default ${a.batchIntervalMs / 1000} s batches)${a.complete ? '' : ' (INCOMPLETE: batches still waiting)'}`);
  out.push(`  ${a.batches} anchors for ${a.leaves} frames (frames per batch min ${a.leavesPerBatch.min} median ${a.leavesPerBatch.median} max ${a.leavesPerBatch.max})`);
  out.push(`  gas per anchor: mean ${fmt(a.gasPerAnchor.mean)} (first ${fmt(a.gasPerAnchor.first)}, min ${fmt(a.gasPerAnchor.min)}, max ${fmt(a.gasPerAnchor.max)}); gas per million frames at these batch sizes: ${fmt(a.gasPerMillionFrames)}`);
  out.push(`  frame arrival → its batch's anchor confirmed: p50 ${fmt(a.arrivalToAnchorMs.p50)} ms, p99 ${fmt(a.arrivalToAnchorMs.p99)} ms, max ${fmt(a.arrivalToAnchorMs.max)} ms (${a.arrivalToAnchorMs.frames} frames)`);
  out.push(`  proof generation (GET /proofs, ${a.proofGeneration.bundles} bundles): ${fmt(a.proofGeneration.usPerBundle, 1)} µs per bundle`);
  out.push(`  verify per bundle: ${fmt(a.verify.onlineUsPerBundle, 0)} µs online with a per-batch cache, ${fmt(a.verify.onlineFirstOfBatchUsPerBundle, 0)} µs online without, ${fmt(a.verify.offlineUsPerBundle, 0)} µs offline (${a.verify.bundles} bundles, ${a.verify.allOk ? 'all ok' : 'SOME FAILED'})`);
  out.push('');
  const b = r.ble;
  out.push(`(f) BLE: ${b.devices} simulated wearables over the simulated BlueZ (private dbus-daemon), ATT_MTU ${b.mtu}, one notification per heart_rate frame${b.complete ? '' : ' (INCOMPLETE)'}`);
  out.push(`  ${fmt(b.frames)} frames in ${fmt(b.wallS, 2)} s: ${fmt(b.framesPerSecond)} frames/s acknowledged`);
  out.push(`  gateway CPU ${fmt(b.gatewayCpuUsPerFrame)} µs per frame = ${fmt(b.ratioToMqtt, 2)} × an MQTT small frame (b); simulator ${fmt(b.simulatorCpuUsPerFrame)} µs, dbus-daemon ${fmt(b.dbusDaemonCpuUsPerFrame)} µs per frame`);
  out.push(`  ${cpuLine('(f) BLE run', b.cpu)}`);
  out.push('');
  printLoginFlood(r.loginFlood, out);
  out.push('');
  out.push(`bench took ${r.benchSeconds} s`);
  console.log(out.join('\n'));
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
