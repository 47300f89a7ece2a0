/**
 * The simulated controller `/org/bluez/hci0` (org.bluez.Adapter1) and its discovery, as BlueZ
 * runs it for several D-Bus clients at once:
 *
 * - every client (unique bus name) has its own discovery session and filter: StartDiscovery
 *   twice is InProgress, StopDiscovery without a session is Failed "No discovery started", a
 *   client leaving the bus ends its session; Discovering is true while any session runs;
 * - SetDiscoveryFilter applies to the caller only (discovery-filter.ts), and the filter goes with
 *   its session at StopDiscovery;
 * - while discovering, a peripheral that advertises is reported (a Device1 object) when any
 *   session's filter passes it; its RSSI is updated every scan interval.
 */
import { bluezError } from './errors.js';
import { DeviceObject, type DeviceTiming } from './device.js';
import { DISCOVERY_FILTER_KEYS, filterPasses, parseDiscoveryFilter, type DiscoveryFilter } from './discovery-filter.js';
import { Interface, type Callers, type Variant } from './dbus.js';
import type { ObjectTree } from './object-tree.js';
import type { Peripheral } from './radio.js';

export const ADAPTER_PATH = '/org/bluez/hci0';
/** An address of the range IANA reserves for documentation (RFC 7042 §2.1.2): no real vendor's. */
export const ADAPTER_ADDRESS = '00:00:5E:00:53:01';
/** Linux Foundation vendor 0x1d6b, BlueZ product 0x0246, version 5.66 (Debian 12's): what bluetoothd reports. */
const MODALIAS = 'usb:v1D6Bp0246d0542';
/** GAP, GATT and Device Information: the services a BlueZ adapter lists. */
const ADAPTER_UUIDS = ['00001800-0000-1000-8000-00805f9b34fb', '00001801-0000-1000-8000-00805f9b34fb', '0000180a-0000-1000-8000-00805f9b34fb'];

export interface AdapterOptions extends DeviceTiming {
  /** How often a discovering adapter refreshes what it hears (RSSI, temporary timeouts). */
  scanIntervalMs: number;
  name: string;
}

interface ClientDiscovery {
  discovering: boolean;
  filter: DiscoveryFilter | undefined;
}

class Adapter1 extends Interface {
  constructor(private readonly a: Adapter) {
    super('org.bluez.Adapter1');
  }
  get Address(): string {
    return ADAPTER_ADDRESS;
  }
  get AddressType(): string {
    return 'public';
  }
  get Name(): string {
    return this.a.name;
  }
  get Alias(): string {
    return this.a.alias;
  }
  set Alias(v: string) {
    this.a.setAlias(v);
  }
  get Class(): number {
    return 0;
  }
  get Powered(): boolean {
    return true;
  }
  get PowerState(): string {
    return 'on';
  }
  get Discoverable(): boolean {
    return false;
  }
  get DiscoverableTimeout(): number {
    return 180;
  }
  get Pairable(): boolean {
    return false;
  }
  get PairableTimeout(): number {
    return 0;
  }
  get Discovering(): boolean {
    return this.a.discovering;
  }
  get UUIDs(): string[] {
    return ADAPTER_UUIDS;
  }
  get Modalias(): string {
    return MODALIAS;
  }
  get Roles(): string[] {
    return ['central'];
  }
  StartDiscovery(): void {
    this.a.startDiscovery(this.a.callers.sender);
  }
  StopDiscovery(): void {
    this.a.stopDiscovery(this.a.callers.sender);
  }
  SetDiscoveryFilter(filter: Record<string, Variant>): void {
    this.a.setDiscoveryFilter(this.a.callers.sender, filter);
  }
  GetDiscoveryFilters(): string[] {
    return [...DISCOVERY_FILTER_KEYS];
  }
  RemoveDevice(path: string): void {
    this.a.removeDevice(path);
  }
}
Adapter1.configureMembers({
  properties: {
    Address: { signature: 's', access: 'read' },
    AddressType: { signature: 's', access: 'read' },
    Name: { signature: 's', access: 'read' },
    Alias: { signature: 's', access: 'readwrite' },
    Class: { signature: 'u', access: 'read' },
    Powered: { signature: 'b', access: 'read' },
    PowerState: { signature: 's', access: 'read' },
    Discoverable: { signature: 'b', access: 'read' },
    DiscoverableTimeout: { signature: 'u', access: 'read' },
    Pairable: { signature: 'b', access: 'read' },
    PairableTimeout: { signature: 'u', access: 'read' },
    Discovering: { signature: 'b', access: 'read' },
    UUIDs: { signature: 'as', access: 'read' },
    Modalias: { signature: 's', access: 'read' },
    Roles: { signature: 'as', access: 'read' },
  },
  methods: {
    StartDiscovery: {},
    StopDiscovery: {},
    SetDiscoveryFilter: { inSignature: 'a{sv}' },
    GetDiscoveryFilters: { outSignature: 'as' },
    RemoveDevice: { inSignature: 'o' },
  },
});

