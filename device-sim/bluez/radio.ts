/**
 * The air between the simulated adapter and the wearables: what a peripheral advertises, whether
 * it can be heard and connected, how strong it is heard, and the radio events that end a
 * connection. Independent of D-Bus; the adapter (adapter.ts, device.ts) turns it into BlueZ
 * objects and signals.
 *
 * A peripheral advertises while it is enabled, not vanished and not connected (a VitalProof
 * wearable serves one central at a time). Out of range it is still heard, weakly, but every
 * connection attempt fails and a connection drops (the link layer's supervision timeout,
 * Core Vol 6 Part B §4.5.2).
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { notificationBytes } from '../../firmware-proto/fragment.js';
import { FRAME_VERSION } from '../../firmware-proto/frame.js';
import { VITALPROOF_SERVICE_UUID } from '../../firmware-proto/gatt.js';
import { Rng } from '../rng.js';
import { normaliseUuid } from './discovery-filter.js';

/** The ATT_MTU a simulated connection settles on after the exchange (a common phone/BlueZ value). */
export const DEFAULT_MTU = 247;
/** Advertised TX power, dBm. */
export const DEFAULT_TX_POWER = 0;
/** How strongly an out-of-range peripheral is still heard, dBm: too weak to hold a connection. */
export const OUT_OF_RANGE_RSSI = -100;

export type DisconnectCause =
  /** The central called Disconnect (or RemoveDevice). */
  | 'central'
  /** The peripheral ended it (the link stopped, the device powered off). */
  | 'peripheral'
  /** The radio: supervision timeout, out of range, vanished. */
  | 'radio';

/**
 * The device's GATT server for one peripheral, across connections: BleLink implements it over
 * GattDeviceSession (PROTOCOL.md §10.7).
 */
export interface GattServer {
  /** The value of the info characteristic (§10.3). */
  readInfo(): Uint8Array;
  /**
   * A Write Request to the control characteristic (§10.4).
   * @throws GattValueError: the adapter answers ATT_ERROR_FOR[e.code].
   */
  writeControl(value: Uint8Array): void;
  /** A central connected; `mtu` is the ATT_MTU the exchange settled on. */
  centralConnected(mtu: number): void;
  centralDisconnected(cause: DisconnectCause): void;
  /** The next notification of the frame characteristic, or undefined when there is none now (then call the peripheral's `wake()` once there is). */
  nextNotification(): Uint8Array | undefined;
}

/** The central's end of one connection, as the simulated adapter hands it to the peripheral. */
export interface CentralEnd {
  /** Ends the connection: the adapter removes its objects, signals, then calls `released`. */
  drop(cause: DisconnectCause): void;
  /** The GATT server may have notifications to send. */
  wake(): void;
}

export interface PeripheralOptions {
  /** 16 lowercase hex digits; the address and name derive from it. */
  deviceId: string;
  server: GattServer;
  /**
   * Service UUIDs in the advertisement; default the VitalProof service. Tests use another one
   * to check that a UUID discovery filter leaves a peripheral out.
   */
  advertisedUuids?: readonly string[];
  /** ATT_MTU of its connections; default 247. */
  mtu?: number;
  /** Pause after each notification (a slow link); default 0. */
  notifyDelayMs?: number;
  txPower?: number;
  /** Median RSSI in range, dBm; default −75 … −45, fixed by the device id. */
  rssi?: number;
}

interface PeripheralEvents {
  /** Whether it advertises changed. */
  advertising: [boolean];
  /** In range (true) again, or out of range (false). */
  range: [boolean];
  connected: [];
  disconnected: [DisconnectCause];
  /** The central enabled (true) or disabled (false) notifications of the frame characteristic. */
  notifying: [boolean];
  /** It stopped advertising abruptly and BlueZ forgets it at once (see Peripheral.vanish). */
  vanished: [];
  removed: [];
}

/**
 * A random static device address (Core Vol 6 Part B §1.3.2.1): the two most significant bits 1,
 * the other 46 from SHA-256 of the device id, so a wearable keeps its address across runs.
 * @example staticRandomAddress('8154e161025692be') // "C?:??:??:??:??:??", the same every time
 */
export function staticRandomAddress(deviceId: string): string {
  const b = createHash('sha256').update(`VitalProof/sim/ble-address/${deviceId}`).digest().subarray(0, 6);
  b[0] = b[0]! | 0xc0;
  return [...b].map((x) => x.toString(16).padStart(2, '0').toUpperCase()).join(':');
}

/** The advertised local name: `VP-` and the first 4 hex digits of the device id. */
export function advertisedName(deviceId: string): string {
  return `VP-${deviceId.slice(0, 4)}`;
}

/**
 * The scan response's service data for the VitalProof service (PROTOCOL.md §10.11): protocol
 * version (1 byte) ‖ device id (8 bytes). A hint that lets a gateway skip devices it does not
 * know without connecting; unauthenticated, and the info characteristic (§10.3) stays authoritative.
 */
export function serviceDataFor(deviceId: string): Buffer {
  return Buffer.concat([Buffer.from([FRAME_VERSION]), Buffer.from(deviceId, 'hex')]);
}

