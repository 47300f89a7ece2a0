/**
 * The uplink envelope (gateway/uplink/envelope.ts): what the publisher encodes the decoders
 * read back exactly, and every corruption a receiver must not take as evidence is refused
 * under its code.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signFrame } from '../../../firmware-proto/device.js';
import { generateKeys } from '../../../firmware-proto/signing.js';
import {
  decodeUplinkAnchor,
  decodeUplinkFrame,
  decodeUplinkMessage,
  decodeUplinkStatus,
  encodeUplink,
  type UplinkAnchor,
  type UplinkFrame,
} from '../../../gateway/uplink/envelope.js';
import { parseUplinkTopic, uplinkTopics } from '../../../gateway/uplink/topics.js';

const keys = generateKeys(new Uint8Array(32).fill(7));
const raw = Buffer.from(
  signFrame(
    { deviceId: '00112233aabbccdd', seq: 42n, timestampMs: 1_700_000_000_000n, sensor: 1, scale: 0, intervalUs: 1_000_000, samples: Int32Array.from([72]) },
    keys.secretKey,
  ),
);
const topics = uplinkTopics('gw-a');

const frame: UplinkFrame = {
  v: 1,
  kind: 'frame',
  gateway: 'gw-a',
  device: '00112233aabbccdd',
  seq: 42n,
  sha256: createHash('sha256').update(raw).digest('hex'),
  frame: raw,
  transport: 'mqtt',
  receivedAtMs: 1_700_000_000_123,
  lsn: 9007199254740993n,
  patient: 'P-0001',
  batch: 3n,
  leaf: 17,
};

const anchor: UplinkAnchor = {
  v: 1,
  kind: 'anchor',
  gateway: 'gw-a',
  batch: 3n,
  root: `0x${'ab'.repeat(32)}`,
  leafCount: 20,
  firstLsn: 100n,
  lastLsn: 119n,
  txHash: `0x${'cd'.repeat(32)}`,
  block: 12,
  chainId: 31337,
  contract: '0x5FbDB2315678afecb367f032d93F642f64180aa3',
  chainAddress: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
  confirmedAtMs: 1_700_000_010_000,
};

/** The frame message's JSON with one change. */
function edited(change: (o: Record<string, unknown>) => void): Buffer {
  const o = JSON.parse(encodeUplink(frame).toString()) as Record<string, unknown>;
  change(o);
  return Buffer.from(JSON.stringify(o));
}

