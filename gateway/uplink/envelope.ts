/**
 * The uplink's messages (docs/uplink.md, "Envelope"): JSON, version 1, one object per MQTT
 * message, on the topics of ./topics.ts.
 *
 *   frame    one accepted frame: the exact signed bytes (PROTOCOL.md §3) in base64, their
 *            SHA-256, and what this gateway knows of the acceptance (transport, received time,
 *            spool position, patient pseudonym, Merkle batch and leaf)
 *   anchor   one anchored Merkle batch of frames (AnchorRegistry stream 0): where it is on chain
 *   status   the gateway's health, retained; "offline" as its last will
 *
 * A frame is identified by (device, seq, sha256), never by the gateway or the message: the
 * uplink delivers at least once, so a receiver drops a message whose triple it has seen. The
 * decoders are strict (unknown keys, wrong types, a hash or identity that does not match the
 * frame bytes are refused with a code), because the hub takes these messages as evidence.
 * Integers beyond 2^53 (seq, lsn, batch) travel as decimal strings.
 */
import { createHash } from 'node:crypto';
import { CodedError, type ErrorDetail, type Remedies } from '../../firmware-proto/coded-error.js';
import { decodeFrame, isDeviceId, type Frame } from '../../firmware-proto/frame.js';
import { GATEWAY_ID, parseUplinkTopic } from './topics.js';

export const UPLINK_VERSION = 1;

export const UPLINK_FORMAT_ERRORS = {
  UPLINK_NOT_JSON: 'an uplink message is not a JSON object',
  UPLINK_UNKNOWN_VERSION: 'an uplink message has a version this code does not read',
  UPLINK_BAD_FIELD: 'a field of an uplink message is missing, unknown, or of the wrong type or range',
  UPLINK_BAD_FRAME: 'the frame bytes of an uplink message do not decode as a frame (PROTOCOL.md §3)',
  UPLINK_HASH_MISMATCH: 'the sha256 of an uplink frame message is not the hash of its frame bytes',
  UPLINK_IDENTITY_MISMATCH: 'the device, seq or gateway an uplink message names is not the one its frame bytes or its topic carry',
} as const;
export type UplinkFormatErrorCode = keyof typeof UPLINK_FORMAT_ERRORS;

export const UPLINK_FORMAT_ERROR_REMEDIES: Remedies<UplinkFormatErrorCode> = {
  UPLINK_NOT_JSON: 'Only VitalProof gateways publish under vitalproof/uplink/: check the broker ACLs (`vitalproof broker init`)',
  UPLINK_UNKNOWN_VERSION: 'Upgrade the hub: the gateway publishes a newer envelope (docs/uplink.md, "Versions")',
  UPLINK_BAD_FIELD: 'A gateway of another version or a damaged message: the message names the field; compare with docs/uplink.md, "Envelope"',
  UPLINK_BAD_FRAME: 'Drop the message and report the gateway: a gateway publishes only frames it accepted',
  UPLINK_HASH_MISMATCH: 'Drop the message: the bytes were changed on the way, or the publisher is not a VitalProof gateway',
  UPLINK_IDENTITY_MISMATCH: 'Drop the message: a gateway may publish only its own frames under its own prefix (check the broker ACLs)',
};

export class UplinkFormatError extends CodedError<UplinkFormatErrorCode> {
  constructor(code: UplinkFormatErrorCode, detail: ErrorDetail = {}) {
    super(UPLINK_FORMAT_ERRORS, code, detail);
  }
}

/** One accepted frame, as published on vitalproof/uplink/<gateway>/frames/<device>. */
export interface UplinkFrame {
  v: 1;
  kind: 'frame';
  gateway: string;
  device: string;
  seq: bigint;
  /** SHA-256 of `frame`, 64 lower-case hex digits. */
  sha256: string;
  /** The exact signed frame bytes. */
  frame: Buffer;
  transport: 'mqtt' | 'ble';
  /** Gateway clock when the frame arrived, ms since the epoch. */
  receivedAtMs: number;
  /** Its spool position on this gateway (strictly increasing in acceptance order). */
  lsn: bigint;
  /** The patient pseudonym the device was enrolled with. */
  patient: string;
  /** Its Merkle batch on this gateway and its leaf index there (anchored once an anchor message names the batch). */
  batch: bigint;
  leaf: number;
}

/** One anchored batch of frames, as published on vitalproof/uplink/<gateway>/anchors. */
export interface UplinkAnchor {
  v: 1;
  kind: 'anchor';
  gateway: string;
  batch: bigint;
  /** RFC 9162 root of the batch's leaves, 0x-hex. */
  root: string;
  leafCount: number;
  /** Spool positions of the batch's first and last frame. */
  firstLsn: bigint;
  lastLsn: bigint;
  txHash: string;
  block: number;
  chainId: number;
  /** AnchorRegistry address. */
  contract: string;
  /** The gateway's account on chain. */
  chainAddress: string;
  confirmedAtMs: number;
}