export class Peripheral extends EventEmitter<PeripheralEvents> {
  readonly deviceId: string;
  readonly address: string;
  readonly name: string;
  readonly advertisedUuids: readonly string[];
  readonly serviceData: Buffer;
  readonly mtu: number;
  readonly notifyDelayMs: number;
  readonly txPower: number;
  readonly server: GattServer;
  private readonly medianRssi: number;
  private readonly jitter: Rng;
  private enabled = false;
  private vanished = false;
  private outOfRange = false;
  private removed = false;
  private central: CentralEnd | undefined;
  private isNotifying = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly counts = { connections: 0, notifyStarts: 0 };

  /** @throws RangeError for an ATT_MTU no LE link has (below 23). */
  constructor(o: PeripheralOptions) {
    super();
    this.deviceId = o.deviceId;
    this.server = o.server;
    this.address = staticRandomAddress(o.deviceId);
    this.name = advertisedName(o.deviceId);
    this.advertisedUuids = (o.advertisedUuids ?? [VITALPROOF_SERVICE_UUID]).map(normaliseUuid);
    this.serviceData = serviceDataFor(o.deviceId);
    this.mtu = o.mtu ?? DEFAULT_MTU;
    notificationBytes(this.mtu);
    this.notifyDelayMs = o.notifyDelayMs ?? 0;
    this.txPower = o.txPower ?? DEFAULT_TX_POWER;
    this.jitter = Rng.for('ble-rssi', o.deviceId);
    this.medianRssi = o.rssi ?? this.jitter.int(-75, -45);
  }

  /** Advertising: enabled, present, not connected. */
  get advertising(): boolean {
    return this.enabled && !this.vanished && !this.removed && !this.central;
  }
  get inRange(): boolean {
    return !this.outOfRange;
  }
  /** A connection attempt would succeed now. */
  get connectable(): boolean {
    return this.advertising && !this.outOfRange;
  }
  get connected(): boolean {
    return this.central !== undefined;
  }
  /** The central has notifications of the frame characteristic enabled. */
  get notifying(): boolean {
    return this.isNotifying;
  }
  /** Connections accepted, and how often a central enabled notifications: for tests. */
  get stats(): { connections: number; notifyStarts: number } {
    return { ...this.counts };
  }

  /** The RSSI of the next advertisement heard: a few dB around the median, far lower out of range. */
  rssi(): number {
    const wobble = this.jitter.int(-2, 2);
    return this.outOfRange ? OUT_OF_RANGE_RSSI + wobble : this.medianRssi + wobble;
  }

  startAdvertising(): void {
    if (this.removed) return;
    this.setState(() => (this.enabled = true));
  }

  stopAdvertising(): void {
    this.setState(() => (this.enabled = false));
  }

  /** The adapter connects: false when the peripheral cannot be reached now. */
  accept(central: CentralEnd): boolean {
    if (!this.connectable) return false;
    this.setState(() => (this.central = central));
    this.counts.connections++;
    this.server.centralConnected(this.mtu);
    this.emit('connected');
    return true;
  }

  /** The adapter has torn the connection down (after `drop`, or the central's Disconnect). */
  released(cause: DisconnectCause): void {
    if (!this.central) return;
    this.isNotifying = false;
    this.setState(() => (this.central = undefined));
    this.server.centralDisconnected(cause);
    this.emit('disconnected', cause);
  }

  /** The central's CCCD write, through StartNotify/StopNotify. */
  setNotifying(on: boolean): void {
    if (on === this.isNotifying) return;
    this.isNotifying = on;
    if (on) this.counts.notifyStarts++;
    this.emit('notifying', on);
    if (on) this.wake();
  }

  /** The GATT server has something to send. */
  wake(): void {
    this.central?.wake();
  }

  /** The peripheral ends the connection politely (LL_TERMINATE_IND). */
  disconnect(): void {
    this.central?.drop('peripheral');
  }

  /** The radio loses the connection (supervision timeout); the peripheral advertises again. */
  dropConnection(): void {
    this.central?.drop('radio');
  }

  /**
   * Out of range for `ms`: a connection drops, the RSSI falls, connection attempts fail; then it
   * is back, and advertises as before.
   */
  goOutOfRange(ms: number): void {
    if (this.removed) return;
    this.outOfRange = true;
    this.emit('range', false);
    this.dropConnection();
    this.after(ms, () => {
      this.outOfRange = false;
      this.emit('range', true);
    });
  }

  /**
   * Gone for `ms` (powered down, shielded): a connection drops, advertising stops, and the adapter
   * forgets the device at once; then it advertises again and is discovered anew.
   */
  vanish(ms: number): void {
    if (this.removed) return;
    this.dropConnection();
    this.setState(() => (this.vanished = true));
    this.emit('vanished');
    this.after(ms, () => this.setState(() => (this.vanished = false)));
  }

  /** Powered off for good: the connection ends and it never advertises again. */
  remove(): void {
    if (this.removed) return;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.disconnect();
    this.setState(() => (this.removed = true));
    this.emit('removed');
  }

  private after(ms: number, f: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      f();
    }, ms);
    this.timers.add(t);
  }

  /** Applies a change and emits `advertising` when it changed whether the peripheral advertises. */
  private setState(change: () => void): void {
    const before = this.advertising;
    change();
    if (this.advertising !== before) this.emit('advertising', this.advertising);
  }
}
