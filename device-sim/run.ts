/**
 * Runs a fleet of simulated wearables against an MQTT broker, or as BLE peripherals of a
 * simulated BlueZ on a D-Bus bus (bluez/), in process: the programmatic face of `vp-sim run`,
 * for tests and the demo.
 *
 * A run has two phases. Production: each wearable records frames until its pace is done
 * (`frames`), the duration ends, or `signal` aborts. Drain: the run waits, at most
 * `drainTimeoutMs`, until every frame is acknowledged and every fault's outcome is known,
 * then disconnects and persists each device's state (with the frames still unacknowledged,
 * which the next run sends first). The report then says what the gateway must show (see
 * tally.ts).
 */
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceCore, SequenceCounter } from '../firmware-proto/device.js';
import { notificationBytes } from '../firmware-proto/fragment.js';
import { startSimulatedBluez, type SimulatedBluez } from './bluez/service.js';
import { BleLink } from './ble-link.js';
import { addRogueWearable, type RogueWearable } from './ble-rogue.js';
import { scaledClock } from './clock.js';
import { FaultTally, type FaultReport } from './tally.js';
import { checkFaultsForTransport, parseFaultRates, type FaultKind, type FaultRates } from './faults.js';
import { fleetDevices, rogueDevice, type SimDevice } from './fleet.js';
import type { FrameLink, LinkCounters, Transport } from './link.js';
import { checkBrokerUrl, connectOnce, MqttLink, type MqttTlsMaterial } from './mqtt-link.js';
import { Patient } from './physiology.js';
import { Rng } from './rng.js';
import { FileDeviceState, MemoryDeviceState, type DeviceState } from './state-store.js';
import { clockWaitMs, Wearable, type FaultEvent, type Pace } from './wearable.js';

/** A BLE run: the fleet's peripherals on one simulated BlueZ, started for the run and closed after it. */
export interface BleFleetOptions {
  /** The D-Bus bus to serve `org.bluez` on (a private bus, bluez/bus-daemon.ts); the gateway's DBUS_SYSTEM_BUS_ADDRESS. */
  busAddress: string;
  /**
   * A simulated BlueZ already serving on `busAddress`, to share with other runs at the same time
   * (the `org.bluez` name is exclusive: two runs cannot each start one on a bus). The run adds its
   * peripherals to it and removes them at the end, and leaves it open; its own BlueZ options
   * (temporaryTimeoutMs, connectTimeoutMs, scanIntervalMs) are ignored. Without it the run starts
   * a BlueZ and closes it at the end.
   */
  bluez?: SimulatedBluez;
  /** ATT_MTU of every connection; default 247. */
  mtu?: number;
  /** Pause after each notification (slow notifications); default 0. */
  notifyDelayMs?: number;
  /** Wearables start advertising at seeded moments spread over this window; default 0 (all at once). */
  appearOverMs?: number;
  /** BlueZ's TemporaryTimeout; default 30 s. */
  temporaryTimeoutMs?: number;
  /** A connection attempt to an unreachable wearable fails after this long; default 2 s. */
  connectTimeoutMs?: number;
  /** How often a discovery refreshes RSSI; default 1 s. */
  scanIntervalMs?: number;
  /** How long the out_of_range fault keeps a wearable unreachable, ms [min, max]; default [1000, 5000]. */
  outOfRangeMs?: [number, number];
  /** How long the vanish fault keeps a wearable away, ms [min, max]; default [1000, 5000]. */
  vanishMs?: [number, number];
  /** Non-enrolled wearables advertising alongside the fleet (keys from the seed); the report tells whether a central subscribed to them. */
  rogues?: number;
}

/**
 * TLS for a fleet: `ca` (and one `cert`/`key` for every device), or `clientCertsDir`, a
 * directory with each device's own certificate as client-<deviceId>.crt and .key (the layout
 * of gateway/tls/dev-ca.ts): a gateway with mutual TLS requires CN = the device id.
 */
export interface FleetTlsOptions extends MqttTlsMaterial {
  clientCertsDir?: string;
}

/** One device's TLS material from the fleet's. @throws Error when its certificate files cannot be read. */
function deviceTls(t: FleetTlsOptions | undefined, deviceId: string): MqttTlsMaterial | undefined {
  if (!t) return undefined;
  const { clientCertsDir, ...material } = t;
  if (!clientCertsDir) return material;
  return { ...material, cert: readFileSync(join(clientCertsDir, `client-${deviceId}.crt`)), key: readFileSync(join(clientCertsDir, `client-${deviceId}.key`)) };
}