/** The gateway's health, retained on vitalproof/uplink/<gateway>/status. */
export interface UplinkStatusMessage {
  v: 1;
  kind: 'status';
  gateway: string;
  state: 'online' | 'offline';
  /** When this was published (absent in the last will, which the broker sends on the gateway's behalf). */
  atMs?: number;
  framesPerS?: number;
  /** Frames in the spool not yet released; storage and uplink lag in spool records. */
  spoolDepth?: number;
  storageLag?: number;
  uplinkLag?: number;
  /** Highest anchored batch of frames ("0" before the first). */
  lastAnchoredBatch?: bigint;
}

export type UplinkMessage = UplinkFrame | UplinkAnchor | UplinkStatusMessage;

const U64 = /^(0|[1-9][0-9]{0,19})$/;
const HEX32 = /^[0-9a-f]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const BYTES32 = /^0x[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The JSON of a message; bigints as decimal strings, the frame as base64. */
export function encodeUplink(m: UplinkMessage): Buffer {
  // Buffer.toJSON runs before a replacer would see it: the frame is turned into base64 here.
  const doc = m.kind === 'frame' ? { ...m, frame: m.frame.toString('base64') } : m;
  return Buffer.from(JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
}

/**
 * A frame message, checked: JSON, version, exactly the fields of UplinkFrame, the frame bytes
 * decode (PROTOCOL.md §3.2; the signature is the receiver's to verify against the registry),
 * sha256 is their hash, device and seq are theirs, and, with `topic`, gateway and device match it.
 * @throws UplinkFormatError with the code of the first problem.
 * @example
 *   client.on('message', (topic, payload) => { const f = decodeUplinkFrame(payload, topic); … f.frame … });
 */
export function decodeUplinkFrame(payload: Uint8Array, topic?: string): UplinkFrame {
  return decodeUplinkFrameAndBytes(payload, topic).message;
}

/** decodeUplinkFrame, with the frame it decoded on the way (a receiver need not decode it again). @throws UplinkFormatError. */
export function decodeUplinkFrameAndBytes(payload: Uint8Array, topic?: string): { message: UplinkFrame; frame: Frame } {
  const o = object(payload, 'frame', ['device', 'seq', 'sha256', 'frame', 'transport', 'receivedAtMs', 'lsn', 'patient', 'batch', 'leaf']);
  const frameB64 = str(o, 'frame', BASE64);
  const frame = Buffer.from(frameB64, 'base64');
  if (frame.toString('base64') !== frameB64) throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'frame', expected: 'canonical base64' });
  let decoded: Frame;
  try {
    decoded = decodeFrame(frame);
  } catch (e) {
    throw new UplinkFormatError('UPLINK_BAD_FRAME', { found: (e as Error).message });
  }
  const sha256 = str(o, 'sha256', HEX32);
  const actual = createHash('sha256').update(frame).digest('hex');
  if (actual !== sha256) throw new UplinkFormatError('UPLINK_HASH_MISMATCH', { expected: actual, found: sha256 });
  const device = str(o, 'device');
  if (!isDeviceId(device)) throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'device', expected: '16 lower-case hex digits', found: device });
  const seq = u64(o, 'seq');
  if (device !== decoded.deviceId || seq !== decoded.seq)
    throw new UplinkFormatError('UPLINK_IDENTITY_MISMATCH', {
      expected: { device: decoded.deviceId, seq: decoded.seq.toString() },
      found: { device, seq: seq.toString() },
    });
  const transport = str(o, 'transport');
  if (transport !== 'mqtt' && transport !== 'ble')
    throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'transport', expected: 'mqtt or ble', found: transport });
  const m: UplinkFrame = {
    v: 1,
    kind: 'frame',
    gateway: o.gateway,
    device,
    seq,
    sha256,
    frame,
    transport,
    receivedAtMs: int(o, 'receivedAtMs'),
    lsn: u64(o, 'lsn'),
    patient: str(o, 'patient', /^[A-Za-z0-9._-]{1,255}$/),
    batch: u64(o, 'batch'),
    leaf: int(o, 'leaf'),
  };
  checkTopic(topic, 'frames', m.gateway, device);
  return { message: m, frame: decoded };
}

/** An anchor message, checked as decodeUplinkFrame checks a frame. @throws UplinkFormatError. */
export function decodeUplinkAnchor(payload: Uint8Array, topic?: string): UplinkAnchor {
  const o = object(payload, 'anchor', [
    'batch',
    'root',
    'leafCount',
    'firstLsn',
    'lastLsn',
    'txHash',
    'block',
    'chainId',
    'contract',
    'chainAddress',
    'confirmedAtMs',
  ]);
  const m: UplinkAnchor = {
    v: 1,
    kind: 'anchor',
    gateway: o.gateway,
    batch: u64(o, 'batch'),
    root: str(o, 'root', BYTES32),
    leafCount: int(o, 'leafCount'),
    firstLsn: u64(o, 'firstLsn'),
    lastLsn: u64(o, 'lastLsn'),
    txHash: str(o, 'txHash', BYTES32),
    block: int(o, 'block'),
    chainId: int(o, 'chainId'),
    contract: str(o, 'contract', ADDRESS),
    chainAddress: str(o, 'chainAddress', ADDRESS),
    confirmedAtMs: int(o, 'confirmedAtMs'),
  };
  if (m.leafCount < 1 || m.firstLsn > m.lastLsn)
    throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'leafCount', expected: '≥ 1 leaf, firstLsn ≤ lastLsn' });
  checkTopic(topic, 'anchors', m.gateway);
  return m;
}

