/**
 * Runs a fleet of simulated wearables against an MQTT broker, in process: the programmatic
 * face of `vp-sim run`, for tests and the demo.
 *
 * A run has two phases. Production: each wearable records frames until its pace is done
 * (`frames`), the duration ends, or `signal` aborts. Drain: the run waits, at most
 * `drainTimeoutMs`, until every frame is acknowledged and every fault's outcome is known,
 * then disconnects and persists each device's state (with the frames still unacknowledged,
 * which the next run sends first). The report then says what the gateway must show (see
 * tally.ts).
 */
import { setMaxListeners } from 'node:events';
import { DeviceCore, SequenceCounter } from '../firmware-proto/device.js';
import { scaledClock } from './clock.js';
import { FaultTally, type FaultReport } from './tally.js';
import { parseFaultRates, type FaultKind, type FaultRates } from './faults.js';
import { fleetDevices, rogueDevice } from './fleet.js';
import type { LinkCounters } from './link.js';
import { checkBrokerUrl, connectOnce, MqttLink } from './mqtt-link.js';
import { Patient } from './physiology.js';
import { Rng } from './rng.js';
import { FileDeviceState, MemoryDeviceState, type DeviceState } from './state-store.js';
import { clockWaitMs, Wearable, type Pace } from './wearable.js';

export interface FleetOptions {
  /** e.g. mqtt://127.0.0.1:1883 */
  brokerUrl: string;
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

export interface FleetReport {
  version: 1;
  seed: string;
  brokerUrl: string;
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

/**
 * @throws RangeError / TypeError for inconsistent options (before connecting anything).
 * @example
 *   const report = await runFleet({ brokerUrl: 'mqtt://127.0.0.1:1883', devices: 5, seed: '42', frames: 100, faults: 'tamper=0.05' });
 *   expect(gatewayMetrics.rejectedBy.BAD_SIGNATURE).toBe(report.faults.expectedRejections.BAD_SIGNATURE ?? 0);
 */
export async function runFleet(o: FleetOptions): Promise<FleetReport> {
  if (o.frames !== undefined && (!Number.isInteger(o.frames) || o.frames < 1)) throw new RangeError(`frames must be a positive integer, got ${o.frames}`);
  if (o.durationMs !== undefined && !(o.durationMs > 0)) throw new RangeError(`duration must be > 0 ms, got ${o.durationMs}`);
  checkBrokerUrl(o.brokerUrl);
  const faults = typeof o.faults === 'string' ? parseFaultRates(o.faults) : (o.faults ?? {});
  const pace: Pace = o.frames !== undefined ? { kind: 'frames', frames: o.frames } : { kind: 'clock' };
  const clock = pace.kind === 'frames' ? scaledClock(1, Number.POSITIVE_INFINITY) : scaledClock(o.speed ?? 1, o.durationMs ?? Number.POSITIVE_INFINITY);
  const fleet = fleetDevices(o.seed, o.devices, o.sensors ?? 'mix');
  const tally = new FaultTally();
  const started = Date.now();
  let rogues = 0;

  const members = fleet.map((d) => {
    const state: DeviceState = o.stateDir ? new FileDeviceState(o.stateDir, d.deviceId) : new MemoryDeviceState();
    const core = new DeviceCore(d.deviceId, d.keys.secretKey, new SequenceCounter(state, BigInt(o.seqBlock ?? 64)));
    const jitter = Rng.for('link-jitter', o.seed, d.index);
    const link = new MqttLink({
      brokerUrl: o.brokerUrl,
      deviceId: d.deviceId,
      secretKey: d.keys.secretKey,
      outbox: core.outbox,
      ...(o.maxInFlight !== undefined ? { maxInFlight: o.maxInFlight } : {}),
      ...(o.backoff ? { backoff: o.backoff } : {}),
      random: () => jitter.float(),
    });
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
      rogueConnect: () => {
        const r = rogueDevice(o.seed, rogues++);
        return connectOnce(o.brokerUrl, r.deviceId, r.keys.secretKey);
      },
    });
    // Frames a previous run left unacknowledged go first, in their original order.
    const restored = state.takeUnacked();
    for (const f of restored) {
      core.outbox.push(f.seq, f.raw);
      if (f.sent) core.outbox.markSent(f.seq);
      link.enqueueFrame(f.seq, f.raw, f.sent);
    }
    return { d, state, core, link, wearable, restored: restored.length };
  });

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

  try {
    for (const m of members) m.link.start();
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
    o.signal?.removeEventListener('abort', stopProducing);
    await Promise.all(members.map((m) => m.link.stop()));
  }

  async function finish(drained: boolean): Promise<FleetReport> {
    await Promise.all(members.map((m) => m.link.stop()));
    for (const m of members) m.state.close(m.core.counter.peek(), m.core.outbox.unacked().map((e) => ({ seq: e.seq, raw: e.raw, sent: e.sent })));
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
      brokerUrl: o.brokerUrl,
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
      connections: { connects: add((x) => x.connects), refusals, connectErrors: add((x) => x.connectErrors), abruptDisconnects: add((x) => x.abruptDisconnects) },
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
