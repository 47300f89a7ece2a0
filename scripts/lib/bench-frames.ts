/**
 * The bench's frames: pre-signed frames of each kind, and figure (a), bare node:crypto
 * verification on one core (docs/bench.md).
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { signFrame } from '../../firmware-proto/device.js';
import { encodeBody, type FrameBody } from '../../firmware-proto/frame.js';
import { concat, frameSigningMessage } from '../../firmware-proto/signing.js';
import { fleetDevices, type SimDevice } from '../../device-sim/fleet.js';
import { sig } from './stats.js';

// ---------------------------------------------------------------- frames

export type Kind = 'heart_rate' | 'accelerometer' | 'ecg';
export const KINDS: readonly Kind[] = ['heart_rate', 'accelerometer', 'ecg'];

/** Catalogue defaults: heart_rate 5 samples at 1 Hz, accelerometer 25 × (x, y, z) at 25 Hz, ecg 250 samples at 250 Hz. */
export function kindSpec(kind: Kind): { code: number; scale: number; intervalUs: number; count: number; channels: number; frameMs: number } {
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
export function samplesFor(kind: Kind, n: number): Int32Array {
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
export class FastSigner {
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
    if (Buffer.compare(Buffer.from(signFrame(body, this.secretKey)), Buffer.from(raw)) !== 0)
      throw new Error(`node:crypto and firmware-proto signFrame disagree for device ${body.deviceId}`);
  }
}

/**
 * `count` frames of one device, seq 1, 2, … in order; the kinds cycle through `kinds`. Each
 * kind's frames tile time without overlap (the gateway's TIME_OVERLAP rule) and the last one
 * ends at least two minutes before now (no CLOCK_SKEW; far inside the 7-day backlog bound).
 */
export function presign(d: SimDevice, count: number, kinds: readonly Kind[]): Buffer[] {
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
    const body: FrameBody = {
      deviceId: d.deviceId,
      seq: BigInt(i + 1),
      timestampMs: BigInt(start),
      sensor: s.code,
      scale: s.scale,
      intervalUs: s.intervalUs,
      samples: samplesFor(kind, i),
    };
    const raw = signer.sign(body);
    if (i === 0) signer.checkAgainstFirmwareProto(body, raw);
    out.push(raw);
  }
  return out;
}

// ---------------------------------------------------------------- (a) bare verification

export interface VerifyFigure {
  frames: string;
  frameBytes: number;
  messageBytes: number;
  verifications: number;
  wallS: number;
  perSecond: number;
  cpuUsPerVerification: number;
}

/** Verifies signed messages of the given kinds in a tight loop on this thread, like one verify worker. */
export function benchVerify(kinds: readonly Kind[], label: string, seconds: number): VerifyFigure {
  const devices = fleetDevices('bench-verify', 8, 'heart_rate');
  const keys = devices.map((d) =>
    createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), d.keys.publicKey]), format: 'der', type: 'spki' }),
  );
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

export function splitFrames(devices: readonly SimDevice[], perDevice: number, kinds: readonly Kind[]): Buffer[][] {
  return devices.map((d) => presign(d, perDevice, kinds));
}
