/**
 * The GATT profile against its own vectors (firmware-proto/vectors/gatt/, PROTOCOL.md §10.10):
 * the files are exactly what scripts/gen-gatt-vectors.ts generates; the fragmenter reproduces
 * every fragmentation byte for byte; the reassembler reaches every stated outcome, step by step;
 * control and info values decode, re-encode and fail exactly as stated.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeFrame } from '../../firmware-proto/frame.js';
import { fragmentCount, fragmentFrame, notificationBytes, parseFragmentHeader, Reassembler, type ReassemblyVerdict } from '../../firmware-proto/fragment.js';
import {
  ATT_ERROR_FOR,
  CONTROL_CHARACTERISTIC_UUID,
  FRAME_CHARACTERISTIC_UUID,
  GATT_BASE_UUID,
  INFO_CHARACTERISTIC_UUID,
  VITALPROOF_SERVICE_UUID,
  decodeControl,
  decodeInfo,
  deriveGattUuid,
  encodeAck,
  encodeInfo,
  infoMatchesKey,
  GattValueError,
  type GattValueErrorCode,
} from '../../firmware-proto/gatt.js';
import { ALL_FRAGMENT_REASONS, type FragmentReason } from '../../firmware-proto/reasons.js';
import { buildGattVectors, diffGattVectors, GATT_FRAMES, GATT_MTUS } from '../../scripts/gen-gatt-vectors.js';

const VECTORS = fileURLToPath(new URL('../../firmware-proto/vectors/', import.meta.url));
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function load<T>(dir: string): [string, T][] {
  const path = `${VECTORS}${dir}/`;
  return readdirSync(path)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(path + f, 'utf8')) as T]);
}

interface FragmentVector {
  desc: string;
  frameVector: string;
  frame: string;
  mtu: number;
  notificationBytes: number;
  counter: number;
  retransmit: boolean;
  fragments: string[];
}

interface Want {
  status?: ReassemblyVerdict['status'];
  reason?: FragmentReason;
  rejections: { reason: FragmentReason; droppedBytes: number }[];
  lost?: boolean;
  frame?: string;
  retransmit?: boolean;
}

interface ReassemblyVector {
  desc: string;
  stallMs: number;
  steps: ({ atMs: number; notification: string; want: Want } | { atMs: number; expire: true; want: Want })[];
}

interface ValueVector {
  desc: string;
  value: string;
  want: Record<string, unknown> | null;
  wantError: GattValueErrorCode | null;
  attError?: number;
  publicKey?: string;
  keyMatches?: boolean;
}

const fragmentation = load<FragmentVector>('gatt/fragment');
const reassembly = load<ReassemblyVector>('gatt/reassembly');
const control = load<ValueVector>('gatt/control');
const info = load<ValueVector>('gatt/info');

describe('GATT vector set', () => {
  it('is what scripts/gen-gatt-vectors.ts generates, byte for byte (deterministic, not edited by hand)', () => {
    expect(diffGattVectors(buildGattVectors(), VECTORS)).toEqual([]);
  });

  it('fragments every chosen frame at every chosen MTU, and has a reassembly vector for every fragment reason', () => {
    const have = new Set(fragmentation.map(([, v]) => `${v.frameVector}@${v.mtu}`));
    for (const f of GATT_FRAMES) for (const mtu of GATT_MTUS) expect(have, `${f} at ${mtu}`).toContain(`frames/valid/${f}.json@${mtu}`);
    const reasons = new Set(reassembly.flatMap(([, v]) => v.steps.flatMap((s) => s.want.rejections.map((r) => r.reason))));
    expect([...reasons].sort()).toEqual([...ALL_FRAGMENT_REASONS].sort());
    for (const r of ALL_FRAGMENT_REASONS) {
      const named = reassembly.filter(([n]) => n.startsWith(r.replace('FRAGMENT_', '').toLowerCase().replaceAll('_', '-')));
      expect(named.length, `a vector named after ${r}`).toBeGreaterThan(0);
    }
    expect(reassembly.some(([n]) => n.startsWith('valid-'))).toBe(true);
  });

  it('has valid and refused control and info values, every error code among them', () => {
    const codes = new Set([...control, ...info].map(([, v]) => v.wantError).filter((c) => c !== null));
    expect([...codes].sort()).toEqual(['GATT_BAD_FIELD', 'GATT_BAD_LENGTH', 'GATT_UNKNOWN_OPCODE', 'GATT_UNKNOWN_VERSION']);
    expect(control.filter(([, v]) => v.wantError === null).length).toBeGreaterThanOrEqual(3);
    expect(info.filter(([, v]) => v.wantError === null).length).toBeGreaterThanOrEqual(3);
  });

  it('pins the UUIDs and their derivation (§10.2)', () => {
    const u = JSON.parse(readFileSync(`${VECTORS}gatt/uuids.json`, 'utf8')) as { uuids: { n: number; name: string; uuid: string }[] };
    const byName = Object.fromEntries(u.uuids.map((x) => [x.name, x.uuid]));
    expect(byName).toEqual({
      base: GATT_BASE_UUID,
      service: VITALPROOF_SERVICE_UUID,
      frame: FRAME_CHARACTERISTIC_UUID,
      control: CONTROL_CHARACTERISTIC_UUID,
      info: INFO_CHARACTERISTIC_UUID,
    });
    for (const x of u.uuids) expect(deriveGattUuid(x.n)).toBe(x.uuid);
    // Outside the Bluetooth Base UUID (…-0000-1000-8000-00805f9b34fb), which only SIG-assigned numbers use.
    for (const x of u.uuids) expect(x.uuid.endsWith('-0000-1000-8000-00805f9b34fb')).toBe(false);
  });
});

describe.each(fragmentation)('fragmentation %s', (_name, v) => {
  const frame = bytes(v.frame);
  it('is reproduced by fragmentFrame byte for byte, within the notification limit', () => {
    const got = fragmentFrame(frame, { mtu: v.mtu, counter: v.counter, retransmit: v.retransmit }).map(hex);
    expect(got).toEqual(v.fragments);
    expect(v.notificationBytes).toBe(notificationBytes(v.mtu));
    expect(v.fragments.length).toBe(fragmentCount(frame.length, v.mtu));
    for (const f of v.fragments) expect(f.length / 2).toBeLessThanOrEqual(v.notificationBytes);
  });

  it('carries the frame of its frames/valid vector, with consistent headers, and reassembles to it', () => {
    const source = JSON.parse(readFileSync(`${VECTORS}${v.frameVector}`, 'utf8')) as { frame: string };
    expect(v.frame).toBe(source.frame);
    decodeFrame(frame);
    v.fragments.forEach((f, i) => {
      const h = parseFragmentHeader(bytes(f))!;
      expect({ index: h.index, counter: h.counter, retransmit: h.retransmit, last: h.last }).toEqual({
        index: i,
        counter: v.counter,
        retransmit: v.retransmit,
        last: i === v.fragments.length - 1,
      });
      expect(h.frameLength).toBe(i === 0 ? frame.length : undefined);
    });
    const r = new Reassembler({ now: () => 0 });
    // Bring the reassembler's expected counter to the vector's with one-byte frames.
    for (let c = 0; c < v.counter; c++) expect(r.push(fragmentFrame(Uint8Array.of(c), { mtu: 23, counter: c, retransmit: false })[0]!).status).toBe('frame');
    const verdicts = v.fragments.map((f) => r.push(bytes(f)));
    const last = verdicts.pop()!;
    expect(verdicts.every((x) => x.status === 'incomplete')).toBe(true);
    expect(last.status).toBe('frame');
    if (last.status === 'frame') {
      expect(hex(last.frame)).toBe(v.frame);
      expect(last.retransmit).toBe(v.retransmit);
    }
    expect(r.lost).toBe(false);
  });
});

describe.each(reassembly)('reassembly %s', (_name, v) => {
  it('reaches exactly the stated outcome at every step', () => {
    let now = 0;
    const r = new Reassembler({ stallMs: v.stallMs, now: () => now });
    v.steps.forEach((s, i) => {
      now = s.atMs;
      if ('expire' in s) {
        const got = r.expire();
        expect(got ? [{ reason: got.reason, droppedBytes: got.droppedBytes }] : [], `step ${i}`).toEqual(s.want.rejections);
        return;
      }
      const got = r.push(bytes(s.notification));
      const seen: Want = {
        status: got.status,
        ...(got.status === 'rejected' ? { reason: got.reason } : {}),
        rejections: got.rejections.map((x) => ({ reason: x.reason, droppedBytes: x.droppedBytes })),
        lost: got.lost,
        ...(got.status === 'frame' ? { frame: hex(got.frame), retransmit: got.retransmit } : {}),
      };
      expect(seen, `step ${i}`).toEqual(s.want);
    });
    // Every rejection of the stream is counted once under its reason.
    const counted = Object.values(r.stats.rejected).reduce((a, b) => a + b, 0);
    expect(counted).toBe(v.steps.reduce((n, s) => n + s.want.rejections.length, 0));
  });
});

function decodeOrCode(decode: (b: Uint8Array) => unknown, value: Uint8Array): { decoded?: Record<string, unknown>; code?: string } {
  try {
    const d = decode(value) as Record<string, unknown>;
    return { decoded: Object.fromEntries(Object.entries(d).map(([k, x]) => [k, typeof x === 'bigint' ? x.toString() : x])) };
  } catch (e) {
    expect(e).toBeInstanceOf(GattValueError);
    return { code: (e as GattValueError).code };
  }
}

describe.each(control)('control value %s', (_name, v) => {
  it(v.wantError ? `is refused with ${v.wantError} (ATT error ${v.attError})` : 'decodes and re-encodes', () => {
    const got = decodeOrCode(decodeControl, bytes(v.value));
    if (v.wantError) {
      expect(got).toEqual({ code: v.wantError });
      expect(ATT_ERROR_FOR[v.wantError]).toBe(v.attError);
    } else {
      expect(got).toEqual({ decoded: v.want });
      expect(hex(encodeAck(BigInt(v.want!.seq as string)))).toBe(v.value);
    }
  });
});

describe.each(info)('info value %s', (_name, v) => {
  it(v.wantError ? `is refused with ${v.wantError}` : 'decodes, re-encodes, and matches the key as stated', () => {
    const got = decodeOrCode(decodeInfo, bytes(v.value));
    if (v.wantError) {
      expect(got).toEqual({ code: v.wantError });
      return;
    }
    expect(got).toEqual({ decoded: v.want });
    const d = decodeInfo(bytes(v.value));
    expect(hex(encodeInfo(d))).toBe(v.value);
    expect(infoMatchesKey(d, bytes(v.publicKey!))).toBe(v.keyMatches);
  });
});