export interface FleetOptions {
  /** Default mqtt. */
  transport?: Transport;
  /** MQTT: e.g. mqtt://127.0.0.1:1883 (required for MQTT), or mqtts://HOST:8883 with `tls`. */
  brokerUrl?: string;
  /** MQTT over TLS: the CA of the gateway's certificate, and client certificates for mutual TLS. */
  tls?: FleetTlsOptions;
  /** BLE (required for BLE). */
  ble?: BleFleetOptions;
  devices: number;
  seed: string;
  /** Sensor sets, see assignSensors: `mix` (default), `all`, `a,b`, `a,b;c`. */
  sensors?: string;
  /**
   * Send this many frames per device as fast as the link allows, then stop. The frames are
   * dealt to the device's sensors in time order and timestamped in the past (see
   * planTracks); on a state dir that a recent run already advanced, frames that would lie in
   * the future wait for the real clock (FleetReport.clockWaitMs).
   */
  frames?: number;
  /** Stop producing after this long (real time). Without it and without `frames`, run until `signal` aborts. */
  durationMs?: number;
  /** Simulated time runs this much faster than real time (needs durationMs when > 1). Ignored with `frames`. */
  speed?: number;
  /** Probability per frame for each fault kind, or its `kind=rate,...` form. */
  faults?: FaultRates | string;
  /** Per-device persistent state (sequence numbers, sensor clocks); in memory when absent. */
  stateDir?: string;
  /** Aborting stops production; the run still drains (bounded by drainTimeoutMs). */
  signal?: AbortSignal;
  /** Default 30 s. */
  drainTimeoutMs?: number;
  /** Per device; default 32. */
  maxInFlight?: number;
  /** Sequence numbers reserved per state write (PROTOCOL.md §8.1); default 64. A crash skips at most this many. */
  seqBlock?: number;
  backoff?: { initialMs: number; maxMs: number };
  onProgress?: (p: FleetProgress) => void;
  /** Default 1000 ms. */
  progressIntervalMs?: number;
  /** Told of every fault as it happens: injected, (stall) holding, settled with its outcome (wearable.ts FaultEvent). */
  onFault?: (e: FaultEvent) => void;
  /** Told of every honest frame acknowledged, as the link learns of it. */
  onAck?: (deviceId: string, seq: bigint) => void;
}

export interface FleetProgress {
  elapsedMs: number;
  phase: 'producing' | 'draining' | 'done';
  devices: number;
  connected: number;
  recorded: number;
  sent: number;
  acked: number;
  retransmitted: number;
  /** Frames and fault publications not settled yet. */
  backlog: number;
  faultsInjected: number;
  /** Faulty frames acknowledged, which the gateway has therefore refused and counted. */
  rejectedExpected: number;
  /** Acknowledged honest frames per second since the previous progress report. */
  ackRate: number;
}

export interface DeviceReport {
  deviceId: string;
  patient: string;
  sensors: string[];
  recorded: number;
  acked: number;
  /** The next sequence number the device will use (persisted when stateDir is set). */
  nextSeq: string;
  faults: Partial<Record<FaultKind, number>>;
  link: LinkCounters;
}

export interface RogueReport {
  deviceId: string;
  /** Times a central connected to it, and enabled its notifications: a gateway must never subscribe. */
  connections: number;
  notifyStarts: number;
}

export interface FleetReport {
  version: 1;
  seed: string;
  transport: Transport;
  /** MQTT runs. */
  brokerUrl?: string;
  /** BLE runs: the D-Bus address the simulated BlueZ served on. */
  busAddress?: string;
  /** BLE runs with rogue wearables. */
  rogues?: RogueReport[];
  devices: number;
  pace: 'frames' | 'clock';
  /** Frames pace: how long the run had to wait for the real clock because an earlier run covered the time (0 normally). */
  clockWaitMs: number;
  startedAt: string;
  endedAt: string;
  elapsedMs: number;
  /** Every frame acknowledged and every fault settled before the drain timeout. */
  drained: boolean;
  frames: {
    /** Frames a previous run left unacknowledged, sent first in this one. */
    restored: number;
    recorded: number;
    sent: number;
    acked: number;
    retransmitted: number;
    /** Still in outboxes at the end (0 when drained); kept in the state dir for the next run. */
    unacked: number;
    /** Dropped from full outboxes (oldest first) during a long outage. */
    droppedFromOutbox: number;
  };
  connections: { connects: number; refusals: Record<string, number>; connectErrors: number; abruptDisconnects: number };
  faults: FaultReport;
  perDevice: DeviceReport[];
}

