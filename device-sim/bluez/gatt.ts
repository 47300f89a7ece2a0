/**
 * The remote GATT database of one connection, as BlueZ exports it once services are resolved:
 * the VitalProof service (org.bluez.GattService1) and its three characteristics
 * (org.bluez.GattCharacteristic1), named by their attribute handles as BlueZ names them:
 *
 *   dev_…/service000a            primary service, handles 0x000a … 0x0011
 *   dev_…/service000a/char000b   frame    (declaration 0x000b, value 0x000c, CCCD 0x000d)
 *   dev_…/service000a/char000e   control  (declaration 0x000e, value 0x000f)
 *   dev_…/service000a/char0010   info     (declaration 0x0010, value 0x0011)
 *
 * Each notification of the frame characteristic sets its Value and emits PropertiesChanged,
 * as BlueZ does for StartNotify clients (PROTOCOL.md §10.9). Notifications are pumped from the
 * peripheral's GATT server while some client has notifications enabled, in bursts that yield
 * to the event loop, with an optional pause after each (a slow link).
 */
import { isError } from '../../firmware-proto/coded-error.js';
import { ATT_ERROR_FOR, GATT_PROFILE, GattValueError } from '../../firmware-proto/gatt.js';
import type { Callers, Variant } from './dbus.js';
import { Interface } from './dbus.js';
import { attError, bluezError } from './errors.js';
import type { ObjectTree } from './object-tree.js';
import type { Peripheral } from './radio.js';

type Role = 'frame' | 'control' | 'info';

/** Notifications sent in one turn of the event loop before the pump yields. */
const BURST = 32;
/** ATT "Attribute Not Long": the server answers it to a write at a non-zero offset of a short attribute. */
const ATT_ATTRIBUTE_NOT_LONG = 0x0b;

const SERVICE_HANDLE = 0x000a;
const LAYOUT: readonly { role: Role; declaration: number }[] = [
  { role: 'frame', declaration: 0x000b },
  { role: 'control', declaration: 0x000e },
  { role: 'info', declaration: 0x0010 },
];

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

class GattService1 extends Interface {
  constructor(
    private readonly devicePath: string,
    private readonly handle: number,
  ) {
    super('org.bluez.GattService1');
  }
  get UUID(): string {
    return GATT_PROFILE.service;
  }
  get Primary(): boolean {
    return true;
  }
  get Device(): string {
    return this.devicePath;
  }
  get Includes(): string[] {
    return [];
  }
  get Handle(): number {
    return this.handle;
  }
}
GattService1.configureMembers({
  properties: {
    UUID: { signature: 's', access: 'read' },
    Primary: { signature: 'b', access: 'read' },
    Device: { signature: 'o', access: 'read' },
    Includes: { signature: 'ao', access: 'read' },
    Handle: { signature: 'q', access: 'read' },
  },
});

