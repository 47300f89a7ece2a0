/**
 * A simulated BlueZ on a D-Bus bus: the `org.bluez` name with the objects node-ble (and any
 * BlueZ client) expects, and the simulated air the wearables advertise on.
 *
 *   /                       org.freedesktop.DBus.ObjectManager
 *   /org/bluez              org.bluez.AgentManager1, org.bluez.ProfileManager1
 *   /org/bluez/hci0         org.bluez.Adapter1                          (adapter.ts)
 *   /org/bluez/hci0/dev_…   org.bluez.Device1, once discovered          (device.ts)
 *     …/service000a/char…   GATT objects while connected                (gatt.ts)
 *
 * Start one per bus (the name is exclusive) and add peripherals to it; BleLink does so for a
 * simulated wearable. Real BlueZ must not own `org.bluez` on the same bus: use a private bus
 * (bus-daemon.ts).
 */
import { sessionBus, type MessageBus } from 'dbus-next';
import { CodedError, type Remedies } from '../../firmware-proto/coded-error.js';
import { Adapter, ADAPTER_PATH } from './adapter.js';
import { Callers, Interface } from './dbus.js';
import { ObjectTree } from './object-tree.js';
import { Peripheral, type PeripheralOptions } from './radio.js';

export const BLUEZ_BUS_NAME = 'org.bluez';
/** BlueZ's default TemporaryTimeout (main.conf): an unpaired device not heard for this long is removed. */
export const DEFAULT_TEMPORARY_TIMEOUT_MS = 30_000;

export interface SimulatedBluezOptions {
  /** The bus to serve on, e.g. a private bus's address (bus-daemon.ts). */
  busAddress: string;
  /** Remove a device neither connected nor heard for this long; default 30 s as BlueZ. Tests use ~1 s. */
  temporaryTimeoutMs?: number;
  /** A connection attempt to a peripheral that cannot be reached fails after this long; default 2 s (BlueZ waits longer). */
  connectTimeoutMs?: number;
  /** How often a discovery refreshes RSSI and sightings; default 1 s. */
  scanIntervalMs?: number;
  /** The adapter's Name; default "vp-sim". */
  adapterName?: string;
}

/** RequestName flag DO_NOT_QUEUE (D-Bus specification, "org.freedesktop.DBus.RequestName"). */
const DO_NOT_QUEUE = 0x4;
const PRIMARY_OWNER = 1;

export const SIMULATED_BLUEZ_ERRORS = {
  BLUEZ_NAME_TAKEN: 'org.bluez is already owned on the bus (a real BlueZ, or another simulator)',
  BLUEZ_BUS_UNREACHABLE: 'the simulated BlueZ cannot reach its D-Bus (closed, or no bus at the address)',
} as const;
export type SimulatedBluezErrorCode = keyof typeof SIMULATED_BLUEZ_ERRORS;

/** What to do about each code. */
export const SIMULATED_BLUEZ_ERROR_REMEDIES: Remedies<SimulatedBluezErrorCode> = {
  BLUEZ_NAME_TAKEN:
    "Run the simulator on its own bus (`DBUS_SYSTEM_BUS_ADDRESS`, device-sim/README.md), not on the host's system bus with a real BlueZ; stop the other simulator.",
  BLUEZ_BUS_UNREACHABLE: 'Start the private bus first (device-sim/bluez/bus-daemon.ts), and pass its address.',
};

export class SimulatedBluezError extends CodedError<SimulatedBluezErrorCode> {
  constructor(code: SimulatedBluezErrorCode, message: string) {
    super(SIMULATED_BLUEZ_ERRORS, code, {}, { message: `${code}: ${message}` });
  }
}

/** Agents are accepted and never called: the simulator does not pair (device.ts, Pair). */
class AgentManager1 extends Interface {
  constructor() {
    super('org.bluez.AgentManager1');
  }
  RegisterAgent(): void {}
  UnregisterAgent(): void {}
  RequestDefaultAgent(): void {}
}
AgentManager1.configureMembers({
  methods: { RegisterAgent: { inSignature: 'os' }, UnregisterAgent: { inSignature: 'o' }, RequestDefaultAgent: { inSignature: 'o' } },
});

/** Profiles are accepted and never connected: a VitalProof wearable has no BR/EDR profile. */
class ProfileManager1 extends Interface {
  constructor() {
    super('org.bluez.ProfileManager1');
  }
  RegisterProfile(): void {}
  UnregisterProfile(): void {}
}
ProfileManager1.configureMembers({
  methods: { RegisterProfile: { inSignature: 'osa{sv}' }, UnregisterProfile: { inSignature: 'o' } },
});

