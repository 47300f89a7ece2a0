/**
 * One simulated wearable: samples its patient per sensor on the catalogue's default
 * timing, hands each frame to DeviceCore (sequence number, signature, outbox) and to its
 * link, and commits the faults its planner picks. See faults.ts for why each fault is a
 * copy or has its own sequence number.
 *
 * Timing: a sensor's frames tile time without overlap (next start = start + count ×
 * interval), because the gateway refuses a frame that starts before the previous frame of
 * the same sensor ended (TIME_OVERLAP). A frame is recorded once its last sample's period
 * has passed on the simulated clock.
 */
import type { SensorSpec } from '../firmware-proto/catalogue.js';
import type { DeviceCore, Measurement } from '../firmware-proto/device.js';
import { signFrame } from '../firmware-proto/device.js';
import type { SimClock } from './clock.js';
import { BAD_FRAGMENT_VARIANTS } from './ble-streams.js';
import {
  checkFaultsForTransport,
  DEFAULT_OUT_OF_RANGE_MS,
  DEFAULT_VANISH_MS,
  FaultPlanner,
  flipSignatureBit,
  malform,
  oversize,
  OVERSIZED_EXPECTED,
  SKEW_AHEAD_MS,
  tamperSample,
  type Expectation,
  type FaultKind,
  type FaultRates,
  type SoloRadioFaultKind,
} from './faults.js';
import { CONNACK_NOT_AUTHORIZED, type ConnectAttempt, type FrameLink, type RadioFaults, type Transport } from './link.js';
import type { Patient } from './physiology.js';
import type { Rng } from './rng.js';
import type { DeviceState } from './state-store.js';
import type { FaultTally, Outcome } from './tally.js';

/** How a run bounds a wearable's frames. */
export type Pace =
  /** Real (or scaled) time: frames as the clock reaches them, until stopped. */
  | { kind: 'clock' }
  /**
   * N frames, as fast as the link takes them. Each sensor's frames start far enough in the
   * past that the last one ends a second before the clock's now.
   */
  | { kind: 'frames'; frames: number };

export interface WearableOptions {
  deviceId: string;
  secretKey: Uint8Array;
  sensors: readonly SensorSpec[];
  patient: Patient;
  core: DeviceCore;
  link: FrameLink;
  state: DeviceState;
  clock: SimClock;
  pace: Pace;
  faults: FaultRates;
  /** Decides which frames get which faults (one draw per kind per frame). */
  faultRng: Rng;
  /** Decides the radio kinds (RADIO_FAULT_KINDS), apart from `faultRng` so old seeds keep their choices. */
  radioFaultRng?: Rng;
  /** One stream per later radio kind (SOLO_RADIO_FAULT_KINDS: stall), apart from both for the same reason. */
  soloFaultRngs?: Partial<Record<SoloRadioFaultKind, Rng>>;
  /** Details of each fault (which bit, which variant); apart so they never shift the decisions. */
  detailRng: Rng;
  tally: FaultTally;
  /** Other devices of the fleet, whose channels the wrong_topic fault publishes on. */
  peers: readonly string[];
  /** The unknown_device fault: a non-enrolled device tries to connect once. Needed when that fault has a rate. */
  rogueConnect?: () => Promise<ConnectAttempt>;
  /**
   * The link's radio faults: given for a BLE link (BleLink), which also makes the wearable expect
   * what the BLE gateway answers (faults.ts). Absent: MQTT.
   */
  radio?: RadioFaults;
  /** Durations drawn for the radio faults, ms [min, max]; default DEFAULT_OUT_OF_RANGE_MS and DEFAULT_VANISH_MS. */
  outOfRangeMs?: readonly [number, number];
  vanishMs?: readonly [number, number];
  /** The real clock, for skewed timestamps (ahead of real time, not of simulated time). */
  realNow?: () => number;
  /** Told of every fault as it happens (see FaultEvent). */
  onFault?: (e: FaultEvent) => void;
}

/**
 * A fault as it happens: `injected` when the wearable decides on it (at recording time; the
 * transmission may come much later), `holding` (stall only) when the partial frame is out and
 * the device has gone silent, `settled` with its outcome (tally.ts), once.
 */