class GattCharacteristic1 extends Interface {
  value: Buffer = Buffer.alloc(0);
  notifying = false;
  constructor(
    readonly role: Role,
    private readonly servicePath: string,
    private readonly valueHandle: number,
    private readonly conn: GattConnection,
  ) {
    super('org.bluez.GattCharacteristic1');
  }
  get UUID(): string {
    return GATT_PROFILE[this.role].uuid;
  }
  get Service(): string {
    return this.servicePath;
  }
  get Value(): Buffer {
    return this.value;
  }
  get Notifying(): boolean {
    return this.notifying;
  }
  get Flags(): string[] {
    return [...GATT_PROFILE[this.role].flags];
  }
  get MTU(): number {
    return this.conn.mtu;
  }
  get Handle(): number {
    return this.valueHandle;
  }
  ReadValue(options: Record<string, Variant>): Buffer {
    return this.conn.read(this, options);
  }
  WriteValue(value: Buffer, options: Record<string, Variant>): void {
    this.conn.write(this, value, options);
  }
  StartNotify(): void {
    this.conn.startNotify(this);
  }
  StopNotify(): void {
    this.conn.stopNotify(this);
  }
  AcquireWrite(): never {
    throw bluezError('org.bluez.Error.NotSupported', 'Operation is not supported: the simulator has no socket mode, use WriteValue');
  }
  AcquireNotify(): never {
    throw bluezError('org.bluez.Error.NotSupported', 'Operation is not supported: the simulator has no socket mode, use StartNotify');
  }
}
GattCharacteristic1.configureMembers({
  properties: {
    UUID: { signature: 's', access: 'read' },
    Service: { signature: 'o', access: 'read' },
    Value: { signature: 'ay', access: 'read' },
    Notifying: { signature: 'b', access: 'read' },
    Flags: { signature: 'as', access: 'read' },
    MTU: { signature: 'q', access: 'read' },
    Handle: { signature: 'q', access: 'read' },
  },
  methods: {
    ReadValue: { inSignature: 'a{sv}', outSignature: 'ay' },
    WriteValue: { inSignature: 'aya{sv}' },
    StartNotify: {},
    StopNotify: {},
    AcquireWrite: { inSignature: 'a{sv}', outSignature: 'hq' },
    AcquireNotify: { inSignature: 'a{sv}', outSignature: 'hq' },
  },
});

function option<T>(options: Record<string, Variant>, key: string, signature: string, fallback: T): T {
  const v = options[key];
  if (v === undefined) return fallback;
  if (v.signature !== signature) throw bluezError('org.bluez.Error.InvalidArguments', `option ${key} must have D-Bus type ${signature}`);
  return v.value as T;
}

/**
 * One connection's GATT objects and notification pump. Created by the device object when a
 * central connects; `export` puts the objects on the bus, `close` takes them off again.
 */
