import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { DeviceCore, SequenceCounter, signFrame } from '../../firmware-proto/device.js';
import { decodeFrame, frameEndMs, MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import { isError } from '../../firmware-proto/coded-error.js';
import { ProtocolError, type FrameReason } from '../../firmware-proto/reasons.js';
import { FRAME_TAG, concat } from '../../firmware-proto/signing.js';
import { deviceOfFrameTopic, frameTopic } from '../../firmware-proto/topics.js';
import { scaledClock } from '../../device-sim/clock.js';
import {
  FAULT_KINDS,
  FaultPlanner,
  flipSignatureBit,
  malform,
  MALFORMATIONS,
  oversize,
  parseFaultRates,
  tamperSample,
  type FaultKind,
  type FaultRates,
} from '../../device-sim/faults.js';
import { fleetDevices, rogueDevice, type SimDevice } from '../../device-sim/fleet.js';
import { newLinkCounters, type ConnectAttempt, type FrameLink } from '../../device-sim/link.js';
import { Patient } from '../../device-sim/physiology.js';
import { Rng } from '../../device-sim/rng.js';
import { MemoryDeviceState } from '../../device-sim/state-store.js';
import { FaultTally } from '../../device-sim/tally.js';
import { Wearable } from '../../device-sim/wearable.js';

const [dev] = fleetDevices('faults-test', 1, 'all');
const device = dev!;

function signed(sensor: string, count: number, seq = 5n): Uint8Array {
  const spec = sensorByName(sensor);
  const samples = Patient.fromSeed(device.patientSeed).generate(spec, 1_700_000_000_000, count);
  return signFrame(
    {
      deviceId: device.deviceId,
      seq,
      timestampMs: 1_700_000_000_000n,
      sensor: spec.code,
      scale: spec.defaultScale,
      intervalUs: spec.defaultIntervalUs,
      samples,
    },
    device.keys.secretKey,
  );
}

function keyObject(pub: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pub).toString('base64url') }, format: 'jwk' });
}

function signatureOk(raw: Uint8Array, pub: Uint8Array): boolean {
  const f = decodeFrame(raw);
  return verify(null, concat(FRAME_TAG, f.body), keyObject(pub), f.signature);
}

function decodeReason(bytes: Uint8Array): FrameReason | undefined {
  try {
    decodeFrame(bytes);
    return undefined;
  } catch (e) {
    if (e instanceof ProtocolError) return e.code;
    throw e;
  }
}

describe('parseFaultRates', () => {
  it('reads kind=rate pairs', () => {
    expect(parseFaultRates('tamper=0.01, skew=0.5,disconnect=1')).toEqual({ tamper: 0.01, skew: 0.5, disconnect: 1 });
    expect(parseFaultRates('')).toEqual({});
  });
  it.each(['tamper', 'tamper=', 'tamper=2', 'tamper=-0.1', 'tamper=x', 'nonsense=0.1', 'tamper=0.1=2'])('refuses "%s"', (spec) => {
    expect(() => parseFaultRates(spec)).toThrow(TypeError);
  });
});

describe('FaultPlanner', () => {
  it('picks exactly the frames whose seeded draw falls under the rate, one draw per kind per frame', () => {
    const rates: FaultRates = { tamper: 0.2, skew: 0.05, disconnect: 0.5 };
    const planner = new FaultPlanner(rates, Rng.for('plan', 1));
    const reference = Rng.for('plan', 1);
    for (let frame = 0; frame < 500; frame++) {
      const want = FAULT_KINDS.filter((k) => reference.float() < (rates[k] ?? 0));
      expect(planner.next()).toEqual(want);
    }
  });

  it("does not change one kind's choices when another kind's rate changes", () => {
    const a = new FaultPlanner({ tamper: 0.1 }, Rng.for('plan', 2));
    const b = new FaultPlanner({ tamper: 0.1, gap: 0.9, replay: 0.3 }, Rng.for('plan', 2));
    for (let frame = 0; frame < 300; frame++) expect(a.next().includes('tamper')).toBe(b.next().includes('tamper'));
  });
});

