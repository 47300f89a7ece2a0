/**
 * The TypeScript codec against the protocol's own test vectors (firmware-proto/vectors/,
 * PROTOCOL.md §9): valid frames decode to exactly what the vector expects, re-encode and
 * re-sign byte for byte, and verify under both @noble/ed25519 and node:crypto; invalid frames
 * are refused with exactly the reason the vector names, at the stage it names.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { describe, expect, it } from 'vitest';
import { FRAME_TAG, concat, deviceIdFromKey, generateKeys, signBody } from '../../firmware-proto/signing.js';
import { decodeFrame, encodeBody, sampleValue, MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import { signFrame } from '../../firmware-proto/device.js';
import { SENSORS } from '../../firmware-proto/catalogue.js';
import { FRAME_REASONS, ProtocolError, type FrameReason } from '../../firmware-proto/reasons.js';
import { buildVectors, diffVectors } from '../../scripts/gen-vectors.js';

const VECTORS = fileURLToPath(new URL('../../firmware-proto/vectors/', import.meta.url));

interface ValidVector {
  desc: string;
  secretKey: string;
  publicKey: string;
  frame: string;
  signedMessage: string;
  expected: {
    deviceId: string;
    seq: string;
    timestampMs: string;
    sensor: { name: string; code: number };
    scale: number;
    intervalUs: number;
    count: number;
    samples: number[];
    values: Record<string, number[]>;
  };
}

interface InvalidVector {
  desc: string;
  publicKey: string;
  frame: string;
  wantReason: FrameReason;
  stage: 'decode' | 'verify';
  cofactoredVerifiersAccept?: boolean;
}

function load<T>(dir: string): [string, T][] {
  const path = `${VECTORS}${dir}/`;
  return readdirSync(path)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(path + f, 'utf8')) as T]);
}

const valid = load<ValidVector>('frames/valid');
const invalid = load<InvalidVector>('frames/invalid');
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
function opensslVerify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
  return cryptoVerify(null, msg, key, sig);
}

const DECODE_REASONS: FrameReason[] = [
  'FRAME_TOO_SHORT',
  'FRAME_OVERSIZED',
  'UNKNOWN_VERSION',
  'UNKNOWN_SENSOR',
  'BAD_SCALE',
  'BAD_SAMPLE_COUNT',
  'BAD_INTERVAL',
  'LENGTH_MISMATCH',
  'BAD_SEQUENCE',
  'SAMPLE_OUT_OF_RANGE',
];

describe('vector set', () => {
  it('is what scripts/gen-vectors.ts generates, byte for byte (deterministic, not edited by hand)', () => {
    expect(diffVectors(buildVectors(), VECTORS)).toEqual([]);
  });

  it('has a valid frame for every sensor of the catalogue and a refusal for every decode rule', () => {
    expect(valid.length).toBeGreaterThanOrEqual(20);
    expect(invalid.length).toBeGreaterThanOrEqual(40);
    const sensors = new Set(valid.map(([, v]) => v.expected.sensor.code));
    for (const s of SENSORS) expect(sensors, s.name).toContain(s.code);
    const decodeReasons = new Set(invalid.filter(([, v]) => v.stage === 'decode').map(([, v]) => v.wantReason));
    expect([...decodeReasons].sort()).toEqual([...DECODE_REASONS].sort());
    expect(invalid.filter(([, v]) => v.stage === 'verify').length).toBeGreaterThanOrEqual(10);
  });

  it('names only codes of FRAME_REASONS, and verify-stage vectors only BAD_SIGNATURE', () => {
    for (const [name, v] of invalid) {
      expect(Object.keys(FRAME_REASONS), name).toContain(v.wantReason);
      expect(['decode', 'verify'], name).toContain(v.stage);
      if (v.stage === 'verify') expect(v.wantReason, name).toBe('BAD_SIGNATURE');
    }
  });

  it('covers the edges: single-sample interval 0, both scale extremes, int32 extremes, negative samples, the size limit', () => {
    const all = valid.map(([, v]) => v.expected);
    expect(all.some((e) => e.count === 1 && e.intervalUs === 0)).toBe(true);
    expect(all.some((e) => e.scale === -9)).toBe(true);
    expect(all.some((e) => e.scale === 9)).toBe(true);
    expect(all.some((e) => e.samples.includes(-2147483648) && e.samples.includes(2147483647))).toBe(true);
    expect(all.some((e) => e.samples.some((s) => s < 0))).toBe(true);
    const longest = Math.max(...valid.map(([, v]) => v.frame.length / 2));
    expect(longest).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(longest).toBeGreaterThan(MAX_FRAME_BYTES - 4);
  });
});

describe.each(valid)('valid frame %s', (_name, v) => {
  const raw = bytes(v.frame);
  const pub = bytes(v.publicKey);

  it('decodes to exactly the expected fields and values', () => {
    const f = decodeFrame(raw);
    const e = v.expected;
    expect({
      deviceId: f.deviceId,
      seq: f.seq.toString(),
      timestampMs: f.timestampMs.toString(),
      sensor: { name: f.spec.name, code: f.sensor },
      scale: f.scale,
      intervalUs: f.intervalUs,
      count: f.count,
      samples: [...f.samples],
    }).toEqual({
      deviceId: e.deviceId,
      seq: e.seq,
      timestampMs: e.timestampMs,
      sensor: e.sensor,
      scale: e.scale,
      intervalUs: e.intervalUs,
      count: e.count,
      samples: e.samples,
    });
    const values: Record<string, number[]> = {};
    f.spec.channels.forEach((c, ci) => {
      values[c] = Array.from({ length: f.count }, (_, i) => sampleValue(f, i, ci));
    });
    expect(values).toEqual(e.values);
    expect(hex(concat(FRAME_TAG, f.body))).toBe(v.signedMessage);
  });

  it('re-encodes and re-signs byte-identically from the seed (Ed25519 is deterministic)', () => {
    const keys = generateKeys(bytes(v.secretKey));
    expect(hex(keys.publicKey)).toBe(v.publicKey);
    expect(deviceIdFromKey(keys.publicKey)).toBe(v.expected.deviceId);
    const e = v.expected;
    const body = encodeBody({
      deviceId: e.deviceId,
      seq: BigInt(e.seq),
      timestampMs: BigInt(e.timestampMs),
      sensor: e.sensor.code,
      scale: e.scale,
      intervalUs: e.intervalUs,
      samples: Int32Array.from(e.samples),
    });
    expect(hex(concat(body, signBody(body, keys.secretKey)))).toBe(v.frame);
    expect(hex(signFrame(decodeFrame(raw), keys.secretKey))).toBe(v.frame);
  });

  it('verifies under @noble/ed25519 (both modes) and node:crypto', () => {
    const msg = bytes(v.signedMessage);
    const sig = raw.subarray(raw.length - 64);
    expect(ed.verify(sig, msg, pub)).toBe(true);
    expect(ed.verify(sig, msg, pub, { zip215: false })).toBe(true);
    expect(opensslVerify(pub, msg, sig)).toBe(true);
  });
});

describe.each(invalid)('invalid frame %s', (_name, v) => {
  const raw = bytes(v.frame);
  if (v.stage === 'decode') {
    it(`is refused by decodeFrame with ${v.wantReason}`, () => {
      let thrown: unknown;
      try {
        decodeFrame(raw);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(ProtocolError);
      expect((thrown as ProtocolError).code).toBe(v.wantReason);
    });
  } else {
    it('decodes, but its signature verifies under neither node:crypto nor @noble/ed25519', () => {
      const f = decodeFrame(raw);
      const pub = bytes(v.publicKey);
      const msg = concat(FRAME_TAG, f.body);
      expect(opensslVerify(pub, msg, f.signature)).toBe(false);
      // The cofactored equation of @noble/ed25519 accepts exactly the vectors flagged for it:
      // the reason PROTOCOL.md §5.2 fixes the cofactorless rule for everyone.
      const cofactored = v.cofactoredVerifiersAccept === true;
      expect(ed.verify(f.signature, msg, pub, { zip215: false })).toBe(cofactored);
      expect(ed.verify(f.signature, msg, pub)).toBe(cofactored);
    });
  }
});