/** A status message (the retained one or the last will). @throws UplinkFormatError. */
export function decodeUplinkStatus(payload: Uint8Array, topic?: string): UplinkStatusMessage {
  const optional = ['atMs', 'framesPerS', 'spoolDepth', 'storageLag', 'uplinkLag', 'lastAnchoredBatch'];
  const o = object(payload, 'status', ['state'], optional);
  const state = str(o, 'state');
  if (state !== 'online' && state !== 'offline')
    throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'state', expected: 'online or offline', found: state });
  const m: UplinkStatusMessage = { v: 1, kind: 'status', gateway: o.gateway, state };
  for (const k of ['atMs', 'spoolDepth', 'storageLag', 'uplinkLag'] as const) if (o[k] !== undefined) m[k] = int(o, k);
  if (o['framesPerS'] !== undefined) {
    if (typeof o['framesPerS'] !== 'number' || !(o['framesPerS'] >= 0))
      throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'framesPerS', expected: 'a number ≥ 0' });
    m.framesPerS = o['framesPerS'];
  }
  if (o['lastAnchoredBatch'] !== undefined) m.lastAnchoredBatch = u64(o, 'lastAnchoredBatch');
  checkTopic(topic, 'status', m.gateway);
  return m;
}

/** Any uplink message by its topic's kind. @throws UplinkFormatError (UPLINK_BAD_FIELD for a topic that is not an uplink topic). */
export function decodeUplinkMessage(topic: string, payload: Uint8Array): UplinkMessage {
  const t = parseUplinkTopic(topic);
  if (!t)
    throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'topic', expected: 'vitalproof/uplink/<gateway>/(frames/<device>|anchors|status)', found: topic });
  if (t.kind === 'frames') return decodeUplinkFrame(payload, topic);
  if (t.kind === 'anchors') return decodeUplinkAnchor(payload, topic);
  return decodeUplinkStatus(payload, topic);
}

type Doc = Record<string, unknown> & { gateway: string };

/** The JSON object of one kind, with exactly `required` (plus v, kind, gateway) and any of `optional`. */
function object(payload: Uint8Array, kind: string, required: string[], optional: string[] = []): Doc {
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch (e) {
    throw new UplinkFormatError('UPLINK_NOT_JSON', { found: (e as Error).message });
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new UplinkFormatError('UPLINK_NOT_JSON', { found: Array.isArray(o) ? 'array' : typeof o });
  const d = o as Record<string, unknown>;
  if (d['v'] !== UPLINK_VERSION) throw new UplinkFormatError('UPLINK_UNKNOWN_VERSION', { expected: UPLINK_VERSION, found: d['v'] });
  if (d['kind'] !== kind) throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'kind', expected: kind, found: d['kind'] });
  const allowed = new Set(['v', 'kind', 'gateway', ...required, ...optional]);
  for (const k of Object.keys(d)) if (!allowed.has(k)) throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: k, expected: 'no such field' });
  for (const k of ['gateway', ...required]) if (d[k] === undefined) throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: k, expected: 'present' });
  str(d, 'gateway', GATEWAY_ID);
  return d as Doc;
}

function str(o: Record<string, unknown>, k: string, re?: RegExp): string {
  const v = o[k];
  if (typeof v !== 'string' || (re && !re.test(v)))
    throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: k, expected: re ? `a string matching ${re.source}` : 'a string', found: v });
  return v;
}

function int(o: Record<string, unknown>, k: string): number {
  const v = o[k];
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: k, expected: 'an integer ≥ 0', found: v });
  return v as number;
}

function u64(o: Record<string, unknown>, k: string): bigint {
  const v = str(o, k, U64);
  const n = BigInt(v);
  if (n >= 1n << 64n) throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: k, expected: 'a decimal string < 2^64', found: v });
  return n;
}

function checkTopic(topic: string | undefined, kind: 'frames' | 'anchors' | 'status', gateway: string, device?: string): void {
  if (topic === undefined) return;
  const t = parseUplinkTopic(topic);
  if (!t || t.kind !== kind || t.gatewayId !== gateway || t.deviceId !== device)
    throw new UplinkFormatError('UPLINK_IDENTITY_MISMATCH', { expected: { gateway, kind, ...(device ? { device } : {}) }, found: topic });
}