describe('corruptions', () => {
  it('tamper keeps a decodable frame whose signature no longer verifies', () => {
    const r = Rng.for('tamper');
    for (const s of ['heart_rate', 'ecg', 'accelerometer', 'steps']) {
      const raw = signed(s, sensorByName(s).defaultSamplesPerFrame);
      expect(signatureOk(raw, device.keys.publicKey)).toBe(true);
      for (let i = 0; i < 20; i++) {
        const bad = tamperSample(raw, r);
        expect(bad.length).toBe(raw.length);
        expect(decodeReason(bad)).toBeUndefined();
        expect(signatureOk(bad, device.keys.publicKey)).toBe(false);
      }
    }
  });

  it('bad_signature flips exactly one signature bit', () => {
    const raw = signed('spo2', 5);
    const r = Rng.for('flip');
    for (let i = 0; i < 50; i++) {
      const bad = flipSignatureBit(raw, r);
      let bits = 0;
      for (let j = 0; j < raw.length; j++) bits += [...(raw[j]! ^ bad[j]!).toString(2)].filter((c) => c === '1').length;
      expect(bits).toBe(1);
      expect(Buffer.compare(Buffer.from(bad.subarray(0, raw.length - 64)), Buffer.from(raw.subarray(0, raw.length - 64)))).toBe(0);
      expect(signatureOk(bad, device.keys.publicKey)).toBe(false);
    }
  });

  it('oversized is refused as FRAME_OVERSIZED', () => {
    const bad = oversize(signed('ecg', 250), Rng.for('big'));
    expect(bad.length).toBeGreaterThan(MAX_FRAME_BYTES);
    expect(decodeReason(bad)).toBe('FRAME_OVERSIZED');
  });

  it('malformed predicts the exact reason a strict decoder gives, for every variant', () => {
    const r = Rng.for('malform');
    const seen = new Set<string>();
    // 101-byte frames (one sample) truncate to FRAME_TOO_SHORT; larger ones to LENGTH_MISMATCH.
    for (const [s, n] of [
      ['skin_temperature', 1],
      ['heart_rate', 5],
      ['ecg', 250],
      ['accelerometer', 25],
    ] as const) {
      const raw = signed(s, n);
      for (let i = 0; i < 200; i++) {
        const bad = malform(raw, r);
        expect(decodeReason(bad.bytes), `${s} ${bad.variant}`).toBe(bad.expected);
        seen.add(bad.variant);
      }
    }
    expect([...seen].sort()).toEqual([...MALFORMATIONS].sort());
  });
});

/**
 * A reference receiver, slow and obviously correct, written from the protocol's rules in
 * their order (decode, device known, sender and channel, signature, sequence / duplicate,
 * clock skew, time overlap): what the simulator expects must be what a receiver decides.
 */
class Judge {
  readonly reasons: Partial<Record<FrameReason, number>> = {};
  readonly accepted = new Map<string, bigint[]>();
  duplicates = 0;
  seqGaps = 0;
  private readonly keys = new Map<string, KeyObject>();
  private readonly state = new Map<string, { highest: bigint; lastEnd: Map<number, bigint>; hashes: Map<bigint, string> }>();
  constructor(devices: readonly SimDevice[]) {
    for (const d of devices) this.keys.set(d.deviceId, keyObject(d.keys.publicKey));
  }
  private reject(r: FrameReason): void {
    this.reasons[r] = (this.reasons[r] ?? 0) + 1;
  }
  submit(raw: Uint8Array, sender: string, topic: string, dup: boolean): void {
    let f;
    try {
      f = decodeFrame(raw);
    } catch (e) {
      if (isError(e, ProtocolError)) return this.reject(e.code);
      throw e;
    }
    const key = this.keys.get(f.deviceId);
    if (!key) return this.reject('UNKNOWN_DEVICE');
    if (f.deviceId !== sender || deviceOfFrameTopic(topic) !== sender) return this.reject('DEVICE_MISMATCH');
    if (!verify(null, concat(FRAME_TAG, f.body), key, f.signature)) return this.reject('BAD_SIGNATURE');
    const st = this.state.get(f.deviceId) ?? { highest: 0n, lastEnd: new Map(), hashes: new Map() };
    this.state.set(f.deviceId, st);
    const sha = createHash('sha256').update(raw).digest('hex');
    if (f.seq <= st.highest) {
      if (dup && st.hashes.get(f.seq) === sha) {
        this.duplicates++;
        return;
      }
      return this.reject('REPLAY');
    }
    if (Number(f.timestampMs) > Date.now() + 30_000) return this.reject('CLOCK_SKEW');
    const last = st.lastEnd.get(f.sensor);
    if (last !== undefined && f.timestampMs <= last) return this.reject('TIME_OVERLAP');
    if (st.highest > 0n && f.seq > st.highest + 1n) this.seqGaps += Number(f.seq - st.highest - 1n);
    st.highest = f.seq;
    st.lastEnd.set(f.sensor, frameEndMs(f));
    st.hashes.set(f.seq, sha);
    this.accepted.set(f.deviceId, [...(this.accepted.get(f.deviceId) ?? []), f.seq]);
  }
}

/** An in-memory link: delivers to the judge in order and acknowledges on the next microtask. */
class LoopbackLink implements FrameLink {
  readonly counters = newLinkCounters();
  readonly connected = true;
  private pending = 0;
  private readonly listeners: ((seq: bigint, raw: Uint8Array) => void)[] = [];
  disconnects = 0;
  constructor(
    readonly deviceId: string,
    private readonly judge: Judge,
  ) {}
  get backlog(): number {
    return this.pending;
  }
  start(): void {}
  async stop(): Promise<void> {}
  enqueueFrame(seq: bigint, raw: Uint8Array): void {
    this.pending++;
    this.judge.submit(raw, this.deviceId, frameTopic(this.deviceId), false);
    queueMicrotask(() => {
      this.pending--;
      this.counters.acked++;
      for (const l of this.listeners) l(seq, raw);
    });
  }
  sendExtra(payload: Uint8Array, opts?: { asDevice?: string }): Promise<boolean> {
    this.judge.submit(payload, this.deviceId, frameTopic(opts?.asDevice ?? this.deviceId), false);
    return Promise.resolve(true);
  }
  abruptDisconnect(): Promise<boolean> {
    this.disconnects++;
    return Promise.resolve(true);
  }
  onAck(l: (seq: bigint, raw: Uint8Array) => void): void {
    this.listeners.push(l);
  }
  waitForRoom(): Promise<boolean> {
    return Promise.resolve(true);
  }
  idle(): Promise<boolean> {
    return Promise.resolve(this.pending === 0);
  }
}

