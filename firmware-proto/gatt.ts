/**
 * The VitalProof GATT profile (PROTOCOL.md §10): the service and its three characteristics,
 * the fixed binary layouts of the control and device-information values, and a device's side
 * of a BLE link (store-and-forward over notifications, cumulative acknowledgements).
 * Transport-independent: a BlueZ D-Bus peripheral, a simulator or firmware drives it.
 *
 *   service  50c80001-85b7-81ec-a6e1-21cc15a9a7e4
 *   frame    50c80002-…  notify   fragments of frames, device → gateway (fragment.ts, §10.5)
 *   control  50c80003-…  write    ACK n (9 bytes), gateway → device (§10.4)
 *   info     50c80004-…  read     device id, key fingerprint, firmware, max frame size (22 bytes, §10.3)
 *
 * Every multi-byte field here is big-endian, like the frame (§3.1); only ATT's own PDU fields
 * are little-endian, and this code never sees them.
 */
import { createHash } from 'node:crypto';
import { CodedError, type Remedies } from './coded-error.js';
import type { Outbox } from './device.js';
import { FRAME_VERSION, MAX_FRAME_BYTES, MIN_FRAME_BYTES, isDeviceId } from './frame.js';
import { ATT_MTU_MIN, FRAME_COUNTER_MODULO, fragments, notificationBytes } from './fragment.js';
import { deviceIdFromKey, keyFingerprint } from './signing.js';

// ---------------------------------------------------------------- UUIDs (§10.2)

/** The UUIDs are derived from this label (§10.2); changing it changes the profile. */
export const GATT_UUID_LABEL = 'VitalProof/gatt/v1';

/**
 * A profile UUID: the first 16 bytes of SHA-256(GATT_UUID_LABEL) as an RFC 9562 version 8
 * (name-based, SHA-256) UUID, with bytes 2-3 replaced by `n`: 0 is the base, 1 the service,
 * 2 … 4 the characteristics. Lowercase, as BlueZ reports UUIDs.
 */
