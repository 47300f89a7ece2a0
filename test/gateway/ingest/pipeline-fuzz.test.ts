/**
 * The verification path under fuzzing: IngestPipeline.submit built from real parts (a
 * FileRegistry with a few enrolled devices, a VerifyPool with 2 workers, a Wal and a
 * Quarantine in a temp dir), fed honest frames of its devices interleaved with 100 000
 * hostile or broken inputs from a seeded PRNG:
 *
 *   - bit flips anywhere (header, samples, signature), byte insertions and deletions,
 *     truncations, splices of two frames, header fields at boundary values, random garbage;
 *   - frames of one device sent as another (other sender, other topic), forgeries signed
 *     with a key that is not the enrolled one, frames of a device that is not enrolled;
 *   - replays of accepted frames with and without the retransmission flag, reorderings of
 *     a device's recent frames, and frames a device really signed but should not have sent
 *     (clock far ahead or behind, time overlap, a reused seq).
 *
 * Every outcome must equal the verdict of `Reference`, a slow, sequential reading of
 * PROTOCOL.md §5.3 (decoding, §3.2, is checked against its own reference in
 * frame-fuzz.test.ts, so decodeFrame is the oracle for it here). And, whatever the reference
 * says: submit never throws; a frame is accepted only if it is byte-identical to a frame its
 * device signed, and never twice; every honest frame is accepted (except a revoked device's
 * frames from its revocation on); the counters add up; the spool holds exactly the accepted
 * frames, in acceptance order, each verifying under node:crypto; the quarantine rotates and
 * stays within its disk bound.
 *
 * Run time (40-55 s on 2 cores) is mostly the Quarantine: it writes one line per rejected
 * frame, strictly one after another, with a stat and an appendFile each (~0.3 ms a line).
 */
import { prng, type TestRng } from '../../support/prng.js';
import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFrame, encodeBody, frameEndMs, MAX_FRAME_BYTES, type FrameBody } from '../../../firmware-proto/frame.js';
import { SENSORS } from '../../../firmware-proto/catalogue.js';
import { signFrame, type Measurement } from '../../../firmware-proto/device.js';
import { FRAME_REASONS, ProtocolError, type FrameReason } from '../../../firmware-proto/reasons.js';
import { FRAME_TAG, concat } from '../../../firmware-proto/signing.js';
import { Wal } from '../../../gateway/spool/wal.js';
import { FileRegistry } from '../../../gateway/registry/file-registry.js';
import { VerifyPool } from '../../../gateway/verify/pool.js';
import { Quarantine } from '../../../gateway/ingest/quarantine.js';
import { Metrics } from '../../../gateway/status/metrics.js';
import { DeviceStates } from '../../../gateway/ingest/device-state.js';
import { IngestPipeline, type IngestContext, type Outcome } from '../../../gateway/ingest/pipeline.js';
import { decodeSpoolRecord } from '../../../gateway/ingest/spool-record.js';
import { testDevice, type TestDevice } from '../../support/devices.js';

const FUZZ = 100_000;
const SEED = 0x0b5e_55ed;
const HONEST_PER_DEVICE = 500;
/** Frames submitted together before waiting for their outcomes (the pool batches verifications per tick). */
const BATCH = 256;

const NOW = 1_800_000_000_000;
const DAY = 24 * 3600_000;
const MAX_FUTURE_MS = 30_000;
const MAX_BACKLOG_MS = 7 * DAY;
/** Honest frames start 6 days back (inside the 7-day backlog bound), one every STEP ms: never overlapping, all before NOW. */
const T0 = NOW - 6 * DAY;
const STEP = 1_000_000;
/** The revoked device is revoked half-way through its honest frames. */
const REVOKED_AT = T0 + (HONEST_PER_DEVICE / 2) * STEP + 1;
/** The protocol requires remembering at least this many accepted frames per device for duplicates (§5.3). */
const DEDUP_AT_LEAST = 256;
/** Reasons given only after the signature verified (§5.3 steps 4-7). */
const PAST_SIGNATURE = new Set<FrameReason>(['DEVICE_REVOKED', 'REPLAY', 'CLOCK_SKEW', 'TIME_OVERLAP']);
/** Small files, so that ~100 000 quarantine lines rotate many times and keep a few MiB on disk. */
const QUARANTINE_FILE_BYTES = 512 * 1024;
const QUARANTINE_KEEP = 8;

