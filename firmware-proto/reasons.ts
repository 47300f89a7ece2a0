/**
 * The closed set of reasons a receiver gives when it refuses a frame or a connection.
 * PROTOCOL.md §7 documents each one with how to solve it; the gateway counts every
 * rejection under exactly one of these codes, and the test vectors name them.
 */
import { CodedError, type ErrorDetail, type Remedies } from './coded-error.js';

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

/** What to do about each code: PROTOCOL.md §7.1: what a device (its firmware) does about each frame reason. */
export const FRAME_REASON_REMEDIES: Remedies<FrameReason> = {
  FRAME_TOO_SHORT:
    'The payload was cut: check the MQTT payload length and that the signature is appended. A frame with count 0 and no samples (97 bytes) lands here too.',
  FRAME_OVERSIZED: 'Split the series into frames of at most 4071 samples (one channel) or 1357 (accelerometer).',
  UNKNOWN_VERSION:
    'Send version 1; a gateway that does not know a newer version refuses it. Check that the payload starts at the frame and not at a transport header.',
  UNKNOWN_SENSOR: 'Use a code of PROTOCOL.md §4; update the gateway when the catalogue grows.',
  BAD_SCALE: 'Write the scale as a signed byte in −9 … 9.',
  BAD_SAMPLE_COUNT: 'Never send an empty frame.',
  BAD_INTERVAL: 'Set the interval in µs; only a single-sample frame may have interval 0.',
  LENGTH_MISMATCH: 'Count is per channel, not per value: an accelerometer frame of 25 samples has count 25 and 75 int32 values. No bytes after the signature.',
  SAMPLE_OUT_OF_RANGE: 'Check the scale against the raw unit (ECG at scale −3 means raw µV); clamp or drop sensor glitches before signing.',
  BAD_SEQUENCE: 'Start the counter at 1 (PROTOCOL.md §8.1); check that the counter was loaded from flash.',
  UNKNOWN_DEVICE: 'Enrol the device (device id and key, PROTOCOL.md §2); check that the id in the frame is derived from the key (§2.1).',
  DEVICE_REVOKED: 'The device is out of service; re-enrol it with a new key if it returns.',
  DEVICE_MISMATCH: 'Publish only your own frames, on `vp/v1/dev/<own id>/frames`.',
  BAD_SIGNATURE:
    "Sign `FRAME_TAG ‖ body` with the tag's trailing 0x00; sign the exact bytes sent; check the enrolled key is this device's. Run the valid vectors (PROTOCOL.md §9).",
  REPLAY: 'Never reuse a seq (PROTOCOL.md §8.1: persist before use); resend the exact stored bytes with DUP = 1; send in seq order.',
  CLOCK_SKEW: 'Synchronise the device clock; do not record before the clock is set; deliver backlogs within the bound.',
  TIME_OVERLAP:
    'Start each frame after the last sample of the previous one; never let the clock step backwards between frames of a sensor, across reboots too (PROTOCOL.md §8.3).',
};

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

/** What to do about each code: PROTOCOL.md §7.2. */
export const CONNECT_REASON_REMEDIES: Remedies<ConnectReason> = {
  CONNECT_MALFORMED: 'Follow PROTOCOL.md §6.1: lowercase hex user name, binary 88-byte password, client id `vp-dev-<id>`.',
  CONNECT_UNKNOWN_DEVICE: 'Enrol the device.',
  CONNECT_REVOKED: 'The device is out of service.',
  CONNECT_BAD_SIGNATURE: 'Sign with `CONNECT_TAG`, the raw 8-byte id, the exact client id of the CONNECT packet; check the enrolled key.',
  CONNECT_STALE: 'Synchronise the clock; make a new token for every attempt.',
  CONNECT_REPLAYED: 'Make a new token (new nonce) for every attempt; turn off library auto-reconnect that resends the old password.',
};

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

/** What to do about each code: PROTOCOL.md §10.6. */
export const FRAGMENT_REASON_REMEDIES: Remedies<FragmentReason> = {
  FRAGMENT_TOO_SHORT: 'Never send an empty fragment; the first fragment has a 4-byte header.',
  FRAGMENT_OVERSIZED: "Split long series into several frames (PROTOCOL.md §3.1); check the length field is the frame's total length.",
  FRAGMENT_MALFORMED: 'Set R per frame, on all its fragments.',
  FRAGMENT_OUT_OF_ORDER: "Send a frame's fragments in order, and never interleave frames; finish a frame before starting another.",
  FRAGMENT_DUPLICATE: 'Nothing: a copy made on the way (not a loss).',
  FRAGMENT_INTERRUPTED: 'Finish every frame you start (PROTOCOL.md §10.4: acknowledgements take effect at frame boundaries).',
  FRAGMENT_LENGTH_MISMATCH: "Set L exactly on the fragment that carries the frame's last byte.",
  FRAGMENT_COUNTER_GAP:
    'Start each connection at C = 0 and add 1 per frame handed out, retransmissions included. On an honest device: look for notifications dropped in the host stacks.',
  FRAGMENT_STALLED: "A connection interval or latency above the gateway's `ble.stallMs`; raise it, or look for a device that stops mid-frame.",
};

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

/** What to do about each code: docs/ble.md. */
export const BLE_REASON_REMEDIES: Remedies<BleReason> = {
  BLE_CONNECT_FAILED:
    'Nothing if it passes: the gateway retries with backoff (`ble.reconnectMinMs` … `ble.reconnectMaxMs`). Often: move the device or the adapter closer, raise `ble.connectTimeoutMs`.',
  BLE_PROFILE_MISSING: 'Not a VitalProof device, or its firmware lacks the GATT profile of PROTOCOL.md §10.2: fix the firmware.',
  BLE_INFO_INVALID: 'Make the info characteristic exactly the 22 bytes of PROTOCOL.md §10.3 (the `info/` vectors check it).',
  BLE_KEY_MISMATCH: 'The device advertises another identity than its enrolment: re-enrol it with the key it holds, or restore the enrolled key on it.',
  BLE_ACK_REFUSED: 'Make the device take `ACK n` writes as PROTOCOL.md §10.4 says (the `control/` vectors check it).',
  BLE_FRAGMENT_LOSS: 'See the FRAGMENT_* code that caused it; the device resends the lost frame on the next connection.',
  BLE_LINK_LOST: 'Nothing if it passes (the gateway reconnects); often: range, interference, or a device that resets.',
};

export const ALL_BLE_REASONS = Object.keys(BLE_REASONS) as BleReason[];
