/**
 * The closed set of reasons a receiver gives when it refuses a frame or a connection.
 * PROTOCOL.md §7 documents each one with how to solve it; the gateway counts every
 * rejection under exactly one of these codes, and the test vectors name them.
 */
import { CodedError, type ErrorDetail } from './coded-error.js';

export const FRAME_REASONS = {
  // §3 decoding: the bytes are not a canonical v1 frame
  FRAME_TOO_SHORT: 'fewer bytes than a header, one sample and a signature',
  FRAME_OVERSIZED: 'frame is longer than MAX_FRAME_BYTES',
  UNKNOWN_VERSION: 'version byte is not a version this receiver implements',
  UNKNOWN_SENSOR: 'sensor code is not in the sensor catalogue',
  BAD_SCALE: 'scale exponent is outside the allowed range',
  BAD_SAMPLE_COUNT: 'sample count is zero',
  BAD_INTERVAL: 'sample interval is zero while the frame has more than one sample',
  LENGTH_MISMATCH: 'frame length does not match the length its header implies',
  SAMPLE_OUT_OF_RANGE: 'a sample is outside the physical range of its sensor',
  // §5 authenticity and freshness, checked by the receiver
  BAD_SEQUENCE: 'sequence number 0, which is reserved',
  UNKNOWN_DEVICE: 'device id is not enrolled',
  DEVICE_REVOKED: 'device was revoked at or before the frame time',
  DEVICE_MISMATCH: 'frame device id differs from the authenticated sender',
  BAD_SIGNATURE: 'Ed25519 signature does not verify under the enrolled key',
  REPLAY: 'sequence number at or below the last accepted one, and not a retransmission of that frame',
  CLOCK_SKEW: 'device timestamp is too far in the future, or older than the backlog bound',
  TIME_OVERLAP: 'frame starts before the previous accepted frame of the same sensor ended',
} as const;

export type FrameReason = keyof typeof FRAME_REASONS;

/** Reasons for refusing an MQTT CONNECT (PROTOCOL.md §6.1). */
export const CONNECT_REASONS = {
  CONNECT_MALFORMED: 'username is not a device id, or the password is not a connect token',
  CONNECT_UNKNOWN_DEVICE: 'device id is not enrolled',
  CONNECT_REVOKED: 'device is revoked',
  CONNECT_BAD_SIGNATURE: 'connect token signature does not verify',
  CONNECT_STALE: 'connect token timestamp is outside the accepted window',
  CONNECT_REPLAYED: 'connect token was already used',
} as const;

export type ConnectReason = keyof typeof CONNECT_REASONS;

export const ALL_FRAME_REASONS = Object.keys(FRAME_REASONS) as FrameReason[];
export const ALL_CONNECT_REASONS = Object.keys(CONNECT_REASONS) as ConnectReason[];

/**
 * A coded protocol failure: what was expected and what was found travel with it.
 * Decoders throw it; verification returns a verdict carrying the same code.
 * Test for it with isError(e, ProtocolError[, code]).
 */
export class ProtocolError extends CodedError<FrameReason> {
  constructor(code: FrameReason, detail: ErrorDetail = {}) {
    super(FRAME_REASONS, code, detail);
  }
}

/**
 * Reasons a BLE reassembler gives when it drops a fragment or a partial frame (PROTOCOL.md
 * §10.6). Transport-level, and kept apart from FRAME_REASONS: a frame that reassembles is then
 * judged by §3.2 and §5.3 exactly like an MQTT frame, so one fault is never counted twice.
 * Every code but FRAGMENT_DUPLICATE means a frame was lost in transit on that connection.
 */
export const FRAGMENT_REASONS = {
  FRAGMENT_TOO_SHORT: 'notification has fewer bytes than its fragment header and one data byte',
  FRAGMENT_OVERSIZED: 'declared frame length above MAX_FRAME_BYTES, more data than declared, or a notification over 512 bytes',
  FRAGMENT_MALFORMED: 'declared frame length 0, or a retransmit flag that differs from the first fragment of its frame',
  FRAGMENT_OUT_OF_ORDER: 'continuation fragment that is not the next one of the frame in progress, or with no frame in progress',
  FRAGMENT_DUPLICATE: 'byte-identical repeat of the previous notification; ignored, the frame in progress goes on',
  FRAGMENT_INTERRUPTED: 'a new frame began before the frame in progress was complete; the partial frame is dropped',
  FRAGMENT_LENGTH_MISMATCH: 'last fragment before the declared length was reached, or the declared length reached without the last-fragment flag',
  FRAGMENT_COUNTER_GAP: 'the frame counter skipped: whole frames were lost before this one',
  FRAGMENT_STALLED: 'no fragment of the frame in progress for longer than the stall limit; the partial frame is dropped',
} as const;

export type FragmentReason = keyof typeof FRAGMENT_REASONS;

export const ALL_FRAGMENT_REASONS = Object.keys(FRAGMENT_REASONS) as FragmentReason[];

/**
 * Why a gateway's BLE central ends a connection or declines to open one (PROTOCOL.md §10.3,
 * §10.7). Unknown and revoked devices are counted under CONNECT_UNKNOWN_DEVICE and
 * CONNECT_REVOKED, as over MQTT; these are the BLE-only cases. Fragment faults keep their own
 * FRAGMENT_* codes, and BLE_FRAGMENT_LOSS counts the disconnects they cause.
 */
export const BLE_REASONS = {
  BLE_CONNECT_FAILED: 'the connection could not be made or the GATT services not resolved in time (radio, range)',
  BLE_PROFILE_MISSING: 'the device lacks the VitalProof service or one of its characteristics',
  BLE_INFO_INVALID: 'the info characteristic could not be read or does not decode (§10.3)',
  BLE_KEY_MISMATCH: 'the info names a device id or key fingerprint other than the enrolled key',
  BLE_ACK_REFUSED: 'the device refused or failed an acknowledgement write',
  BLE_FRAGMENT_LOSS: 'a frame was lost in transit (a FRAGMENT_* rejection): disconnected so the device resends (§10.6)',
  BLE_LINK_LOST: 'the connection dropped (out of range, supervision timeout, device reset)',
} as const;

export type BleReason = keyof typeof BLE_REASONS;

export const ALL_BLE_REASONS = Object.keys(BLE_REASONS) as BleReason[];
