/**
 * The gateway's one seam to BlueZ: node-ble over the system D-Bus (`DBUS_SYSTEM_BUS_ADDRESS`
 * picks the bus, as for every D-Bus client). Everything the central needs from BlueZ goes
 * through here, so that node-ble's gaps are dealt with in one place:
 *
 * - node-ble's `startDiscovery` sets a filter with only `Transport: 'le'`; a discovery filter by
 *   service UUID (org.bluez.Adapter1.SetDiscoveryFilter `UUIDs`) is set here through node-ble's
 *   own bus helper for the adapter.
 * - node-ble's `Device.connect()` adds a PropertiesChanged listener on every call and
 *   `disconnect()` removes all of them; a central that reconnects the same device for days
 *   must not pile listeners up, so connection state is followed here with one listener per
 *   device object, and Connect/Disconnect are called through the same helper.
 * - node-ble has no getter for Device1 `UUIDs` or GattCharacteristic1 `MTU`; `props()` reads
 *   every Device1 property in one GetAll.
 * GATT resolution, characteristics, reads, writes and notifications are node-ble's own.
 */
import NodeBle from 'node-ble';
import { Variant, type MessageBus } from 'dbus-next';

/** The part of node-ble's internal BusHelper (src/BusHelper.js) used here. */
interface BusHelper {
  props(): Promise<Record<string, unknown>>;
  callMethod(name: string, ...args: unknown[]): Promise<unknown>;
  on(event: 'PropertiesChanged', cb: (changed: Record<string, { value: unknown }>) => void): void;
  removeListeners(): void;
}

function helperOf(o: object): BusHelper {
  return (o as { helper: BusHelper }).helper;
}

/** What the adapter reports about a device (org.bluez.Device1), as far as the central uses it. */
export interface BleAdvert {
  address: string;
  name?: string;
  rssi?: number;
  uuids: string[];
  /** ServiceData by lowercase service UUID. */
  serviceData: Map<string, Uint8Array>;
  connected: boolean;
}

export interface GattProfile {
  frame: NodeBle.GattCharacteristic;
  control: NodeBle.GattCharacteristic;
  info: NodeBle.GattCharacteristic;
}

/** A D-Bus error's name (e.g. org.bluez.Error.Failed) with its message, for logs and counters. */
export function dbusErrorText(e: unknown): string {
  const err = e as { type?: string; text?: string; message?: string };
  return err.type ? `${err.type}: ${err.text ?? ''}`.trim() : (err.message ?? String(e));
}

/** One device object of the adapter, followed for RSSI and connection state. */
export class BluezDevice {
  private readonly helper: BusHelper;
  private rssiListener: ((rssi: number) => void) | undefined;
  private connectedListener: ((connected: boolean) => void) | undefined;

  constructor(
    readonly address: string,
    private readonly device: NodeBle.Device,
  ) {
    this.helper = helperOf(device);
    this.helper.on('PropertiesChanged', (changed) => {
      if ('RSSI' in changed) this.rssiListener?.(Number(changed.RSSI!.value));
      if ('Connected' in changed) this.connectedListener?.(changed.Connected!.value === true);
    });
  }

  onRssi(cb: (rssi: number) => void): void {
    this.rssiListener = cb;
  }
  onConnected(cb: (connected: boolean) => void): void {
    this.connectedListener = cb;
  }

  /** Every Device1 property in one call; this also starts following its PropertiesChanged. */
  async advert(): Promise<BleAdvert> {
    const p = await this.helper.props();
    const serviceData = new Map<string, Uint8Array>();
    for (const [uuid, v] of Object.entries((p.ServiceData as Record<string, { value: unknown }> | undefined) ?? {})) {
      const bytes = v instanceof Variant ? v.value : v;
      if (bytes instanceof Uint8Array || Array.isArray(bytes)) serviceData.set(uuid.toLowerCase(), Uint8Array.from(bytes as ArrayLike<number>));
    }
    return {
      address: this.address,
      ...(typeof p.Name === 'string' ? { name: p.Name } : {}),
      ...(typeof p.RSSI === 'number' ? { rssi: p.RSSI } : {}),
      uuids: ((p.UUIDs as string[] | undefined) ?? []).map((u) => u.toLowerCase()),
      serviceData,
      connected: p.Connected === true,
    };
  }

  async connect(): Promise<void> {
    await this.helper.callMethod('Connect');
  }

  async disconnect(): Promise<void> {
    await this.helper.callMethod('Disconnect');
  }