export class GattConnection {
  readonly servicePath: string;
  private readonly service: GattService1;
  private readonly chars: { path: string; char: GattCharacteristic1 }[];
  /** Clients (unique bus names) that called StartNotify on the frame characteristic. */
  private readonly notifyClients = new Set<string>();
  private active = true;
  private pumping = false;
  /** A wake arrived while a pump turn was running: look again before stopping. */
  private woken = false;
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    devicePath: string,
    private readonly peripheral: Peripheral,
    private readonly tree: ObjectTree,
    private readonly callers: Callers,
  ) {
    this.servicePath = `${devicePath}/service${hex4(SERVICE_HANDLE)}`;
    this.service = new GattService1(devicePath, SERVICE_HANDLE);
    this.chars = LAYOUT.map(({ role, declaration }) => ({
      path: `${this.servicePath}/char${hex4(declaration)}`,
      char: new GattCharacteristic1(role, this.servicePath, declaration + 1, this),
    }));
  }

  get mtu(): number {
    return this.peripheral.mtu;
  }

  /** Exports the service, then its characteristics: InterfacesAdded for each, in that order. */
  export(): void {
    this.tree.add(this.servicePath, [this.service]);
    for (const c of this.chars) this.tree.add(c.path, [c.char]);
  }

  /** Stops the pump and removes the objects, characteristics first (InterfacesRemoved for each). */
  close(): void {
    this.active = false;
    clearImmediate(this.immediate);
    clearTimeout(this.timer);
    for (const c of [...this.chars].reverse()) this.tree.remove(c.path);
    this.tree.remove(this.servicePath);
  }

  /** A client left the bus: its notification session ends, as in BlueZ. */
  clientLeft(sender: string): void {
    const frame = this.charOf('frame');
    if (this.notifyClients.delete(sender) && this.notifyClients.size === 0) this.setNotifying(frame, false);
  }

  read(char: GattCharacteristic1, options: Record<string, Variant>): Buffer {
    this.mustBeActive();
    if (char.role !== 'info') throw bluezError('org.bluez.Error.NotPermitted', 'Read not permitted');
    const offset = option<number>(options, 'offset', 'q', 0);
    const value = Buffer.from(this.peripheral.server.readInfo());
    if (offset > value.length) throw attError(0x07);
    if (!value.equals(char.value)) {
      char.value = value;
      this.changed(char, { Value: value });
    }
    return value.subarray(offset);
  }

  /**
   * A write to the control characteristic. "request" (and "reliable", which the device serves
   * the same way, as one prepared write) is applied and answered; "command" is a Write Command,
   * which a server drops silently on a characteristic without the write-without-response
   * property, so BlueZ reports success and nothing happens — as on a real device.
   */
  write(char: GattCharacteristic1, value: Buffer, options: Record<string, Variant>): void {
    this.mustBeActive();
    if (char.role !== 'control') throw bluezError('org.bluez.Error.NotPermitted', 'Write not permitted');
    const type = option<string>(options, 'type', 's', 'request');
    const offset = option<number>(options, 'offset', 'q', 0);
    if (type !== 'request' && type !== 'reliable' && type !== 'command') throw bluezError('org.bluez.Error.InvalidArguments', `unknown write type "${type}"`);
    if (type === 'command') return;
    if (offset !== 0) throw attError(ATT_ATTRIBUTE_NOT_LONG);
    try {
      this.peripheral.server.writeControl(new Uint8Array(value));
    } catch (e) {
      if (isError(e, GattValueError)) throw attError(ATT_ERROR_FOR[e.code]);
      throw e;
    }
    this.wake();
  }

  startNotify(char: GattCharacteristic1): void {
    const sender = this.callers.sender;
    this.mustBeActive();
    if (char.role !== 'frame') throw bluezError('org.bluez.Error.NotSupported', 'Operation is not supported');
    if (this.notifyClients.has(sender)) throw bluezError('org.bluez.Error.InProgress', 'In Progress');
    this.notifyClients.add(sender);
    if (this.notifyClients.size === 1) this.setNotifying(char, true);
  }

  stopNotify(char: GattCharacteristic1): void {
    const sender = this.callers.sender;
    if (char.role !== 'frame' || !this.notifyClients.delete(sender)) throw bluezError('org.bluez.Error.Failed', 'No notify session started');
    if (this.notifyClients.size === 0) this.setNotifying(char, false);
  }

  /** The server may have notifications: start pumping unless a turn is already under way. */
  wake(): void {
    if (!this.active || this.notifyClients.size === 0) return;
    if (this.pumping) {
      this.woken = true;
      return;
    }
    this.pumping = true;
    this.immediate = setImmediate(() => this.pump());
  }

  private pump(): void {
    this.immediate = undefined;
    const frame = this.charOf('frame');
    for (let i = 0; i < BURST; i++) {
      if (!this.active || this.notifyClients.size === 0) {
        this.pumping = false;
        return;
      }
      const v = this.peripheral.server.nextNotification();
      if (!v) {
        if (this.woken) {
          this.woken = false;
          continue;
        }
        this.pumping = false;
        return;
      }
      frame.value = Buffer.from(v);
      this.changed(frame, { Value: frame.value });
      if (this.peripheral.notifyDelayMs > 0) {
        this.timer = setTimeout(() => this.pump(), this.peripheral.notifyDelayMs);
        return;
      }
    }
    this.immediate = setImmediate(() => this.pump());
  }

  private setNotifying(char: GattCharacteristic1, on: boolean): void {
    char.notifying = on;
    this.changed(char, { Notifying: on });
    this.peripheral.setNotifying(on);
  }

  private changed(char: GattCharacteristic1, props: Record<string, unknown>): void {
    const c = this.chars.find((x) => x.char === char)!;
    this.tree.changed(c.path, char, props);
  }

  private charOf(role: Role): GattCharacteristic1 {
    return this.chars.find((c) => c.char.role === role)!.char;
  }

  private mustBeActive(): void {
    if (!this.active) throw bluezError('org.bluez.Error.NotConnected', 'Not Connected');
  }
}