export class SimulatedBluez {
  private readonly peripherals = new Set<Peripheral>();
  private closing: Promise<void> | undefined;

  private constructor(
    readonly busAddress: string,
    private readonly bus: MessageBus,
    private readonly tree: ObjectTree,
    private readonly adapter: Adapter,
    private readonly callers: Callers,
  ) {}

  /** Connects to the bus, exports the tree and then takes the name `org.bluez` (see startSimulatedBluez). */
  static async start(o: SimulatedBluezOptions): Promise<SimulatedBluez> {
    const bus = sessionBus({ busAddress: o.busAddress });
    await connected(bus, o.busAddress);
    const callers = new Callers(bus);
    const tree = new ObjectTree(bus);
    tree.add('/org/bluez', [new AgentManager1(), new ProfileManager1()]);
    const adapter = new Adapter(tree, callers, {
      name: o.adapterName ?? 'vp-sim',
      temporaryTimeoutMs: o.temporaryTimeoutMs ?? DEFAULT_TEMPORARY_TIMEOUT_MS,
      connectTimeoutMs: o.connectTimeoutMs ?? 2_000,
      scanIntervalMs: o.scanIntervalMs ?? 1_000,
    });
    const sim = new SimulatedBluez(o.busAddress, bus, tree, adapter, callers);
    // BlueZ keeps discovery and notification sessions per client and ends them when the client leaves.
    const daemon = await bus.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus');
    daemon.getInterface('org.freedesktop.DBus').on('NameOwnerChanged', (name: string, _old: string, owner: string) => {
      if (name.startsWith(':') && owner === '') adapter.clientLeft(name);
    });
    const reply = await bus.requestName(BLUEZ_BUS_NAME, DO_NOT_QUEUE);
    if (reply !== PRIMARY_OWNER) {
      await sim.close();
      throw new SimulatedBluezError('BLUEZ_NAME_TAKEN', `${BLUEZ_BUS_NAME} is already owned on ${o.busAddress} (a real BlueZ, or another simulator)`);
    }
    return sim;
  }

  get adapterPath(): string {
    return ADAPTER_PATH;
  }

  /** Puts a peripheral on the air (not advertising until its `startAdvertising`). */
  addPeripheral(o: PeripheralOptions): Peripheral {
    if (this.closing) throw new SimulatedBluezError('BLUEZ_BUS_UNREACHABLE', 'the simulated BlueZ is closed');
    if ([...this.peripherals].some((p) => p.deviceId === o.deviceId)) throw new RangeError(`a peripheral for device ${o.deviceId} is already on the air`);
    const p = new Peripheral(o);
    this.peripherals.add(p);
    p.once('removed', () => this.peripherals.delete(p));
    this.adapter.addPeripheral(p);
    return p;
  }

  /** The Device1 object path of a peripheral while the adapter has reported it, else undefined. */
  devicePath(p: Peripheral): string | undefined {
    return this.adapter.deviceOf(p)?.path;
  }

  /** Ends every connection, removes every object, releases the name and leaves the bus. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      for (const p of [...this.peripherals]) p.remove();
      this.adapter.close();
      this.tree.close();
      this.callers.close();
      await this.bus.releaseName(BLUEZ_BUS_NAME).catch(() => undefined); // the daemon may be gone already
      this.bus.disconnect();
    })());
  }
}

function connected(bus: MessageBus, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: unknown): void => {
      bus.off('connect', onConnect);
      reject(new SimulatedBluezError('BLUEZ_BUS_UNREACHABLE', `cannot connect to ${address}: ${e instanceof Error ? e.message : String(e)}`));
    };
    const onConnect = (): void => {
      bus.off('error', onError);
      // Later errors (the daemon stopping) end the simulation; close() still works.
      bus.on('error', () => undefined);
      resolve();
    };
    bus.once('connect', onConnect);
    bus.once('error', onError);
  });
}

/**
 * Starts a simulated BlueZ on `busAddress`, for a whole fleet or for tests that keep it alive
 * across runs.
 * @throws SimulatedBluezError BLUEZ_BUS_UNREACHABLE, or BLUEZ_NAME_TAKEN when `org.bluez` is owned already.
 * @example
 *   const bus = await startPrivateBus({ dir });
 *   const bluez = await startSimulatedBluez({ busAddress: bus.address, temporaryTimeoutMs: 1000 });
 *   const link = new BleLink({ bluez, deviceId, publicKey, outbox });  link.start();
 *   …
 *   await bluez.close(); await bus.stop();
 */
export function startSimulatedBluez(o: SimulatedBluezOptions): Promise<SimulatedBluez> {
  return SimulatedBluez.start(o);
}