  /** The VitalProof service's three characteristics, after ServicesResolved; undefined names what is missing. */
  async profile(uuids: { service: string; frame: string; control: string; info: string }): Promise<GattProfile | { missing: string }> {
    const gatt = await this.device.gatt();
    if (!(await gatt.services()).includes(uuids.service)) return { missing: `service ${uuids.service}` };
    const service = await gatt.getPrimaryService(uuids.service);
    const have = await service.characteristics();
    for (const [name, uuid] of [
      ['frame', uuids.frame],
      ['control', uuids.control],
      ['info', uuids.info],
    ] as const) {
      if (!have.includes(uuid)) return { missing: `${name} characteristic ${uuid}` };
    }
    return {
      frame: await service.getCharacteristic(uuids.frame),
      control: await service.getCharacteristic(uuids.control),
      info: await service.getCharacteristic(uuids.info),
    };
  }

  /** Stops following this device object (it left the adapter, or the central stops). */
  release(): void {
    this.rssiListener = undefined;
    this.connectedListener = undefined;
    this.helper.removeListeners();
  }
}

/** Stops a characteristic's notifications listener without a D-Bus call (the link may be gone). */
export function dropNotificationListeners(c: NodeBle.GattCharacteristic): void {
  c.removeAllListeners('valuechanged');
  helperOf(c).removeListeners();
}

/** The adapter, discovering devices that advertise `serviceUuid`. */
export class BluezAdapter {
  private constructor(
    readonly name: string,
    private readonly adapter: NodeBle.Adapter,
    private readonly destroy: () => void,
    private readonly bluezOwner: () => Promise<string>,
    private readonly owner: string,
  ) {}

  /**
   * Connects to the system bus and the adapter (`name`, or the first one BlueZ lists).
   * @throws Error when the bus or org.bluez is unreachable, or there is no such adapter.
   */
  static async open(name: string): Promise<BluezAdapter> {
    const { bluetooth, destroy } = NodeBle.createBluetooth();
    try {
      // Who serves org.bluez, read first: a restart after this shows in `sameBluez`.
      const bus = (bluetooth as unknown as { dbus: MessageBus }).dbus;
      const daemon = (await bus.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus')).getInterface('org.freedesktop.DBus') as unknown as {
        GetNameOwner(name: string): Promise<string>;
      };
      const bluezOwner = (): Promise<string> => daemon.GetNameOwner('org.bluez');
      const owner = await bluezOwner();
      const names = await bluetooth.adapters();
      const chosen = name || names[0];
      if (!chosen || !names.includes(chosen))
        throw new Error(name ? `no Bluetooth adapter "${name}" (BlueZ lists: ${names.join(', ') || 'none'})` : 'BlueZ lists no Bluetooth adapter');
      const adapter = await bluetooth.getAdapter(chosen);
      if (!(await adapter.isPowered())) throw new Error(`Bluetooth adapter ${chosen} is powered off (bluetoothctl power on)`);
      return new BluezAdapter(chosen, adapter, destroy, bluezOwner, owner);
    } catch (e) {
      destroy();
      throw e;
    }
  }

  /**
   * False once org.bluez has another owner (or none): bluetoothd restarted, and the new one has
   * none of this client's state — its discovery session above all, so no device would ever be
   * reported again. Calls through the well-known name reach the new bluetoothd without an error,
   * so nothing else shows it.
   */
  async sameBluez(): Promise<boolean> {
    try {
      return (await this.bluezOwner()) === this.owner;
    } catch {
      return false; // NameHasNoOwner
    }
  }

  /** Starts this client's discovery session with a filter on the service UUID (LE only). */
  async startDiscovery(serviceUuid: string): Promise<void> {
    const h = helperOf(this.adapter);
    await h.callMethod('SetDiscoveryFilter', { UUIDs: new Variant('as', [serviceUuid]), Transport: new Variant('s', 'le') });
    await h.callMethod('StartDiscovery');
  }

  async stopDiscovery(): Promise<void> {
    await helperOf(this.adapter).callMethod('StopDiscovery');
  }

  /** Addresses of the device objects the adapter holds now. */
  async addresses(): Promise<string[]> {
    return this.adapter.devices();
  }

  /** A device object; undefined when the adapter no longer has it. */
  async device(address: string): Promise<BluezDevice | undefined> {
    try {
      return new BluezDevice(address, await this.adapter.getDevice(address));
    } catch (e) {
      if ((e as Error).message === 'Device not found') return undefined;
      throw e;
    }
  }

  close(): void {
    this.destroy();
  }
}