/** Checks a BLE run's options before anything starts. */
function checkBleOptions(b: BleFleetOptions | undefined): BleFleetOptions {
  if (!b?.busAddress) throw new TypeError('a BLE run needs ble.busAddress (the D-Bus address for the simulated BlueZ)');
  if (b.bluez && b.bluez.busAddress !== b.busAddress) throw new TypeError(`ble.bluez serves on ${b.bluez.busAddress}, not on ble.busAddress ${b.busAddress}`);
  if (b.mtu !== undefined) notificationBytes(b.mtu);
  for (const [name, v] of Object.entries({ notifyDelayMs: b.notifyDelayMs, appearOverMs: b.appearOverMs })) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new RangeError(`ble.${name} must be a number ≥ 0, got ${v}`);
  }
  if (b.rogues !== undefined && !(Number.isInteger(b.rogues) && b.rogues >= 0)) throw new RangeError(`ble.rogues must be a whole number ≥ 0, got ${b.rogues}`);
  for (const [name, r] of Object.entries({ outOfRangeMs: b.outOfRangeMs, vanishMs: b.vanishMs })) {
    if (r !== undefined && !(Number.isInteger(r[0]) && Number.isInteger(r[1]) && r[0] >= 0 && r[1] >= r[0]))
      throw new RangeError(`ble.${name} must be [min, max] whole milliseconds, 0 ≤ min ≤ max, got ${JSON.stringify(r)}`);
  }
  return b;
}

/**
 * @throws RangeError / TypeError for inconsistent options (before connecting anything): a
 *   transport without its endpoint, fault kinds the transport cannot carry out (faults.ts).
 * @example
 *   const report = await runFleet({ brokerUrl: 'mqtt://127.0.0.1:1883', devices: 5, seed: '42', frames: 100, faults: 'tamper=0.05' });
 *   expect(gatewayMetrics.rejectedBy.BAD_SIGNATURE).toBe(report.faults.expectedRejections.BAD_SIGNATURE ?? 0);
 * @example
 *   const report = await runFleet({ transport: 'ble', ble: { busAddress: bus.address, mtu: 185 }, devices: 3, seed: '42', frames: 50, faults: 'bad_fragment=0.05' });
 */