export class Adapter {
  readonly path = ADAPTER_PATH;
  readonly iface: Adapter1;
  private aliasName: string;
  private readonly clients = new Map<string, ClientDiscovery>();
  private readonly peripherals = new Map<Peripheral, () => void>();
  private readonly devices = new Map<Peripheral, DeviceObject>();
  private scanTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly tree: ObjectTree,
    readonly callers: Callers,
    private readonly o: AdapterOptions,
  ) {
    this.iface = new Adapter1(this);
    this.aliasName = o.name;
    tree.add(this.path, [this.iface]);
  }

  get name(): string {
    return this.o.name;
  }
  get alias(): string {
    return this.aliasName;
  }

  get discovering(): boolean {
    for (const c of this.clients.values()) if (c.discovering) return true;
    return false;
  }

  /** The Device1 object of a peripheral, while it has one. */
  deviceOf(p: Peripheral): DeviceObject | undefined {
    return this.devices.get(p);
  }

  /** Adapter1.Alias = v; an empty alias goes back to the name, as in BlueZ. */
  setAlias(v: string): void {
    this.aliasName = v === '' ? this.o.name : v;
    this.tree.changed(this.path, this.iface, { Alias: this.aliasName });
  }

  /**
   * A peripheral on the air: it is reported whenever a discovery hears it. Once it is removed
   * (powered off) it is no longer heard; its device object goes after the temporary timeout.
   */
  addPeripheral(p: Peripheral): void {
    const onAdvertising = (on: boolean): void => {
      if (on) this.hear(p);
    };
    const onRange = (): void => this.hear(p);
    const onVanished = (): void => this.forget(this.devices.get(p));
    const off = (): void => {
      p.off('advertising', onAdvertising);
      p.off('range', onRange);
      p.off('vanished', onVanished);
      p.off('removed', off);
      this.peripherals.delete(p);
    };
    p.on('advertising', onAdvertising);
    p.on('range', onRange);
    p.on('vanished', onVanished);
    p.on('removed', off);
    this.peripherals.set(p, off);
    this.hear(p);
  }

  startDiscovery(sender: string): void {
    const c = this.clients.get(sender);
    if (c?.discovering) throw bluezError('org.bluez.Error.InProgress', 'Operation already in progress');
    const was = this.discovering;
    this.clients.set(sender, { discovering: true, filter: c?.filter });
    if (!was) this.discoveringChanged();
    else this.scan();
  }

  stopDiscovery(sender: string): void {
    if (!this.clients.get(sender)?.discovering) throw bluezError('org.bluez.Error.Failed', 'No discovery started');
    this.clients.delete(sender);
    if (!this.discovering) this.discoveringChanged();
  }

  setDiscoveryFilter(sender: string, dict: Record<string, Variant>): void {
    const filter = parseDiscoveryFilter(dict);
    const c = this.clients.get(sender);
    this.clients.set(sender, { discovering: c?.discovering ?? false, filter });
    if (c?.discovering) this.scan();
  }

  /** A client left the bus: its discovery session, filter and notification sessions end. */
  clientLeft(sender: string): void {
    const was = this.clients.get(sender)?.discovering === true;
    this.clients.delete(sender);
    if (was && !this.discovering) this.discoveringChanged();
    for (const d of this.devices.values()) d.clientLeft(sender);
  }

  /**
   * Adapter1.RemoveDevice: disconnects and removes it.
   * @throws DBusError org.bluez.Error.InvalidArguments (BlueZ's answer) for a path that is not one of its devices.
   */
  removeDevice(path: string): void {
    const d = [...this.devices.values()].find((x) => x.path === path);
    if (!d) throw bluezError('org.bluez.Error.InvalidArguments', 'Invalid arguments in method call');
    this.forget(d, 'central');
  }

  /** Ends every connection and discovery, and removes the devices and the adapter itself. */
  close(): void {
    clearInterval(this.scanTimer);
    this.scanTimer = undefined;
    this.clients.clear();
    for (const d of [...this.devices.values()]) this.forget(d);
    for (const off of [...this.peripherals.values()]) off();
    this.tree.remove(this.path);
  }

  private discoveringChanged(): void {
    const on = this.discovering;
    this.tree.changed(this.path, this.iface, { Discovering: on });
    clearInterval(this.scanTimer);
    this.scanTimer = undefined;
    if (on) {
      this.scanTimer = setInterval(() => this.scan(), this.o.scanIntervalMs);
      this.scan();
    }
  }

  private scan(): void {
    for (const p of this.peripherals.keys()) this.hear(p);
  }

  /** One advertisement of `p`, if it advertises and someone discovers: report or refresh its device. */
  private hear(p: Peripheral): void {
    if (!p.advertising || !this.discovering) return;
    const rssi = p.rssi();
    const sighting = { address: p.address, name: p.name, uuids: p.advertisedUuids, rssi, txPower: p.txPower };
    if (![...this.clients.values()].some((c) => c.discovering && filterPasses(c.filter, sighting))) return;
    const known = this.devices.get(p);
    if (known) return known.seen(rssi);
    const d = new DeviceObject(this.path, p, this.tree, this.callers, this.o, rssi, (x) => this.forget(x));
    this.devices.set(p, d);
    this.tree.add(d.path, [d.iface]);
    d.seen(rssi);
  }

  /**
   * Removes a device object: its connection ends first (the peripheral may advertise again during
   * that, which `seen` then ignores), then the object goes. A later advertisement reports it anew.
   */
  private forget(d: DeviceObject | undefined, cause: 'central' | 'radio' = 'radio'): void {
    if (!d || this.devices.get(d.peripheral) !== d) return;
    d.close(cause);
    this.devices.delete(d.peripheral);
    this.tree.remove(d.path);
  }
}
