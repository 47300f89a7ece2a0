/**
 * One remote device as the simulated BlueZ shows it: `/org/bluez/hci0/dev_XX_XX_XX_XX_XX_XX`
 * with org.bluez.Device1, created when a discovery first hears the peripheral, and its
 * connection.
 *
 * Connect follows BlueZ's order and returns only once all of it is signalled: Connected = true,
 * the GATT objects (InterfacesAdded), ServicesResolved = true. node-ble's `gatt()` reads
 * ServicesResolved and then lists the objects, so a Connect that returned earlier would race it.
 * A disconnect, from either side, removes the GATT objects (InterfacesRemoved), then sets
 * ServicesResolved and Connected to false.
 *
 * The device is temporary, as BlueZ keeps unpaired devices: once it is neither connected nor
 * heard for `temporaryTimeoutMs` (BlueZ's TemporaryTimeout, 30 s by default), it is removed.
 */
import { Interface, Variant, type Callers } from './dbus.js';
import { bluezError } from './errors.js';
import { GattConnection } from './gatt.js';
import type { ObjectTree } from './object-tree.js';
import type { DisconnectCause, Peripheral } from './radio.js';

/** BR/EDR not supported, LE General Discoverable (Core Supplement Part A §1.3). */
const ADVERTISING_FLAGS = 0x06;
/** What BlueZ reports when an LE connection attempt is given up or cancelled. */
export const CONNECT_ABORTED = 'le-connection-abort-by-local';

export interface DeviceTiming {
  temporaryTimeoutMs: number;
  /** A connection attempt to a peripheral that cannot be reached fails after this long. */
  connectTimeoutMs: number;
}

class Device1 extends Interface {
  constructor(private readonly d: DeviceObject) {
    super('org.bluez.Device1');
  }
  get Address(): string {
    return this.d.peripheral.address;
  }
  get AddressType(): string {
    return 'random';
  }
  get Name(): string {
    return this.d.peripheral.name;
  }
  get Alias(): string {
    return this.d.alias;
  }
  set Alias(v: string) {
    this.d.setAlias(v);
  }
  get Adapter(): string {
    return this.d.adapterPath;
  }
  get Paired(): boolean {
    return false;
  }
  get Bonded(): boolean {
    return false;
  }
  get Trusted(): boolean {
    return this.d.trusted;
  }
  set Trusted(v: boolean) {
    this.d.setTrusted(v);
  }
  get Blocked(): boolean {
    return false;
  }
  get LegacyPairing(): boolean {
    return false;
  }
  get Connected(): boolean {
    return this.d.connected;
  }
  get ServicesResolved(): boolean {
    return this.d.servicesResolved;
  }
  get RSSI(): number {
    return this.d.rssi;
  }
  get TxPower(): number {
    return this.d.peripheral.txPower;
  }
  get UUIDs(): string[] {
    return [...this.d.peripheral.advertisedUuids];
  }
  get ServiceData(): Record<string, Variant> {
    const data = this.d.peripheral.serviceData;
    return Object.fromEntries(this.d.peripheral.advertisedUuids.map((u) => [u, new Variant('ay', data)]));
  }
  get AdvertisingFlags(): Buffer {
    return Buffer.from([ADVERTISING_FLAGS]);
  }
  Connect(): Promise<void> {
    return this.d.connect();
  }
  Disconnect(): void {
    this.d.disconnect();
  }
  /**
   * The simulator does not bond: its characteristics carry the open flags of PROTOCOL.md §10.2
   * (the secured ones need LE Secure Connections, §10.8), so pairing is refused as unsupported.
   */
  Pair(): never {
    throw bluezError('org.bluez.Error.NotSupported', 'Operation is not supported: the simulator does not bond');
  }
  CancelPair(): never {
    throw bluezError('org.bluez.Error.DoesNotExist', 'Does Not Exist');
  }
}
Device1.configureMembers({
  properties: {
    Address: { signature: 's', access: 'read' },
    AddressType: { signature: 's', access: 'read' },
    Name: { signature: 's', access: 'read' },
    Alias: { signature: 's', access: 'readwrite' },
    Adapter: { signature: 'o', access: 'read' },
    Paired: { signature: 'b', access: 'read' },
    Bonded: { signature: 'b', access: 'read' },
    Trusted: { signature: 'b', access: 'readwrite' },
    Blocked: { signature: 'b', access: 'read' },
    LegacyPairing: { signature: 'b', access: 'read' },
    Connected: { signature: 'b', access: 'read' },
    ServicesResolved: { signature: 'b', access: 'read' },
    RSSI: { signature: 'n', access: 'read' },
    TxPower: { signature: 'n', access: 'read' },
    UUIDs: { signature: 'as', access: 'read' },
    ServiceData: { signature: 'a{sv}', access: 'read' },
    AdvertisingFlags: { signature: 'ay', access: 'read' },
  },
  methods: { Connect: {}, Disconnect: {}, Pair: {}, CancelPair: {} },
});

/** The object path BlueZ gives a device: its address with `_` for `:`. */
export function devicePathFor(adapterPath: string, address: string): string {
  return `${adapterPath}/dev_${address.replace(/:/g, '_')}`;
}

type Wait = 'reachable' | 'timeout' | 'cancelled';