export interface FaultEvent {
  deviceId: string;
  kind: FaultKind;
  expected: Expectation;
  event: 'injected' | 'holding' | 'settled';
  /** For `settled`. */
  outcome?: Outcome;
}

export interface SensorTrack {
  spec: SensorSpec;
  frameMs: number;
  nextStart: number;
  remaining: number;
}

export class Wearable {
  readonly tracks: SensorTrack[];
  private readonly planner: FaultPlanner;
  /** Settle callbacks waiting for the acknowledgement of a given honest frame. */
  private readonly onAcked = new Map<bigint, (() => void)[]>();
  private lastAcked: Uint8Array | undefined;
  private firstAck: Promise<void>;
  private resolveFirstAck!: () => void;
  /** Honest frames recorded in this run. */
  recorded = 0;
  readonly injected: Partial<Record<FaultKind, number>> = {};
  private readonly pendingFaults = new Set<Promise<unknown>>();
  private readonly transport: Transport;

  /** @throws TypeError for fault rates the link cannot carry out (faults.ts checkFaultsForTransport), or unknown_device without rogueConnect. */
  constructor(private readonly o: WearableOptions) {
    this.transport = o.radio ? 'ble' : 'mqtt';
    checkFaultsForTransport(o.faults, this.transport);
    if ((o.faults.unknown_device ?? 0) > 0 && !o.rogueConnect) throw new TypeError('the unknown_device fault needs rogueConnect');
    this.planner = new FaultPlanner(o.faults, o.faultRng, o.radioFaultRng, o.soloFaultRngs);
    this.firstAck = new Promise((res) => (this.resolveFirstAck = res));
    this.tracks = planTracks(o.sensors, o.pace, o.clock.now(), o.state);
    o.link.onAck((seq, raw) => {
      this.lastAcked = raw;
      this.resolveFirstAck();
      const waiting = this.onAcked.get(seq);
      if (waiting) {
        this.onAcked.delete(seq);
        for (const f of waiting) f();
      }
    });
  }

  get deviceId(): string {
    return this.o.deviceId;
  }

  /**
   * Records frames until the pace is exhausted or `stop` aborts. The first frame of a run is
   * never faulty; in frames mode the wearable waits for its acknowledgement, so the gateway
   * knows the device before any fault and the fault decisions are the same on every run.
   * In clock mode nothing waits (a wearable measures whether or not it is connected), and
   * faults start once a first frame is acknowledged.
   */
  async run(stop: AbortSignal): Promise<void> {
    const byFrames = this.o.pace.kind === 'frames';
    for (let tick = 0; !stop.aborted; tick++) {
      const track = this.nextTrack();
      if (!track) break;
      if (!(await this.o.clock.waitUntil(track.nextStart + track.frameMs, stop))) break;
      if (byFrames && !(await this.o.link.waitForRoom(stop))) break;
      this.tick(track, tick > 0 && this.lastAcked !== undefined);
      if (byFrames && tick === 0 && !(await abortable(this.firstAck, stop))) break;
    }
  }

  /** Resolves once every fault's outcome is known (or `signal` aborts). */
  async settled(signal?: AbortSignal): Promise<void> {
    while (this.pendingFaults.size > 0 && !signal?.aborted) await abortable(Promise.allSettled([...this.pendingFaults]), signal);
  }

  /** The sensor whose next frame ends first; undefined when every sensor is done. */
  private nextTrack(): SensorTrack | undefined {
    let best: SensorTrack | undefined;
    for (const t of this.tracks) if (t.remaining > 0 && (!best || t.nextStart + t.frameMs < best.nextStart + best.frameMs)) best = t;
    return best;
  }