async function runFleetInMemory(seed: string, frames: number, faults: FaultRates) {
  const fleet = fleetDevices(seed, 3, 'mix');
  const judge = new Judge(fleet);
  const tally = new FaultTally();
  const enrolled = new Set(fleet.map((d) => d.deviceId));
  let rogues = 0;
  const refusedRogues: string[] = [];
  const rogueConnect = (): Promise<ConnectAttempt> => {
    // Stands in for the gateway: refuse what is not enrolled with return code 5.
    const r = rogueDevice(seed, rogues++);
    if (enrolled.has(r.deviceId)) return Promise.resolve({ connected: true });
    refusedRogues.push(r.deviceId);
    return Promise.resolve({ connected: false, returnCode: 5 });
  };
  const units = fleet.map((d) => {
    const core = new DeviceCore(d.deviceId, d.keys.secretKey, new SequenceCounter(new MemoryDeviceState()));
    const link = new LoopbackLink(d.deviceId, judge);
    const w = new Wearable({
      deviceId: d.deviceId,
      secretKey: d.keys.secretKey,
      sensors: d.sensors,
      patient: Patient.fromSeed(d.patientSeed),
      core,
      link,
      state: new MemoryDeviceState(),
      clock: scaledClock(1, Number.POSITIVE_INFINITY),
      pace: { kind: 'frames', frames },
      faults,
      faultRng: Rng.for('faults', seed, d.index),
      detailRng: Rng.for('fault-details', seed, d.index),
      tally,
      peers: fleet.filter((p) => p !== d).map((p) => p.deviceId),
      rogueConnect,
    });
    return { d, core, link, w };
  });
  await Promise.all(units.map((u) => u.w.run(new AbortController().signal)));
  await Promise.all(units.map((u) => u.w.settled()));
  return { fleet, judge, tally, units, refusedRogues };
}

describe('Wearable fault injection against a reference receiver', () => {
  const all: FaultRates = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0.06]));

  it('expects exactly what the receiver decides, and never costs an honest frame', async () => {
    const { judge, tally, units, refusedRogues } = await runFleetInMemory('judge', 300, all);
    const rep = tally.report();
    expect(rep.pending).toBe(0);
    expect(rep.lost).toBe(0);
    expect(rep.unexpected).toBe(0);
    for (const k of FAULT_KINDS) expect(rep.injected[k], k).toBeGreaterThan(0);
    expect(judge.reasons).toEqual(rep.expectedRejections);
    expect(rep.expectedConnectRefusals).toEqual({ CONNECT_UNKNOWN_DEVICE: refusedRogues.length });
    expect(judge.seqGaps).toBe(rep.expectedSeqGaps);
    expect(judge.duplicates).toBe(0);
    for (const u of units) {
      // Every honest frame accepted, in order; the skipped numbers are exactly the gap and skew faults'.
      const seqs = judge.accepted.get(u.d.deviceId)!;
      expect(seqs.length).toBe(300);
      expect(u.w.recorded).toBe(300);
      expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : 1)));
      expect(u.link.disconnects).toBe(u.w.injected.disconnect ?? 0);
    }
    const skipped = units.reduce((n, u) => {
      const s = judge.accepted.get(u.d.deviceId)!;
      return n + Number(s[s.length - 1]! - s[0]!) + 1 - s.length;
    }, 0);
    expect(skipped).toBe(rep.expectedSeqGaps);
  });

  it('injects per device exactly the kinds its seeded planner picks (the first frame is never faulty)', async () => {
    const rates: FaultRates = { tamper: 0.1, skew: 0.05, replay: 0.08, malformed: 0.1 };
    const { units, tally } = await runFleetInMemory('plan', 200, rates);
    const total: Partial<Record<FaultKind, number>> = {};
    for (const u of units) {
      const planner = new FaultPlanner(rates, Rng.for('faults', 'plan', u.d.index));
      const want: Partial<Record<FaultKind, number>> = {};
      for (let frame = 1; frame < 200; frame++) for (const k of planner.next()) want[k] = (want[k] ?? 0) + 1;
      expect(u.w.injected).toEqual(want);
      for (const [k, n] of Object.entries(want) as [FaultKind, number][]) total[k] = (total[k] ?? 0) + n;
    }
    expect(tally.report().injected).toEqual(total);
  });

  it('makes the same choices on every run with the same seed', async () => {
    const a = await runFleetInMemory('again', 150, all);
    const b = await runFleetInMemory('again', 150, all);
    expect(b.tally.report().entries).toEqual(a.tally.report().entries);
    expect(b.judge.reasons).toEqual(a.judge.reasons);
  });
});