export class DeviceObject {
  readonly path: string;
  readonly iface: Device1;
  private name: string;
  private isTrusted = false;
  private lastRssi: number;
  private resolved = false;
  /** Being removed: advertisements heard meanwhile no longer keep it. */
  private closed = false;
  private conn: GattConnection | undefined;
  /** Cancels the connection attempt under way. */
  private pending: (() => void) | undefined;
  private expiry: NodeJS.Timeout | undefined;

  constructor(
    readonly adapterPath: string,
    readonly peripheral: Peripheral,
    private readonly tree: ObjectTree,
    private readonly callers: Callers,
    private readonly timing: DeviceTiming,
    /** The RSSI of the advertisement that made the adapter report it. */
    rssi: number,
    private readonly forget: (d: DeviceObject) => void,
  ) {
    this.path = devicePathFor(adapterPath, peripheral.address);
    this.iface = new Device1(this);
    this.name = peripheral.name;
    this.lastRssi = rssi;
  }

  get connected(): boolean {
    return this.conn !== undefined;
  }
  get servicesResolved(): boolean {
    return this.resolved;
  }
  get alias(): string {
    return this.name;
  }
  get trusted(): boolean {
    return this.isTrusted;
  }
  /** The RSSI of the last advertisement heard. */
  get rssi(): number {
    return this.lastRssi;
  }

  /** An advertisement was heard: the device stays, and its RSSI follows. */
  seen(rssi: number): void {
    if (this.closed) return;
    if (rssi !== this.lastRssi) {
      this.lastRssi = rssi;
      this.changed({ RSSI: rssi });
    }
    this.armExpiry();
  }

  /** Device1.Alias = v; an empty alias goes back to the advertised name, as in BlueZ. */
  setAlias(v: string): void {
    this.name = v === '' ? this.peripheral.name : v;
    this.changed({ Alias: this.name });
  }

  /** A trusted device is kept, as BlueZ stores it: the temporary timeout no longer applies. */
  setTrusted(v: boolean): void {
    this.isTrusted = v;
    this.changed({ Trusted: v });
    this.armExpiry();
  }

  /**
   * Device1.Connect. Waits up to connectTimeoutMs for the peripheral to be reachable, then
   * connects and resolves once ServicesResolved = true is signalled.
   * @throws DBusError org.bluez.Error.InProgress while another attempt is under way;
   *   org.bluez.Error.Failed "le-connection-abort-by-local" when it cannot be reached, or the
   *   attempt is cancelled (Disconnect, RemoveDevice).
   */
  async connect(): Promise<void> {
    if (this.conn) return;
    if (this.pending) throw bluezError('org.bluez.Error.InProgress', 'In Progress');
    if (!this.peripheral.connectable && (await this.waitReachable()) !== 'reachable') {
      this.armExpiry();
      throw bluezError('org.bluez.Error.Failed', CONNECT_ABORTED);
    }
    const conn = new GattConnection(this.path, this.peripheral, this.tree, this.callers);
    this.conn = conn;
    if (!this.peripheral.accept({ drop: (cause) => this.teardown(conn, cause), wake: () => conn.wake() })) {
      this.conn = undefined;
      throw bluezError('org.bluez.Error.Failed', CONNECT_ABORTED);
    }
    clearTimeout(this.expiry);
    this.changed({ Connected: true });
    conn.export();
    this.resolved = true;
    this.changed({ ServicesResolved: true });
  }

  /** Device1.Disconnect: cancels an attempt, or ends the connection. */
  disconnect(): void {
    if (this.pending) {
      this.pending();
      return;
    }
    if (!this.conn) throw bluezError('org.bluez.Error.NotConnected', 'Not Connected');
    this.teardown(this.conn, 'central');
  }

  clientLeft(sender: string): void {
    this.conn?.clientLeft(sender);
  }

  /** The adapter removes the device (RemoveDevice, vanished, closing): disconnect first. */
  close(cause: DisconnectCause): void {
    this.closed = true;
    this.pending?.();
    if (this.conn) this.teardown(this.conn, cause);
    clearTimeout(this.expiry);
  }

  /** Until the peripheral can be connected, the attempt times out, or it is cancelled. */
  private waitReachable(): Promise<Wait> {
    return new Promise((resolve) => {
      const done = (how: Wait): void => {
        clearTimeout(timer);
        this.peripheral.off('advertising', check);
        this.peripheral.off('range', check);
        this.pending = undefined;
        resolve(how);
      };
      const check = (): void => {
        if (this.peripheral.connectable) done('reachable');
      };
      const timer = setTimeout(() => done('timeout'), this.timing.connectTimeoutMs);
      this.peripheral.on('advertising', check);
      this.peripheral.on('range', check);
      this.pending = () => done('cancelled');
    });
  }

  private teardown(conn: GattConnection, cause: DisconnectCause): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    conn.close();
    this.resolved = false;
    this.changed({ ServicesResolved: false });
    this.changed({ Connected: false });
    this.peripheral.released(cause);
    this.armExpiry();
  }

  private armExpiry(): void {
    clearTimeout(this.expiry);
    if (this.conn || this.isTrusted || this.closed) return;
    this.expiry = setTimeout(() => {
      if (!this.conn && !this.pending) this.forget(this);
    }, this.timing.temporaryTimeoutMs);
  }

  private changed(props: Record<string, unknown>): void {
    this.tree.changed(this.path, this.iface, props);
  }
}