  private tick(track: SensorTrack, faultsAllowed: boolean): void {
    const { o } = this;
    const spec = track.spec;
    const m: Measurement = {
      timestampMs: BigInt(track.nextStart),
      sensor: spec.code,
      scale: spec.defaultScale,
      intervalUs: spec.defaultIntervalUs,
      samples: o.patient.generate(spec, track.nextStart, spec.defaultSamplesPerFrame),
    };
    track.nextStart += track.frameMs;
    track.remaining--;
    o.state.setNextStart(spec.name, track.nextStart);
    const faults = new Set(faultsAllowed ? this.planner.next() : []);
    for (const f of faults) this.injected[f] = (this.injected[f] ?? 0) + 1;

    // Before the honest frame: faults that use sequence numbers of their own.
    const afterHonest: (() => void)[] = [];
    if (faults.has('gap')) {
      const n = o.detailRng.int(1, 3);
      for (let i = 0; i < n; i++) o.core.counter.take();
      const settle = this.inject('gap', 'ACCEPTED_WITH_GAP');
      const gap = o.tally.skip(n);
      afterHonest.push(() => settle('confirmed'), gap);
    }
    if (faults.has('skew')) {
      const seq = o.core.counter.take();
      const ts = BigInt((o.realNow ?? Date.now)() + SKEW_AHEAD_MS);
      const raw = signFrame({ ...m, timestampMs: ts, deviceId: o.deviceId, seq }, o.secretKey);
      this.extra('skew', 'CLOCK_SKEW', raw);
      afterHonest.push(o.tally.skip(1));
    }

    const { seq, raw } = o.core.record(m);
    this.recorded++;
    if (afterHonest.length) this.onAcked.set(seq, afterHonest);
    o.link.enqueueFrame(seq, raw);

    // After it: corrupted copies (they cannot displace it, see faults.ts) and side faults.
    const d = o.detailRng;
    if (faults.has('tamper')) this.extra('tamper', 'BAD_SIGNATURE', tamperSample(raw, d));
    if (faults.has('bad_signature')) this.extra('bad_signature', 'BAD_SIGNATURE', flipSignatureBit(raw, d));
    if (faults.has('malformed')) {
      const bad = malform(raw, d);
      this.extra('malformed', bad.expected, bad.bytes);
    }
    if (faults.has('oversized')) this.extra('oversized', OVERSIZED_EXPECTED[this.transport], oversize(raw, d));
    if (faults.has('wrong_topic')) this.extra('wrong_topic', 'DEVICE_MISMATCH', raw, o.peers.length ? d.pick(o.peers) : otherDeviceId(o.deviceId));
    // Replays the latest acknowledged frame: its seq is at or below the gateway's highest.
    if (faults.has('replay') && this.lastAcked) this.extra('replay', 'REPLAY', this.lastAcked);
    if (faults.has('unknown_device') && o.rogueConnect) {
      const settle = this.inject('unknown_device', 'CONNECT_UNKNOWN_DEVICE');
      this.follow(
        o.rogueConnect().then(
          (r) => settle(rogueOutcome(r)),
          () => settle('lost'),
        ),
      );
    }
    if (faults.has('disconnect')) {
      const settle = this.inject('disconnect', 'NOTHING_LOST');
      this.follow(o.link.abruptDisconnect().then((ok) => settle(ok ? 'confirmed' : 'lost')));
    }
    const radio = o.radio;
    if (!radio) return;
    const drawMs = ([lo, hi]: readonly [number, number]): number => d.int(lo, hi);
    if (faults.has('vanish')) {
      const settle = this.inject('vanish', 'NOTHING_LOST');
      this.follow(radio.vanish(drawMs(o.vanishMs ?? DEFAULT_VANISH_MS)).then((ok) => settle(ok ? 'confirmed' : 'lost')));
    }
    if (faults.has('out_of_range')) {
      const settle = this.inject('out_of_range', 'NOTHING_LOST');
      this.follow(radio.outOfRange(drawMs(o.outOfRangeMs ?? DEFAULT_OUT_OF_RANGE_MS)).then((ok) => settle(ok ? 'confirmed' : 'lost')));
    }
    if (faults.has('bad_fragment')) {
      const bad = radio.sendBadFragments(raw, d.pick(BAD_FRAGMENT_VARIANTS));
      const settle = this.inject('bad_fragment', bad.expected);
      this.follow(bad.sent.then((ok) => settle(ok ? 'confirmed' : 'lost')));
    }
    if (faults.has('stall')) {
      const stall = radio.stallFrame(raw);
      const settle = this.inject('stall', stall.expected);
      void stall.holding.then((on) => on && o.onFault?.({ deviceId: o.deviceId, kind: 'stall', expected: stall.expected, event: 'holding' }));
      this.follow(stall.sent.then((ok) => settle(ok ? 'confirmed' : 'lost')));
    }
  }