describe('uplink envelope', () => {
  it('reads back a frame message exactly, big integers included, on its topic', () => {
    const bytes = encodeUplink(frame);
    expect(JSON.parse(bytes.toString())).toMatchObject({ v: 1, kind: 'frame', seq: '42', lsn: '9007199254740993', frame: raw.toString('base64') });
    expect(decodeUplinkFrame(bytes, topics.frames(frame.device))).toEqual(frame);
    expect(decodeUplinkMessage(topics.frames(frame.device), bytes)).toEqual(frame);
  });

  it('reads back anchor and status messages, and the last will', () => {
    expect(decodeUplinkAnchor(encodeUplink(anchor), topics.anchors)).toEqual(anchor);
    const status = {
      v: 1 as const,
      kind: 'status' as const,
      gateway: 'gw-a',
      state: 'online' as const,
      atMs: 5,
      framesPerS: 2.5,
      spoolDepth: 3,
      storageLag: 1,
      uplinkLag: 0,
      lastAnchoredBatch: 3n,
    };
    expect(decodeUplinkStatus(encodeUplink(status), topics.status)).toEqual(status);
    expect(decodeUplinkMessage(topics.status, encodeUplink({ v: 1, kind: 'status', gateway: 'gw-a', state: 'offline' }))).toEqual({
      v: 1,
      kind: 'status',
      gateway: 'gw-a',
      state: 'offline',
    });
  });

  it.each([
    ['not JSON', Buffer.from('{"v":1,'), 'UPLINK_NOT_JSON'],
    ['an array', Buffer.from('[1]'), 'UPLINK_NOT_JSON'],
    ['version 2', edited((o) => (o['v'] = 2)), 'UPLINK_UNKNOWN_VERSION'],
    ['an unknown field', edited((o) => (o['extra'] = 1)), 'UPLINK_BAD_FIELD'],
    ['a missing leaf', edited((o) => delete o['leaf']), 'UPLINK_BAD_FIELD'],
    ['seq as a number', edited((o) => (o['seq'] = 42)), 'UPLINK_BAD_FIELD'],
    ['a negative receivedAtMs', edited((o) => (o['receivedAtMs'] = -1)), 'UPLINK_BAD_FIELD'],
    ['a wildcard gateway', edited((o) => (o['gateway'] = 'gw/+')), 'UPLINK_BAD_FIELD'],
    ['non-canonical base64', edited((o) => (o['frame'] = `${String(o['frame'])}\n`)), 'UPLINK_BAD_FIELD'],
    ['truncated frame bytes', edited((o) => (o['frame'] = raw.subarray(0, 40).toString('base64'))), 'UPLINK_BAD_FRAME'],
    [
      'a flipped frame byte',
      edited((o) => (o['frame'] = Buffer.from(raw.map((b, i) => (i === raw.length - 1 ? b ^ 1 : b))).toString('base64'))),
      'UPLINK_HASH_MISMATCH',
    ],
    ['another seq than the frame', edited((o) => (o['seq'] = '43')), 'UPLINK_IDENTITY_MISMATCH'],
    ['another device than the frame', edited((o) => (o['device'] = '00112233aabbccde')), 'UPLINK_IDENTITY_MISMATCH'],
  ])('refuses a frame message with %s', (_what, bytes, code) => {
    expect(() => decodeUplinkFrame(bytes)).toThrow(expect.objectContaining({ code }) as Error);
  });

  it("refuses a frame message on another gateway's or device's topic", () => {
    const bytes = encodeUplink(frame);
    expect(() => decodeUplinkFrame(bytes, uplinkTopics('gw-b').frames(frame.device))).toThrow(
      expect.objectContaining({ code: 'UPLINK_IDENTITY_MISMATCH' }) as Error,
    );
    expect(() => decodeUplinkFrame(bytes, topics.frames('ffffffffffffffff'))).toThrow(expect.objectContaining({ code: 'UPLINK_IDENTITY_MISMATCH' }) as Error);
    expect(() => decodeUplinkMessage('vitalproof/uplink/gw-a/other', bytes)).toThrow(expect.objectContaining({ code: 'UPLINK_BAD_FIELD' }) as Error);
  });

  it('refuses an anchor without leaves and a status in an unknown state', () => {
    expect(() => decodeUplinkAnchor(encodeUplink({ ...anchor, leafCount: 0 }))).toThrow(expect.objectContaining({ code: 'UPLINK_BAD_FIELD' }) as Error);
    expect(() => decodeUplinkAnchor(encodeUplink({ ...anchor, txHash: '0x12' }))).toThrow(expect.objectContaining({ code: 'UPLINK_BAD_FIELD' }) as Error);
    expect(() => decodeUplinkStatus(Buffer.from('{"v":1,"kind":"status","gateway":"gw-a","state":"away"}'))).toThrow(
      expect.objectContaining({ code: 'UPLINK_BAD_FIELD' }) as Error,
    );
  });

  it('makes topics only from ids that cannot widen an ACL', () => {
    for (const id of ['+', '#', 'a/b', '$SYS', '', 'x'.repeat(65), '..']) expect(() => uplinkTopics(id)).toThrow(TypeError);
    expect(() => topics.frames('+')).toThrow(TypeError);
    expect(parseUplinkTopic(topics.frames('00112233aabbccdd'))).toEqual({ gatewayId: 'gw-a', kind: 'frames', deviceId: '00112233aabbccdd' });
    expect(parseUplinkTopic('vitalproof/uplink/gw-a/frames')).toBeUndefined();
  });
});