export function deriveGattUuid(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new RangeError(`n must be a 16-bit number, got ${n}`);
  const b = createHash('sha256').update(GATT_UUID_LABEL).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80; // version 8 (RFC 9562 §5.8)
  b[8] = (b[8]! & 0x3f) | 0x80; // variant 10
  b[2] = n >> 8;
  b[3] = n & 0xff;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const GATT_BASE_UUID = '50c80000-85b7-81ec-a6e1-21cc15a9a7e4';
export const VITALPROOF_SERVICE_UUID = '50c80001-85b7-81ec-a6e1-21cc15a9a7e4';
export const FRAME_CHARACTERISTIC_UUID = '50c80002-85b7-81ec-a6e1-21cc15a9a7e4';
export const CONTROL_CHARACTERISTIC_UUID = '50c80003-85b7-81ec-a6e1-21cc15a9a7e4';
export const INFO_CHARACTERISTIC_UUID = '50c80004-85b7-81ec-a6e1-21cc15a9a7e4';

/**
 * The service as a GATT server declares it. `flags` are BlueZ's GattCharacteristic1 Flags for
 * an open link (tests, simulators); `securedFlags` those of a deployment, where only a bonded,
 * authenticated central may subscribe, read or acknowledge (§10.8).
 */
export const GATT_PROFILE = {
  service: VITALPROOF_SERVICE_UUID,
  frame: { uuid: FRAME_CHARACTERISTIC_UUID, flags: ['notify'], securedFlags: ['notify', 'encrypt-authenticated-notify'] },
  control: { uuid: CONTROL_CHARACTERISTIC_UUID, flags: ['write'], securedFlags: ['write', 'encrypt-authenticated-write'] },
  info: { uuid: INFO_CHARACTERISTIC_UUID, flags: ['read'], securedFlags: ['read', 'encrypt-authenticated-read'] },
} as const;

// ---------------------------------------------------------------- coded errors

/** Why a control or info value was refused (§10.3, §10.4). */
export const GATT_VALUE_ERRORS = {
  GATT_BAD_LENGTH: 'value length differs from its fixed layout',
  GATT_UNKNOWN_OPCODE: 'control opcode is not one this receiver implements',
  GATT_UNKNOWN_VERSION: 'info protocol version is not one this receiver implements',
  GATT_BAD_FIELD: 'a field is outside its allowed range',
} as const;

export type GattValueErrorCode = keyof typeof GATT_VALUE_ERRORS;

/** What to do about each code: PROTOCOL.md §10.3, §10.4: the `gatt/control` and `gatt/info` vectors check each. */
export const GATT_VALUE_ERROR_REMEDIES: Remedies<GattValueErrorCode> = {
  GATT_BAD_LENGTH: 'Write control values of exactly 9 bytes and info values of exactly 22 (PROTOCOL.md §10.3, §10.4).',
  GATT_UNKNOWN_OPCODE: 'Send opcode 1 (ACK): the only one version 1 has.',
  GATT_UNKNOWN_VERSION: 'Put protocol version 1 in the info value.',
  GATT_BAD_FIELD: 'Keep each field in its range (max frame bytes 101 … 16384).',
};

/**
 * The ATT error a device answers a refused control write with (Core Vol 3 Part F §3.4.1.1):
 * over BlueZ, org.bluez.Error.InvalidValueLength for 0x0D and org.bluez.Error.Failed("0x80")
 * for the application error 0x80.
 */
export const ATT_ERROR_FOR: Readonly<Record<GattValueErrorCode, number>> = {
  GATT_BAD_LENGTH: 0x0d, // Invalid Attribute Value Length
  GATT_UNKNOWN_OPCODE: 0x80, // application error
  GATT_UNKNOWN_VERSION: 0x80,
  GATT_BAD_FIELD: 0x80,
};

/**
 * A refused control or info value: what was expected and what was found travel with it.
 * Test for it with isError(e, GattValueError[, code]).
 */
export class GattValueError extends CodedError<GattValueErrorCode> {
  declare readonly detail: Readonly<Record<string, number | string>>;
  constructor(code: GattValueErrorCode, detail: Record<string, number | string> = {}) {
    super(GATT_VALUE_ERRORS, code, detail);
  }
}

const UINT64_MAX = (1n << 64n) - 1n;

// ---------------------------------------------------------------- control (§10.4)

/** ACK n: every frame of the device with seq ≤ n is settled (durable, duplicate or refused). */
export const CONTROL_ACK = 0x01;
export const CONTROL_BYTES = 9;

export interface ControlMessage {
  opcode: typeof CONTROL_ACK;
  /** 0 … 2⁶⁴ − 1; 0 settles nothing. */
  seq: bigint;
}

/**
 * The control value for ACK n: 0x01 ‖ n (uint64 BE).
 * @throws TypeError for n outside 0 … 2⁶⁴ − 1.
 * @example encodeAck(4812n) → 01 00000000000012cc
 */
export function encodeAck(seq: bigint): Uint8Array {
  if (seq < 0n || seq > UINT64_MAX) throw new TypeError(`seq out of range: ${seq}`);
  const out = new Uint8Array(CONTROL_BYTES);
  out[0] = CONTROL_ACK;
  new DataView(out.buffer).setBigUint64(1, seq);
  return out;
}

/**
 * Strict decode of a control write (§10.4): the opcode first, so that a longer value of a
 * future opcode is named as such.
 * @throws GattValueError GATT_BAD_LENGTH or GATT_UNKNOWN_OPCODE.
 */
export function decodeControl(value: Uint8Array): ControlMessage {
  if (value.length === 0) throw new GattValueError('GATT_BAD_LENGTH', { expected: CONTROL_BYTES, got: 0 });
  const opcode = value[0]!;
  if (opcode !== CONTROL_ACK) throw new GattValueError('GATT_UNKNOWN_OPCODE', { expected: CONTROL_ACK, got: opcode });
  if (value.length !== CONTROL_BYTES) throw new GattValueError('GATT_BAD_LENGTH', { expected: CONTROL_BYTES, got: value.length });
  return { opcode, seq: new DataView(value.buffer, value.byteOffset, value.byteLength).getBigUint64(1) };
}

// ---------------------------------------------------------------- device information (§10.3)

/**
 * 22 bytes: one ATT Read Response at the default ATT_MTU of 23 carries ATT_MTU − 1 = 22
 * (Core Vol 3 Part F §3.4.4.4), so the gateway never needs a long read for it.
 */
export const INFO_BYTES = 22;

export interface DeviceInfo {
  /** The frame version the device sends (§3.1); also fixes this layout. */
  protocolVersion: number;
  /** 16 lowercase hex digits (§2.1). */
  deviceId: string;
  /** First 8 bytes of SHA-256(public key), 16 hex digits (§2.1). Unauthenticated: a hint, never proof. */
  keyFingerprint: string;
  /** "major.minor.patch", each 0 … 255. */
  firmwareVersion: string;
  /** The longest frame the device will send, MIN_FRAME_BYTES … MAX_FRAME_BYTES. */
  maxFrameBytes: number;
}

const FIRMWARE_VERSION = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HEX16 = /^[0-9a-f]{16}$/;

/**
 * The info value: version ‖ device id ‖ key fingerprint ‖ firmware major, minor, patch ‖ max frame bytes (uint16 BE).
 * @throws TypeError when a field cannot be represented (a device bug, not a wire error).
 */
export function encodeInfo(info: DeviceInfo): Uint8Array {
  if (info.protocolVersion !== FRAME_VERSION) throw new TypeError(`protocolVersion must be ${FRAME_VERSION}, got ${info.protocolVersion}`);
  if (!isDeviceId(info.deviceId)) throw new TypeError(`deviceId must be 16 lowercase hex digits, got "${info.deviceId}"`);
  if (!HEX16.test(info.keyFingerprint)) throw new TypeError(`keyFingerprint must be 16 lowercase hex digits, got "${info.keyFingerprint}"`);
  const fw = FIRMWARE_VERSION.exec(info.firmwareVersion)?.slice(1).map(Number);
  if (!fw || fw.some((x) => x > 255)) throw new TypeError(`firmwareVersion must be "major.minor.patch", each 0 … 255, got "${info.firmwareVersion}"`);
  if (!Number.isInteger(info.maxFrameBytes) || info.maxFrameBytes < MIN_FRAME_BYTES || info.maxFrameBytes > MAX_FRAME_BYTES)
    throw new TypeError(`maxFrameBytes must be ${MIN_FRAME_BYTES} … ${MAX_FRAME_BYTES}, got ${info.maxFrameBytes}`);
  const out = new Uint8Array(INFO_BYTES);
  out[0] = info.protocolVersion;
  out.set(Buffer.from(info.deviceId, 'hex'), 1);
  out.set(Buffer.from(info.keyFingerprint, 'hex'), 9);
  out.set(fw, 17);
  new DataView(out.buffer).setUint16(20, info.maxFrameBytes);
  return out;
}

/**
 * Strict decode of the info value (§10.3), version first.
 * @throws GattValueError GATT_BAD_LENGTH, GATT_UNKNOWN_VERSION or GATT_BAD_FIELD.
 */
export function decodeInfo(value: Uint8Array): DeviceInfo {
  if (value.length === 0) throw new GattValueError('GATT_BAD_LENGTH', { expected: INFO_BYTES, got: 0 });
  const version = value[0]!;
  if (version !== FRAME_VERSION) throw new GattValueError('GATT_UNKNOWN_VERSION', { expected: FRAME_VERSION, got: version });
  if (value.length !== INFO_BYTES) throw new GattValueError('GATT_BAD_LENGTH', { expected: INFO_BYTES, got: value.length });
  const maxFrameBytes = (value[20]! << 8) | value[21]!;
  if (maxFrameBytes < MIN_FRAME_BYTES || maxFrameBytes > MAX_FRAME_BYTES)
    throw new GattValueError('GATT_BAD_FIELD', { field: 'maxFrameBytes', min: MIN_FRAME_BYTES, max: MAX_FRAME_BYTES, got: maxFrameBytes });
  const hex = (a: number, b: number): string => Buffer.from(value.subarray(a, b)).toString('hex');
  return {
    protocolVersion: version,
    deviceId: hex(1, 9),
    keyFingerprint: hex(9, 17),
    firmwareVersion: `${value[17]}.${value[18]}.${value[19]}`,
    maxFrameBytes,
  };
}

/** The info a device with this public key publishes. */
export function deviceInfoFor(publicKey: Uint8Array, firmwareVersion: string, maxFrameBytes = MAX_FRAME_BYTES): DeviceInfo {
  return { protocolVersion: FRAME_VERSION, deviceId: deviceIdFromKey(publicKey), keyFingerprint: keyFingerprint(publicKey), firmwareVersion, maxFrameBytes };
}

/**
 * Whether an info value names this (enrolled) key: device id and fingerprint both derived from it.
 * A mismatch means the device holds another key than the one enrolled (§10.7); a match proves
 * nothing, since anyone can claim an id. Frames are authenticated by their signatures only.
 */
export function infoMatchesKey(info: DeviceInfo, publicKey: Uint8Array): boolean {
  return info.deviceId === deviceIdFromKey(publicKey) && info.keyFingerprint === keyFingerprint(publicKey);
}

// ---------------------------------------------------------------- device side (§10.7)

export interface GattDeviceStats {
  connections: number;
  /** Frames whose first fragment was handed out, retransmissions included. */
  framesSent: number;
  /** Of those, frames handed out before (R = 1). */
  retransmissions: number;
  notifications: number;
  /** Control writes applied. */
  acks: number;
  /** Frames removed from the outbox by acknowledgements. */
  framesAcked: number;
  /** Acknowledgements above the highest seq ever handed out, applied only up to it. */
  acksClamped: number;
}

interface Entry {
  seq: bigint;
  raw: Uint8Array;
  sent: boolean;
}

/**
 * A device's side of the profile across connections (§10.7), over the Outbox of its
 * DeviceCore (§8.2): every frame DeviceCore records is handed to `enqueue`, in recording order.
 * The outbox keeps it until an ACK covers it and, when full, drops the oldest frames and counts
 * them (`outbox.dropped`); this class follows those drops.
 *
 * On each connection the device waits for the gateway's first control write, then sends every
 * unacknowledged frame, oldest first, then new frames as they come, each as notifications of at
 * most min(ATT_MTU − 3, 512) bytes. A frame handed out before carries R = 1. A frame in
 * progress is always finished: acknowledgements take effect at frame boundaries.
 *
 * @example
 *   const link = new GattDeviceSession(core.outbox);
 *   const { seq, raw } = core.record(m); link.enqueue(seq, raw);
 *   link.connect(); link.setMtu(247);                 // after the ATT MTU exchange
 *   link.control(value);                              // a write to the control characteristic
 *   for (let v; (v = link.nextNotification()); ) notify(v);
 */
export class GattDeviceSession {
  private readonly queue: Entry[] = [];
  /** queue[start …] are the frames still in the outbox, oldest first. */
  private start = 0;
  /** queue[next] is the next frame to send on this connection. */
  private next = 0;
  private current: Generator<Uint8Array, void, undefined> | undefined;
  private isConnected = false;
  /** The gateway has written to the control characteristic on this connection. */
  private open = false;
  private mtu = ATT_MTU_MIN;
  private counter = 0;
  private highestSent = 0n;
  private readonly counts: GattDeviceStats = { connections: 0, framesSent: 0, retransmissions: 0, notifications: 0, acks: 0, framesAcked: 0, acksClamped: 0 };

  constructor(readonly outbox: Outbox) {}

  get stats(): GattDeviceStats {
    return { ...this.counts };
  }
  get connected(): boolean {
    return this.isConnected;
  }
  /** Frames waiting for an acknowledgement. */
  get backlog(): number {
    this.followDrops();
    return this.queue.length - this.start;
  }

  /**
   * A frame DeviceCore recorded (already in the outbox). `sentBefore`: handed out on an earlier
   * connection, e.g. restored from flash after a reboot, so it goes out again with R = 1.
   */
  enqueue(seq: bigint, raw: Uint8Array, sentBefore = false): void {
    const last = this.queue[this.queue.length - 1];
    if (last && seq <= last.seq) throw new RangeError(`frames are enqueued in seq order: ${seq} after ${last.seq}`);
    if (raw.length < 1 || raw.length > MAX_FRAME_BYTES) throw new RangeError(`a frame is 1 … ${MAX_FRAME_BYTES} bytes, got ${raw.length}`);
    this.queue.push({ seq, raw, sent: sentBefore });
    if (sentBefore && seq > this.highestSent) this.highestSent = seq;
    this.followDrops();
    this.compact();
  }

  /** A gateway connected: frame counter 0, ATT_MTU 23 until `setMtu`, nothing sent until its first control write. */
  connect(): void {
    this.isConnected = true;
    this.open = false;
    this.current = undefined;
    this.mtu = ATT_MTU_MIN;
    this.counter = 0;
    this.counts.connections++;
    this.followDrops();
    this.next = this.start;
  }

  /** The ATT_MTU after the exchange (once per connection); it applies from the next frame. */
  setMtu(mtu: number): void {
    notificationBytes(mtu); // throws RangeError for an impossible MTU
    this.mtu = mtu;
  }

  /** The link is gone: a frame in progress is abandoned; everything unacknowledged stays. */
  disconnect(): void {
    this.isConnected = false;
    this.open = false;
    this.current = undefined;
  }

  /**
   * A write to the control characteristic. ACK n removes every frame with seq ≤ min(n, highest
   * seq ever handed out) from the outbox, and opens the connection for sending.
   * @throws GattValueError for a malformed value (nothing changes); answer it with ATT_ERROR_FOR[e.code].
   */
  control(value: Uint8Array): ControlMessage {
    const msg = decodeControl(value);
    this.counts.acks++;
    // Never drop a frame that was never handed out on the strength of an acknowledgement: no
    // gateway can have settled it, so such an ACK is a gateway bug or a rogue central.
    let upTo = msg.seq;
    if (upTo > this.highestSent) {
      upTo = this.highestSent;
      this.counts.acksClamped++;
    }
    this.counts.framesAcked += this.outbox.ackUpTo(upTo);
    this.followDrops();
    while (this.start < this.queue.length && this.queue[this.start]!.seq <= upTo) this.start++;
    if (this.next < this.start) this.next = this.start;
    this.compact();
    if (this.isConnected) this.open = true;
    return msg;
  }

  /** The next notification value to send on the frame characteristic, or undefined when there is none now. */
  nextNotification(): Uint8Array | undefined {
    if (!this.isConnected || !this.open) return undefined;
    if (!this.current) {
      this.followDrops();
      if (this.next >= this.queue.length) return undefined;
      const e = this.queue[this.next++]!;
      // §10.5: R = 1 for a frame handed out before, on this connection or an earlier one.
      this.current = fragments(e.raw, { mtu: this.mtu, counter: this.counter, retransmit: e.sent });
      this.counter = (this.counter + 1) % FRAME_COUNTER_MODULO;
      this.counts.framesSent++;
      if (e.sent) this.counts.retransmissions++;
      e.sent = true;
      this.outbox.markSent(e.seq);
      if (e.seq > this.highestSent) this.highestSent = e.seq;
    }
    const r = this.current.next();
    if (r.done) {
      this.current = undefined;
      return this.nextNotification();
    }
    this.counts.notifications++;
    return r.value;
  }

  /** The outbox drops its oldest frames when full (§8.2), and acknowledged ones: forget them here too. */
  private followDrops(): void {
    while (this.queue.length - this.start > this.outbox.size) this.start++;
    if (this.next < this.start) this.next = this.start;
  }

  /** Releases forgotten frames, so that this index never holds more than about twice the outbox. */
  private compact(): void {
    if (this.start > 64 && this.start * 2 > this.queue.length) {
      this.queue.splice(0, this.start);
      this.next -= this.start;
      this.start = 0;
    }
  }
}