type Rng = TestRng;

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const keyObject = (pub: Uint8Array): KeyObject => createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });

function opensslVerify(key: KeyObject, body: Uint8Array, sig: Uint8Array): boolean {
  try {
    return cryptoVerify(null, concat(FRAME_TAG, body), key, sig);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- the reference reading of §5.3

type Verdict = { status: 'accepted' } | { status: 'duplicate' } | { status: 'rejected'; reason: FrameReason };
/** What the protocol allows for one submission: usually one verdict, two for a retransmission older than the dedup window. */
type Expected = Verdict[];

interface RefDevice {
  key: KeyObject;
  revokedAtMs?: number;
  highest: bigint;
  /** seq → hex of the frame accepted with it. */
  accepted: Map<bigint, string>;
  /** accepted seqs, in acceptance order */
  order: bigint[];
  lastEnd: Map<number, bigint>;
}

/** PROTOCOL.md §5.3, step by step, one frame at a time, in submission order. */
class Reference {
  readonly devices = new Map<string, RefDevice>();
  private readonly sigCache = new Map<string, boolean>();
  seqGaps = 0;

  enrol(d: TestDevice, revokedAtMs?: number): void {
    this.devices.set(d.id, {
      key: keyObject(d.keys.publicKey),
      ...(revokedAtMs !== undefined ? { revokedAtMs } : {}),
      highest: 0n,
      accepted: new Map(),
      order: [],
      lastEnd: new Map(),
    });
  }

  judge(raw: Uint8Array, ctx: IngestContext): Expected {
    // §3.2: decoding, first broken rule.
    let f: ReturnType<typeof decodeFrame>;
    try {
      f = decodeFrame(raw);
    } catch (e) {
      if (e instanceof ProtocolError) return [{ status: 'rejected', reason: e.code }];
      throw e;
    }
    const reject = (reason: FrameReason): Expected => [{ status: 'rejected', reason }];
    // 1. enrolled
    const dev = this.devices.get(f.deviceId);
    if (!dev) return reject('UNKNOWN_DEVICE');
    // 2. the authenticated sender, on its own channel
    if (f.deviceId !== ctx.sender || (ctx.channelDevice !== undefined && ctx.channelDevice !== ctx.sender)) return reject('DEVICE_MISMATCH');
    // 3. signature under the enrolled key (§5.2, OpenSSL)
    const h = hex(raw);
    let sigOk = this.sigCache.get(h);
    if (sigOk === undefined) {
      sigOk = opensslVerify(dev.key, f.body, f.signature);
      if (this.sigCache.size < 200_000) this.sigCache.set(h, sigOk);
    }
    if (!sigOk) return reject('BAD_SIGNATURE');
    // 4. not revoked at the frame's time
    if (dev.revokedAtMs !== undefined && f.timestampMs >= BigInt(dev.revokedAtMs)) return reject('DEVICE_REVOKED');
    // 5. freshness of seq
    if (f.seq <= dev.highest) {
      if (ctx.retransmission && dev.accepted.get(f.seq) === h) {
        const age = dev.order.length - dev.order.lastIndexOf(f.seq);
        return age <= DEDUP_AT_LEAST ? [{ status: 'duplicate' }] : [{ status: 'duplicate' }, { status: 'rejected', reason: 'REPLAY' }];
      }
      return reject('REPLAY');
    }
    // 6. clock
    if (f.timestampMs > BigInt(NOW + MAX_FUTURE_MS) || f.timestampMs < BigInt(NOW - MAX_BACKLOG_MS)) return reject('CLOCK_SKEW');
    // 7. strictly after the previous accepted frame of the same sensor
    const last = dev.lastEnd.get(f.sensor);
    if (last !== undefined && f.timestampMs <= last) return reject('TIME_OVERLAP');
    if (dev.highest > 0n) this.seqGaps += Number(f.seq - dev.highest - 1n);
    dev.highest = f.seq;
    dev.accepted.set(f.seq, h);
    dev.order.push(f.seq);
    dev.lastEnd.set(f.sensor, frameEndMs(f));
    return [{ status: 'accepted' }];
  }
}

// ---------------------------------------------------------------- the traffic

interface Item {
  raw: Uint8Array;
  ctx: IngestContext;
  kind: string;
  /** Set on the honest stream: each honest frame is submitted exactly once, in seq order. */
  honest?: { device: string; ts: number };
}

interface Signed {
  raw: Uint8Array;
  owner: TestDevice;
}

interface HonestDevice {
  dev: TestDevice;
  sent: number;
  lastTs: number;
  lastSensor: number;
  /** This device's signed frames already in the stream (honest and faulty), for replays and reorderings. */
  signed: Uint8Array[];
}

const ctxOf = (sender: string, r: Rng, extra: Partial<IngestContext> = {}): IngestContext =>
  r.bool(0.1)
    ? { transport: 'ble', sender, retransmission: r.bool(0.3), ...extra }
    : { transport: 'mqtt', sender, channelDevice: sender, retransmission: r.bool(0.3), ...extra };

function randomBytes(r: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const w = r.int(2 ** 32);
    for (let k = 0; k < 4 && i + k < n; k++) out[i + k] = (w >>> (8 * k)) & 0xff;
  }
  return out;
}

/**
 * A fast signer for the fuzz's own signed frames (faults, forgeries, an unenrolled device):
 * node:crypto signs ~10× faster than the device's @noble/ed25519, and Ed25519 is
 * deterministic, so the bytes are the same (checked in beforeAll). Honest frames are still
 * signed by the device core.
 */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
function fastSigner(seed: Uint8Array): (body: FrameBody) => Uint8Array {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  return (f) => {
    const b = encodeBody(f);
    return concat(b, cryptoSign(null, concat(FRAME_TAG, b), key));
  };
}

/** Samples of a sensor within its range at its default scale, edges included now and then. */
function measurement(r: Rng, ts: number, sensorCode?: number): Measurement {
  const spec = sensorCode !== undefined ? SENSORS.find((s) => s.code === sensorCode)! : r.pick(SENSORS);
  const f = 10 ** -spec.defaultScale;
  const lo = spec.min * f;
  const hi = spec.max * f;
  const count = 1 + r.int(6);
  const samples = Int32Array.from({ length: count * spec.channels.length }, () => (r.bool(0.05) ? r.pick([lo, hi]) : lo + r.int(hi - lo + 1)));
  // A single sample may come with interval 0 (§3.2 rule 7); a count flip then makes BAD_INTERVAL reachable.
  const intervalUs = count === 1 && r.bool(0.5) ? 0 : spec.defaultIntervalUs;
  return { timestampMs: BigInt(ts), sensor: spec.code, scale: spec.defaultScale, intervalUs, samples };
}

class Traffic {
  readonly honest: HonestDevice[];
  /** Every signed frame already in the stream: bases for mutations, replays and splices. */
  private readonly pool: Signed[] = [];
  /** hex of every frame a device signed with its own enrolled key (honest or faulty). */
  readonly signedByDevice = new Set<string>();
  fuzzed = 0;
  private strangerSeq = 1n;
  private readonly signers = new Map<string, (body: FrameBody) => Uint8Array>();

  constructor(
    private readonly r: Rng,
    devices: TestDevice[],
    private readonly stranger: TestDevice,
  ) {
    this.honest = devices.map((dev) => ({ dev, sent: 0, lastTs: 0, lastSensor: 1, signed: [] }));
  }

  private signer(d: TestDevice): (body: FrameBody) => Uint8Array {
    let s = this.signers.get(d.id);
    if (!s) this.signers.set(d.id, (s = fastSigner(d.keys.secretKey)));
    return s;
  }

  /** Fuzzing starts once a few signed frames are in the stream to mutate. */
  get hasBases(): boolean {
    return this.pool.length >= this.honest.length;
  }

  get honestLeft(): number {
    return this.honest.reduce((n, h) => n + HONEST_PER_DEVICE - h.sent, 0);
  }

  private remember(owner: TestDevice, raw: Uint8Array, h?: HonestDevice): void {
    this.pool.push({ raw, owner });
    this.signedByDevice.add(hex(raw));
    h?.signed.push(raw);
  }

  /** The next honest frame of a random device that has some left, as the device's core signs it. */
  nextHonest(): Item {
    const left = this.honest.filter((h) => h.sent < HONEST_PER_DEVICE);
    const h = this.r.pick(left);
    // Now and then a device skips sequence numbers (a reboot inside a reserved block, §8.1).
    if (this.r.bool(0.02)) for (let k = 1 + this.r.int(3); k > 0; k--) h.dev.core.counter.take();
    const ts = T0 + h.sent * STEP + this.r.int(STEP / 2);
    const m = measurement(this.r, ts);
    const { raw } = h.dev.core.record(m);
    h.sent++;
    h.lastTs = ts;
    h.lastSensor = m.sensor;
    this.remember(h.dev, raw, h);
    return {
      raw,
      ctx: { transport: 'mqtt', sender: h.dev.id, channelDevice: h.dev.id, retransmission: false },
      kind: 'honest',
      honest: { device: h.dev.id, ts },
    };
  }

  private base(): Signed {
    // Mostly recent frames (replays inside the dedup window), sometimes any.
    const n = this.pool.length;
    return this.r.bool(0.7) ? this.pool[n - 1 - this.r.int(Math.min(n, 300))]! : this.pool[this.r.int(n)]!;
  }

  /** One fuzz step: usually one item, several for a reordering. */
  fuzz(): Item[] {
    const r = this.r;
    const b = this.base();
    const owner = b.owner.id;
    const out = (raw: Uint8Array, kind: string, ctx = ctxOf(owner, r)): Item[] => [{ raw, ctx, kind }];
    const m = b.raw.slice();
    const v = new DataView(m.buffer);
    const kind = r.int(20);
    switch (kind) {
      case 0:
      case 1: {
        for (let k = 1 + r.int(4); k > 0; k--) {
          const i = r.int(m.length);
          m[i] = m[i]! ^ (1 << r.int(8));
        }
        return out(m, 'bit flips anywhere');
      }
      case 2: {
        const i = r.int(33);
        m[i] = m[i]! ^ (1 << r.int(8));
        return out(m, 'header bit flip');
      }
      case 3: {
        const i = m.length - 64 + r.int(64);
        m[i] = m[i]! ^ (1 << r.int(8));
        return out(m, 'signature bit flip');
      }
      case 4: {
        const i = 33 + r.int(m.length - 97);
        m[i] = m[i]! ^ (1 << r.int(8));
        return out(m, 'sample bit flip');
      }
      case 5: {
        const at = r.int(m.length + 1);
        return out(concat(m.subarray(0, at), randomBytes(r, 1 + r.int(4)), m.subarray(at)), 'insertion');
      }
      case 6: {
        const at = r.int(m.length);
        return out(concat(m.subarray(0, at), m.subarray(Math.min(m.length, at + 1 + r.int(4)))), 'deletion');
      }
      case 7:
        return out(m.slice(0, r.int(m.length)), 'truncation');
      case 8: {
        const other = this.base().raw;
        return out(concat(m.subarray(0, r.int(m.length + 1)), other.subarray(r.int(other.length + 1))), 'splice');
      }
      case 9: {
        const n = r.bool(0.8) ? r.int(400) : r.int(MAX_FRAME_BYTES + 200);
        const g = randomBytes(r, n);
        if (r.bool(0.5)) g.set(m.subarray(0, Math.min(33, n)));
        return out(g, 'garbage', ctxOf(r.pick(this.honest).dev.id, r));
      }
      case 10: {
        switch (r.int(6)) {
          case 0:
            v.setUint8(0, r.pick([0, 2, 255]));
            break;
          case 1:
            v.setUint8(25, r.pick([0, 8, 255, 1, 5]));
            break;
          case 2:
            v.setInt8(26, r.pick([-128, -10, -9, 9, 10, 127]));
            break;
          case 3:
            v.setUint32(27, r.pick([0, 1, 0xffffffff]));
            break;
          case 4:
            v.setUint16(31, r.pick([0, 1, 2, 0xffff]));
            break;
          default:
            v.setBigUint64(9, r.pick([0n, 1n, (1n << 64n) - 1n]));
        }
        return out(m, 'header field at a boundary');
      }
      case 11: {
        // The frame of one device, sent by another authenticated device, or on another device's topic.
        const other = r.pick(this.honest.filter((h) => h.dev.id !== owner)).dev.id;
        return r.bool(0.5)
          ? out(m, 'sent as another device', ctxOf(other, r))
          : out(m, 'sent on another topic', { transport: 'mqtt', sender: owner, channelDevice: other, retransmission: r.bool(0.3) });
      }
      case 12:
      case 13:
        return out(m, 'replay (DUP set)', ctxOf(owner, r, { retransmission: true }));
      case 14:
        return out(m, 'replay (DUP clear)', ctxOf(owner, r, { retransmission: false }));
      case 15: {
        // A device's recent frames again, shuffled, each with or without DUP.
        const h = this.honest.find((x) => x.dev.id === owner) ?? r.pick(this.honest);
        const recent = h.signed.slice(-(2 + r.int(5)));
        for (let i = recent.length - 1; i > 0; i--) {
          const j = r.int(i + 1);
          [recent[i], recent[j]] = [recent[j]!, recent[i]!];
        }
        return recent.map((raw) => ({ raw, ctx: ctxOf(h.dev.id, r), kind: 'reordering' }));
      }
      case 16:
        return [this.faulty()];
      case 17: {
        // A forgery: a fresh, well-formed frame naming an enrolled device, signed with another key.
        const victim = r.pick(this.honest);
        const raw = this.signer(this.stranger)({
          ...measurement(r, NOW - r.int(DAY)),
          deviceId: victim.dev.id,
          seq: victim.dev.core.counter.peek() + BigInt(r.int(1000)),
        });
        return out(raw, 'forged signature', ctxOf(victim.dev.id, r));
      }
      case 18: {
        // A device that is not enrolled, with perfectly good frames of its own.
        const raw = this.signer(this.stranger)({ ...measurement(r, NOW - r.int(DAY)), deviceId: this.stranger.id, seq: this.strangerSeq++ });
        return out(raw, 'not enrolled', ctxOf(r.bool(0.5) ? this.stranger.id : r.pick(this.honest).dev.id, r));
      }
      default: {
        // Two mutations on top of each other.
        const i = r.int(m.length);
        m[i] = m[i]! ^ (1 << r.int(8));
        const at = r.int(m.length);
        return out(r.bool(0.5) ? m.slice(0, at) : concat(m.subarray(0, at), randomBytes(r, 1 + r.int(8)), m.subarray(at)), 'flip and cut');
      }
    }
  }

  /**
   * A frame its device really signed but must not be accepted: its clock far ahead or
   * behind, overlapping the device's last frame of that sensor, or reusing a seq. A seq above
   * the highest accepted is only ever paired with such a fault, so the honest stream goes on.
   */
  private faulty(): Item {
    const r = this.r;
    const h = r.pick(this.honest.filter((x) => x.sent > 0));
    const next = h.dev.core.counter.peek();
    const sign = (ts: number, seq: bigint, sensor?: number): Uint8Array => this.signer(h.dev)({ ...measurement(r, ts, sensor), deviceId: h.dev.id, seq });
    let raw: Uint8Array;
    let kind: string;
    switch (r.int(4)) {
      case 0:
        raw = sign(NOW + MAX_FUTURE_MS + 1 + r.int(10 * DAY), next + BigInt(r.int(3)));
        kind = 'signed, clock ahead';
        break;
      case 1:
        raw = sign(NOW - MAX_BACKLOG_MS - 1 - r.int(30 * DAY), next + BigInt(r.int(3)));
        kind = 'signed, clock behind';
        break;
      case 2:
        raw = sign(h.lastTs - r.int(STEP / 2), next + BigInt(r.int(3)), h.lastSensor);
        kind = 'signed, time overlap';
        break;
      default:
        raw = sign(h.lastTs + 1 + r.int(1000), 1n + BigInt(r.int(Number(next - 1n))));
        kind = 'signed, seq reused';
    }
    this.remember(h.dev, raw, h);
    return { raw, ctx: ctxOf(h.dev.id, r), kind };
  }
}

// ---------------------------------------------------------------- the run

describe('IngestPipeline under fuzzing', () => {
  let dir: string;
  let wal: Wal;
  let verifier: VerifyPool;
  let quarantine: Quarantine;
  let pipeline: IngestPipeline;
  let metrics: Metrics;
  let devices: TestDevice[];
  let revoked: TestDevice;
  let stranger: TestDevice;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vp-pipe-fuzz-'));
    wal = await Wal.open(join(dir, 'spool'));
    const registry = new FileRegistry(join(dir, 'registry.json'));
    devices = ['alice', 'bob', 'carol', 'dave'].map((n) => testDevice(`fuzz-${n}`));
    revoked = devices[3]!;
    stranger = testDevice('fuzz-stranger');
    expect((await registry.enrol(devices.map((d) => d.enrolment))).enrolled).toHaveLength(devices.length);
    await registry.revoke(revoked.id, REVOKED_AT);
    // The fast signer makes the same bytes as the device's own signer.
    const body: FrameBody = {
      deviceId: stranger.id,
      seq: 7n,
      timestampMs: BigInt(NOW),
      sensor: 1,
      scale: 0,
      intervalUs: 1_000_000,
      samples: Int32Array.of(60, 61),
    };
    expect(hex(fastSigner(stranger.keys.secretKey)(body))).toBe(hex(signFrame(body, stranger.keys.secretKey)));
    metrics = new Metrics();
    verifier = new VerifyPool(2);
    quarantine = new Quarantine(join(dir, 'quarantine'), QUARANTINE_FILE_BYTES, QUARANTINE_KEEP);
    pipeline = new IngestPipeline({ registry, verifier, wal, states: new DeviceStates(), quarantine, metrics, now: () => NOW });
  });

  afterAll(async () => {
    await verifier?.close();
    await wal?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    `decides ${FUZZ} mutated frames as §5.3 says, never loses an honest frame, and keeps spool, counters and quarantine consistent`,
    { timeout: 120_000 },
    async () => {
      const started = performance.now();
      const r = prng(SEED);
      const traffic = new Traffic(r, devices, stranger);
      const ref = new Reference();
      for (const d of devices) ref.enrol(d, d === revoked ? REVOKED_AT : undefined);

      const failures: string[] = [];
      const fail = (msg: string): void => {
        if (failures.length < 20) failures.push(msg);
      };
      const seen = new Map<string, number>();
      const count = (k: string): void => void seen.set(k, (seen.get(k) ?? 0) + 1);
      const acceptedHex = new Set<string>();
      const byLsn = new Map<bigint, string>();
      const honestOutcomes: { item: Item; outcome: Outcome }[] = [];
      let submitted = 0;

      const run = async (item: Item, expected: Expected, n: number): Promise<void> => {
        let outcome: Outcome;
        try {
          outcome = await pipeline.submit(item.raw, item.ctx);
        } catch (e) {
          fail(`#${n} (${item.kind}): submit rejected: ${String(e)}`);
          return;
        }
        const h = hex(item.raw);
        count(outcome.status === 'rejected' ? outcome.reason : outcome.status);
        if (item.honest) honestOutcomes.push({ item, outcome });
        if (outcome.status === 'rejected' && !(outcome.reason in FRAME_REASONS))
          fail(`#${n} (${item.kind}): reason ${String(outcome.reason)} is not a frame reason`);
        const got: Verdict = outcome.status === 'rejected' ? { status: 'rejected', reason: outcome.reason } : { status: outcome.status };
        if (!expected.some((e) => e.status === got.status && (e.status !== 'rejected' || (got.status === 'rejected' && e.reason === got.reason)))) {
          fail(`#${n} (${item.kind}): pipeline says ${JSON.stringify(got)}, §5.3 says ${JSON.stringify(expected)}; frame ${h.slice(0, 80)}…`);
        }
        // Past the signature check (§5.3 step 3) only with the exact bytes a device signed: no mutation keeps a signature valid.
        if ((outcome.status !== 'rejected' || PAST_SIGNATURE.has(outcome.reason)) && !traffic.signedByDevice.has(h)) {
          fail(`#${n} (${item.kind}): ${outcome.status === 'rejected' ? outcome.reason : outcome.status} for bytes no device signed: ${h.slice(0, 80)}…`);
        }
        if (outcome.status === 'accepted') {
          if (!traffic.signedByDevice.has(h)) fail(`#${n} (${item.kind}): accepted a frame no device signed: ${h.slice(0, 80)}…`);
          if (acceptedHex.has(h)) fail(`#${n} (${item.kind}): accepted the same frame twice`);
          if (byLsn.has(outcome.lsn)) fail(`#${n} (${item.kind}): LSN ${outcome.lsn} given twice`);
          acceptedHex.add(h);
          byLsn.set(outcome.lsn, h);
        }
      };

      // The traffic and the reference's verdicts first: neither depends on what the pipeline
      // answers, and the pipeline then has the event loop to itself (its quarantine writes one
      // line at a time, a few file-system round trips each, and that is most of the run time).
      const plan: { item: Item; expected: Expected }[] = [];
      while (traffic.fuzzed < FUZZ || traffic.honestLeft > 0) {
        // Honest frames spread evenly through the fuzz traffic.
        const honestLeft = traffic.honestLeft;
        const fuzzLeft = FUZZ - traffic.fuzzed;
        let items: Item[];
        if (honestLeft > 0 && (!traffic.hasBases || r.int(honestLeft + fuzzLeft) < honestLeft)) items = [traffic.nextHonest()];
        else {
          items = traffic.fuzz().slice(0, fuzzLeft);
          traffic.fuzzed += items.length;
        }
        // The reference judges in submission order, one frame after the other.
        for (const item of items) plan.push({ item, expected: ref.judge(item.raw, item.ctx) });
      }
      const plannedMs = performance.now() - started;

      // Submitted in the same order, a few batches in flight: the pipeline decides each device's
      // frames in arrival order, so concurrency must not change a single verdict.
      const inflight: Promise<unknown>[] = [];
      for (let i = 0; i < plan.length; i += BATCH) {
        inflight.push(Promise.all(plan.slice(i, i + BATCH).map(({ item, expected }) => run(item, expected, submitted++))));
        if (inflight.length > 4) await inflight.shift();
      }
      await Promise.all(inflight);
      await pipeline.idle();
      await quarantine.flush();
      const decidedMs = performance.now() - started;

      expect(failures).toEqual([]);
      expect(traffic.fuzzed).toBe(FUZZ);
      expect(submitted).toBe(FUZZ + devices.length * HONEST_PER_DEVICE);

      // Honest frames: every one accepted, except the revoked device's from its revocation on.
      expect(honestOutcomes).toHaveLength(devices.length * HONEST_PER_DEVICE);
      for (const { item, outcome } of honestOutcomes) {
        const want = item.honest!.device === revoked.id && item.honest!.ts >= REVOKED_AT ? 'DEVICE_REVOKED' : 'accepted';
        expect(outcome.status === 'rejected' ? outcome.reason : outcome.status, `honest frame of ${item.honest!.device} at ${item.honest!.ts}`).toBe(want);
      }

      // Counters: every frame counted once, every rejection under one code, and as many of each as the reference says.
      expect(metrics.received).toBe(submitted);
      expect(metrics.accepted + metrics.duplicates + metrics.rejected).toBe(metrics.received);
      expect(Object.values(metrics.rejectedBy).reduce((a, b) => a + b, 0)).toBe(metrics.rejected);
      expect(metrics.byTransport.mqtt.received + metrics.byTransport.ble.received).toBe(metrics.received);
      expect(metrics.accepted).toBe(seen.get('accepted'));
      expect(metrics.duplicates).toBe(seen.get('duplicate'));
      for (const reason of Object.keys(FRAME_REASONS) as FrameReason[]) expect(metrics.rejectedBy[reason], reason).toBe(seen.get(reason) ?? 0);
      expect(metrics.seqGaps).toBe(ref.seqGaps);
      // The traffic reached every reason, duplicates and plenty of acceptances.
      for (const reason of Object.keys(FRAME_REASONS)) expect(seen.get(reason) ?? 0, reason).toBeGreaterThan(0);
      expect(seen.get('duplicate') ?? 0).toBeGreaterThan(100);
      expect(metrics.accepted).toBe(acceptedHex.size);

      // Spool: exactly the accepted frames, LSN 1…n in acceptance order, each verifying under node:crypto.
      const reader = wal.reader();
      const spooled = reader.read(1_000_000, 1 << 30).map((rec) => decodeSpoolRecord(rec.lsn, rec.payload));
      reader.close();
      expect(spooled.map((s) => s.lsn)).toEqual(Array.from({ length: acceptedHex.size }, (_, i) => BigInt(i + 1)));
      const keys = new Map(devices.map((d) => [d.id, keyObject(d.keys.publicKey)]));
      const lastSeq = new Map<string, bigint>();
      for (const s of spooled) {
        expect(hex(s.frame.raw)).toBe(byLsn.get(s.lsn));
        expect(opensslVerify(keys.get(s.frame.deviceId)!, s.frame.body, s.frame.signature), `spooled frame at LSN ${s.lsn}`).toBe(true);
        expect(s.frame.seq > (lastSeq.get(s.frame.deviceId) ?? 0n), `seq order of ${s.frame.deviceId}`).toBe(true);
        lastSeq.set(s.frame.deviceId, s.frame.seq);
      }
      for (const [id, dev] of ref.devices) expect(spooled.filter((s) => s.frame.deviceId === id).map((s) => s.frame.seq)).toEqual(dev.order);

      // Quarantine: rotated, within (keep + 1) files of its size, every line a coded rejection.
      const qdir = join(dir, 'quarantine');
      const files = readdirSync(qdir);
      const rotated = files.filter((f) => /^quarantine-\d+-\d+\.jsonl$/.test(f));
      expect(files.filter((f) => !rotated.includes(f))).toEqual(['quarantine.jsonl']);
      expect(rotated.length).toBeGreaterThanOrEqual(1);
      expect(rotated.length).toBeLessThanOrEqual(QUARANTINE_KEEP);
      const qBytes = files.reduce((n, f) => n + statSync(join(qdir, f)).size, 0);
      expect(qBytes).toBeLessThanOrEqual((QUARANTINE_KEEP + 1) * QUARANTINE_FILE_BYTES);
      const kept = new Map<string, number>();
      for (const f of files) {
        for (const line of readFileSync(join(qdir, f), 'utf8').split('\n').filter(Boolean)) {
          const e = JSON.parse(line) as { reason: string; bytes: number; raw: string };
          expect(e.reason in FRAME_REASONS, e.reason).toBe(true);
          kept.set(e.reason, (kept.get(e.reason) ?? 0) + 1);
        }
      }
      for (const [reason, n] of kept) expect(n).toBeLessThanOrEqual(metrics.rejectedBy[reason as FrameReason]);

      const totalMs = performance.now() - started;
      console.info(
        `pipeline fuzz: ${submitted} frames (${FUZZ} fuzzed) planned in ${(plannedMs / 1000).toFixed(1)} s, decided by ${(decidedMs / 1000).toFixed(1)} s, checked by ${(totalMs / 1000).toFixed(1)} s; ` +
          `accepted ${metrics.accepted}, duplicates ${metrics.duplicates}, rejected ${metrics.rejected}; quarantine ${rotated.length + 1} files, ${(qBytes / 1024).toFixed(0)} KiB; ` +
          `outcomes ${JSON.stringify(Object.fromEntries([...seen].sort((a, b) => b[1] - a[1])))}`,
      );
    },
  );
});