export async function runFleet(o: FleetOptions): Promise<FleetReport> {
  if (o.frames !== undefined && (!Number.isInteger(o.frames) || o.frames < 1)) throw new RangeError(`frames must be a positive integer, got ${o.frames}`);
  if (o.durationMs !== undefined && !(o.durationMs > 0)) throw new RangeError(`duration must be > 0 ms, got ${o.durationMs}`);
  const transport = o.transport ?? 'mqtt';
  if (transport !== 'mqtt' && transport !== 'ble') throw new TypeError(`transport must be mqtt or ble, got "${String(transport)}"`);
  const brokerUrl = o.brokerUrl ?? '';
  if (transport === 'mqtt') checkBrokerUrl(brokerUrl);
  const ble = transport === 'ble' ? checkBleOptions(o.ble) : undefined;
  const faults = typeof o.faults === 'string' ? parseFaultRates(o.faults) : (o.faults ?? {});
  checkFaultsForTransport(faults, transport);
  const pace: Pace = o.frames !== undefined ? { kind: 'frames', frames: o.frames } : { kind: 'clock' };
  const clock = pace.kind === 'frames' ? scaledClock(1, Number.POSITIVE_INFINITY) : scaledClock(o.speed ?? 1, o.durationMs ?? Number.POSITIVE_INFINITY);
  const fleet = fleetDevices(o.seed, o.devices, o.sensors ?? 'mix');
  const tally = new FaultTally();
  const started = Date.now();
  let rogues = 0;
  const ownBluez = ble !== undefined && !ble.bluez;
  const bluez: SimulatedBluez | undefined = ble
    ? (ble.bluez ??
      (await startSimulatedBluez({
        busAddress: ble.busAddress,
        ...(ble.temporaryTimeoutMs !== undefined ? { temporaryTimeoutMs: ble.temporaryTimeoutMs } : {}),
        ...(ble.connectTimeoutMs !== undefined ? { connectTimeoutMs: ble.connectTimeoutMs } : {}),
        ...(ble.scanIntervalMs !== undefined ? { scanIntervalMs: ble.scanIntervalMs } : {}),
      })))
    : undefined;
  const closeBluez = async (): Promise<void> => {
    if (ownBluez) await bluez?.close();
  };

  const makeLink = (d: SimDevice, core: DeviceCore): { link: FrameLink; radio?: BleLink } => {
    if (bluez && ble) {
      const link = new BleLink({
        bluez,
        deviceId: d.deviceId,
        publicKey: d.keys.publicKey,
        outbox: core.outbox,
        ...(ble.mtu !== undefined ? { mtu: ble.mtu } : {}),
        ...(ble.notifyDelayMs !== undefined ? { notifyDelayMs: ble.notifyDelayMs } : {}),
      });
      return { link, radio: link };
    }
    const jitter = Rng.for('link-jitter', o.seed, d.index);
    const tls = deviceTls(o.tls, d.deviceId);
    const link = new MqttLink({
      brokerUrl,
      ...(tls ? { tls } : {}),
      deviceId: d.deviceId,
      secretKey: d.keys.secretKey,
      outbox: core.outbox,
      ...(o.maxInFlight !== undefined ? { maxInFlight: o.maxInFlight } : {}),
      ...(o.backoff ? { backoff: o.backoff } : {}),
      random: () => jitter.float(),
    });
    return { link };
  };

  const member = (d: SimDevice) => {
    const state: DeviceState = o.stateDir ? new FileDeviceState(o.stateDir, d.deviceId) : new MemoryDeviceState();
    const core = new DeviceCore(d.deviceId, d.keys.secretKey, new SequenceCounter(state, BigInt(o.seqBlock ?? 64)));
    const { link, radio } = makeLink(d, core);
    const wearable = new Wearable({
      deviceId: d.deviceId,
      secretKey: d.keys.secretKey,
      sensors: d.sensors,
      patient: Patient.fromSeed(d.patientSeed),
      core,
      link,
      state,
      clock,
      pace,
      faults,
      faultRng: Rng.for('faults', o.seed, d.index),
      detailRng: Rng.for('fault-details', o.seed, d.index),
      tally,
      peers: fleet.filter((p) => p.deviceId !== d.deviceId).map((p) => p.deviceId),
      ...(o.onFault ? { onFault: o.onFault } : {}),
      ...(radio
        ? {
            radio,
            radioFaultRng: Rng.for('radio-faults', o.seed, d.index),
            soloFaultRngs: { stall: Rng.for('fault-stall', o.seed, d.index) },
            ...(ble?.outOfRangeMs ? { outOfRangeMs: ble.outOfRangeMs } : {}),
            ...(ble?.vanishMs ? { vanishMs: ble.vanishMs } : {}),
          }
        : {
            rogueConnect: () => {
              const r = rogueDevice(o.seed, rogues++);
              // A rogue has no client certificate of its own: only the CA, to reach the CONNECT.
              return connectOnce(brokerUrl, r.deviceId, r.keys.secretKey, o.tls?.ca ? { tls: { ca: o.tls.ca } } : {});
            },
          }),
    });
    if (o.onAck) link.onAck((seq) => o.onAck!(d.deviceId, seq));
    // Frames a previous run left unacknowledged go first, in their original order.
    const restored = state.takeUnacked();
    for (const f of restored) {
      core.outbox.push(f.seq, f.raw);
      if (f.sent) core.outbox.markSent(f.seq);
      link.enqueueFrame(f.seq, f.raw, f.sent);
    }
    return { d, state, core, link, wearable, restored: restored.length };
  };
  const members: ReturnType<typeof member>[] = [];
  const rogueWearables: RogueWearable[] = [];
  try {
    for (const d of fleet) members.push(member(d));
    for (let n = 0; bluez && n < (ble?.rogues ?? 0); n++)
      rogueWearables.push(addRogueWearable(bluez, { seed: o.seed, n, ...(ble?.mtu !== undefined ? { mtu: ble.mtu } : {}) }));
  } catch (e) {
    // A shared BlueZ stays up: take this run's peripherals off its air.
    await Promise.all([...members.map((m) => m.link.stop()), ...rogueWearables.map((r) => r.link.stop())]);
    await closeBluez();
    throw e;
  }

  const waitMs = Math.max(0, ...members.map((m) => clockWaitMs(m.wearable.tracks, clock.now())));
  const production = new AbortController();
  // Every wearable's clock waits on this one signal: one listener per device is expected.
  setMaxListeners(0, production.signal);
  const stopProducing = (): void => production.abort();
  o.signal?.addEventListener('abort', stopProducing, { once: true });
  if (o.signal?.aborted) production.abort();
  const durationTimer = o.durationMs !== undefined ? setTimeout(stopProducing, o.durationMs) : undefined;

  let phase: FleetProgress['phase'] = 'producing';
  let lastAcked = 0;
  let lastAt = started;
  const progress = (): FleetProgress => {
    const sum = (f: (l: LinkCounters) => number): number => members.reduce((n, m) => n + f(m.link.counters), 0);
    const now = Date.now();
    const acked = sum((c) => c.acked);
    const rate = now > lastAt ? ((acked - lastAcked) * 1000) / (now - lastAt) : 0;
    lastAcked = acked;
    lastAt = now;
    const t = tally.report();
    return {
      elapsedMs: now - started,
      phase,
      devices: members.length,
      connected: members.filter((m) => m.link.connected).length,
      recorded: members.reduce((n, m) => n + m.wearable.recorded, 0),
      sent: sum((c) => c.sent),
      acked,
      retransmitted: sum((c) => c.retransmitted),
      backlog: members.reduce((n, m) => n + m.link.backlog, 0),
      faultsInjected: Object.values(t.injected).reduce((n, x) => n + x, 0),
      rejectedExpected: Object.values(t.expectedRejections).reduce((n, x) => n + x, 0),
      ackRate: rate,
    };
  };
  const ticker = o.onProgress ? setInterval(() => o.onProgress!(progress()), o.progressIntervalMs ?? 1000) : undefined;

  const appearTimers: NodeJS.Timeout[] = [];
  try {
    for (const m of members) {
      // BLE: wearables come into range one by one over the appear window, as on a ward.
      const delay = (ble?.appearOverMs ?? 0) * Rng.for('ble-appear', o.seed, m.d.index).float();
      if (delay > 0) appearTimers.push(setTimeout(() => m.link.start(), delay));
      else m.link.start();
    }
    await Promise.all(members.map((m) => m.wearable.run(production.signal)));
    phase = 'draining';
    const drain = AbortSignal.timeout(o.drainTimeoutMs ?? 30_000);
    const idle = await Promise.all(members.map((m) => m.link.idle(drain)));
    await Promise.all(members.map((m) => m.wearable.settled(drain)));
    const drained = idle.every(Boolean) && tally.report().pending === 0;
    return await finish(drained);
  } finally {
    clearTimeout(durationTimer);
    clearInterval(ticker);
    for (const t of appearTimers) clearTimeout(t);
    o.signal?.removeEventListener('abort', stopProducing);
    await Promise.all(members.map((m) => m.link.stop()));
    await Promise.all(rogueWearables.map((r) => r.link.stop()));
    await closeBluez();
  }

  async function finish(drained: boolean): Promise<FleetReport> {
    await Promise.all(members.map((m) => m.link.stop()));
    for (const m of members)
      m.state.close(
        m.core.counter.peek(),
        m.core.outbox.unacked().map((e) => ({ seq: e.seq, raw: e.raw, sent: e.sent })),
      );
    phase = 'done';
    o.onProgress?.(progress());
    const c = members.map((m) => m.link.counters);
    const add = (f: (l: LinkCounters) => number): number => c.reduce((n, x) => n + f(x), 0);
    const refusals: Record<string, number> = {};
    for (const x of c) for (const [k, v] of Object.entries(x.refusals)) refusals[k] = (refusals[k] ?? 0) + v;
    const ended = Date.now();
    return {
      version: 1,
      seed: o.seed,
      transport,
      ...(ble ? { busAddress: ble.busAddress } : { brokerUrl }),
      ...(bluez ? { rogues: rogueWearables.map((r) => ({ deviceId: r.deviceId, ...r.peripheral.stats })) } : {}),
      devices: members.length,
      pace: pace.kind,
      clockWaitMs: Math.round(waitMs),
      startedAt: new Date(started).toISOString(),
      endedAt: new Date(ended).toISOString(),
      elapsedMs: ended - started,
      drained,
      frames: {
        restored: members.reduce((n, m) => n + m.restored, 0),
        recorded: members.reduce((n, m) => n + m.wearable.recorded, 0),
        sent: add((x) => x.sent),
        acked: add((x) => x.acked),
        retransmitted: add((x) => x.retransmitted),
        unacked: members.reduce((n, m) => n + m.core.outbox.size, 0),
        droppedFromOutbox: members.reduce((n, m) => n + m.core.outbox.dropped, 0),
      },
      connections: {
        connects: add((x) => x.connects),
        refusals,
        connectErrors: add((x) => x.connectErrors),
        abruptDisconnects: add((x) => x.abruptDisconnects),
      },
      faults: tally.report(),
      perDevice: members.map((m) => ({
        deviceId: m.d.deviceId,
        patient: m.d.patient,
        sensors: m.d.sensors.map((s) => s.name),
        recorded: m.wearable.recorded,
        acked: m.link.counters.acked,
        nextSeq: m.core.counter.peek().toString(),
        faults: { ...m.wearable.injected },
        link: { ...m.link.counters, refusals: { ...m.link.counters.refusals } },
      })),
    };
  }
}