  /** Tallies an injection and tells `onFault`; call the returned function once with its outcome. */
  private inject(kind: FaultKind, expected: Expectation): (outcome: Outcome) => void {
    const { o } = this;
    const settle = o.tally.inject(kind, expected);
    o.onFault?.({ deviceId: o.deviceId, kind, expected, event: 'injected' });
    let done = false;
    return (outcome) => {
      if (done) return;
      done = true;
      settle(outcome);
      o.onFault?.({ deviceId: o.deviceId, kind, expected, event: 'settled', outcome });
    };
  }

  private extra(kind: FaultKind, expected: Expectation, payload: Uint8Array, asDevice?: string): void {
    const settle = this.inject(kind, expected);
    const sent = this.o.link.sendExtra(payload, asDevice ? { asDevice } : undefined);
    this.follow(sent.then((acked) => settle(acked ? 'confirmed' : 'lost')));
  }

  private follow(p: Promise<unknown>): void {
    this.pendingFaults.add(p);
    void p.finally(() => this.pendingFaults.delete(p));
  }
}

/**
 * The gateway refuses unknown devices with CONNACK return code 5, "not authorised"
 * (PROTOCOL.md §6.1); being let in, or another code, contradicts the expectation; no CONNACK
 * at all (the broker unreachable) tells nothing.
 */
function rogueOutcome(r: ConnectAttempt): Outcome {
  if (r.connected) return 'unexpected';
  if (r.returnCode === undefined) return 'lost';
  return r.returnCode === CONNACK_NOT_AUTHORIZED ? 'confirmed' : 'unexpected';
}

/** A device id that is not this one, for a fleet of one. */
function otherDeviceId(id: string): string {
  return id.replace(/^./, (c) => (c === '0' ? '1' : '0'));
}

/**
 * Where each sensor's frames start.
 *
 * Clock pace: now, or later if an earlier run already covered that time.
 *
 * Frames pace: the device's N frames are dealt in time order from a common origin (the
 * frame that ends first goes next), so all sensors cover the same span T, and a sensor with
 * 60-s frames gets few of them. The origin is T + 1 s before now, so the last frame ends a
 * second before the real clock. A sensor that an earlier run covered past the origin starts
 * where that run ended instead (the gateway refuses overlapping frames), and its frames
 * then wait for the real clock: two quick runs on one state dir cannot hold more sensor
 * time than has really passed.
 */
export function planTracks(sensors: readonly SensorSpec[], pace: Pace, nowMs: number, state: DeviceState): SensorTrack[] {
  const frameMs = sensors.map((spec) => Math.ceil((spec.defaultSamplesPerFrame * spec.defaultIntervalUs) / 1000));
  const resume = (i: number, start: number): number => Math.max(Math.floor(start), state.nextStart(sensors[i]!.name) ?? 0);
  if (pace.kind === 'clock')
    return sensors.map((spec, i) => ({ spec, frameMs: frameMs[i]!, remaining: Number.POSITIVE_INFINITY, nextStart: resume(i, nowMs) }));
  const ends = sensors.map(() => 0);
  const counts = sensors.map(() => 0);
  for (let k = 0; k < pace.frames; k++) {
    let best = 0;
    for (let i = 1; i < sensors.length; i++) if (ends[i]! + frameMs[i]! < ends[best]! + frameMs[best]!) best = i;
    ends[best] = ends[best]! + frameMs[best]!;
    counts[best] = counts[best]! + 1;
  }
  const origin = nowMs - Math.max(...ends) - 1000;
  return sensors.map((spec, i) => ({ spec, frameMs: frameMs[i]!, remaining: counts[i]!, nextStart: resume(i, origin) }));
}

/** How long the last planned frame must wait for the clock (0 when every frame lies in the past). */
export function clockWaitMs(tracks: readonly SensorTrack[], nowMs: number): number {
  let wait = 0;
  for (const t of tracks) if (t.remaining > 0 && Number.isFinite(t.remaining)) wait = Math.max(wait, t.nextStart + t.remaining * t.frameMs - nowMs);
  return wait;
}

async function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<boolean> {
  if (!signal) {
    await p;
    return true;
  }
  if (signal.aborted) return false;
  return new Promise<boolean>((resolve) => {
    const onAbort = (): void => resolve(false);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      },
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve(false);
      },
    );
  });
}
