/**
 * The spool's record format for an accepted frame:
 *   u8 kind = 1 ‖ u64 BE received-at ms ‖ u8 transport (1 MQTT, 2 BLE) ‖ u8 n ‖ patient (n bytes UTF-8) ‖ frame bytes
 */
import { createHash } from 'node:crypto';
import { decodeFrame } from '../../firmware-proto/frame.js';
import type { AcceptedFrame, Transport } from './types.js';

const KIND_FRAME = 1;
const TRANSPORTS: Transport[] = ['mqtt', 'ble'];

export function encodeSpoolRecord(receivedAtMs: number, transport: Transport, patient: string, raw: Uint8Array): Buffer {
  const p = Buffer.from(patient, 'utf8');
  if (p.length > 255) throw new TypeError('patient pseudonym longer than 255 bytes');
  const buf = Buffer.allocUnsafe(11 + p.length + raw.length);
  buf.writeUInt8(KIND_FRAME, 0);
  buf.writeBigUInt64BE(BigInt(receivedAtMs), 1);
  buf.writeUInt8(TRANSPORTS.indexOf(transport) + 1, 9);
  buf.writeUInt8(p.length, 10);
  p.copy(buf, 11);
  buf.set(raw, 11 + p.length);
  return buf;
}

/** @throws Error when the record is not a frame record: the spool is corrupt. */
export function decodeSpoolRecord(lsn: bigint, payload: Buffer): AcceptedFrame {
  const r = readSpoolRecord(lsn, payload);
  return { lsn, receivedAtMs: r.receivedAtMs, transport: r.transport, patient: r.patient, sha256: sha256Hex(r.raw), frame: decodeFrame(r.raw) };
}

/**
 * What the gateway recorded with a frame, and the frame's exact bytes, without decoding the
 * frame (the uplink republishes the bytes as they are: they were decoded once at acceptance).
 * @throws Error when the record is not a frame record: the spool is corrupt.
 */
export function readSpoolRecord(lsn: bigint, payload: Buffer): { receivedAtMs: number; transport: Transport; patient: string; raw: Buffer } {
  const raw = spoolRecordFrameBytes(lsn, payload);
  return {
    receivedAtMs: Number(payload.readBigUInt64BE(1)),
    transport: TRANSPORTS[payload.readUInt8(9) - 1] ?? 'mqtt',
    patient: payload.toString('utf8', 11, 11 + payload.readUInt8(10)),
    raw,
  };
}

export function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * The exact signed frame bytes of a spool record, without decoding the frame.
 * @throws Error when the record is not a frame record: the spool is corrupt.
 */
export function spoolRecordFrameBytes(lsn: bigint, payload: Buffer): Buffer {
  if (payload.readUInt8(0) !== KIND_FRAME) throw new Error(`spool record ${lsn} has unknown kind ${payload.readUInt8(0)}`);
  return payload.subarray(11 + payload.readUInt8(10));
}
