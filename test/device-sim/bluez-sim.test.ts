/**
 * The simulated BlueZ against node-ble itself, the client the gateway uses: a private
 * dbus-daemon, the simulator on it as `org.bluez`, and node-ble pointed there by
 * DBUS_SYSTEM_BUS_ADDRESS alone. A plain dbus-next client watches what node-ble does not show
 * (ObjectManager signals, PropertiesChanged, error names). Every wait is for an event.
 *
 * Covered: the adapter and BlueZ's root objects; discovery per client with UUID filters, and
 * only of advertising peripherals; Device1's advertisement (address, name, UUIDs, service data,
 * moving RSSI); Connect → services resolved → the three characteristics with their flags; the
 * info read; notifications that reassemble into exactly the enqueued frames, only after the
 * first ACK; ACKs removing frames (onAck) and resends with R = 1; refused writes and calls with
 * BlueZ's error names; GATT objects removed on disconnect and GetManagedObjects in step with the
 * signals; radio drops, out of range, vanish, RemoveDevice, the temporary timeout, a client
 * leaving the bus; faulty copies, corrupted fragment streams and oversized frames on the wire;
 * a rogue wearable; and a whole BLE fleet with every BLE fault kind against a reference central
 * whose counts must equal the run's report.
 */
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { DBusError, sessionBus, Variant, type ClientInterface, type MessageBus } from 'dbus-next';
import NodeBle from 'node-ble';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Reassembler, type ReassemblyVerdict } from '../../firmware-proto/fragment.js';
import { decodeInfo, encodeAck, GATT_PROFILE, infoMatchesKey, VITALPROOF_SERVICE_UUID } from '../../firmware-proto/gatt.js';
import { decodeFrame, frameEndMs } from '../../firmware-proto/frame.js';
import { isError } from '../../firmware-proto/coded-error.js';
import { ProtocolError, type FragmentReason, type FrameReason } from '../../firmware-proto/reasons.js';
import { concat, deviceIdFromKey, FRAME_TAG } from '../../firmware-proto/signing.js';
import { ADAPTER_PATH } from '../../device-sim/bluez/adapter.js';
import { devicePathFor } from '../../device-sim/bluez/device.js';
import { staticRandomAddress } from '../../device-sim/bluez/radio.js';
import { BleLink, type BleLinkOptions } from '../../device-sim/ble-link.js';
import { addRogueWearable } from '../../device-sim/ble-rogue.js';
import { fleetDevices, rogueDevice } from '../../device-sim/fleet.js';
import { runFleet } from '../../device-sim/run.js';
import { oversize } from '../../device-sim/faults.js';
import { Rng } from '../../device-sim/rng.js';
import { useBluezSim, usePrivateBus } from '../support/dbus.js';
import { heartRate, testDevice, type TestDevice } from '../support/devices.js';

const TEMPORARY_TIMEOUT_MS = 1000;
const CONNECT_TIMEOUT_MS = 300;
const sim = useBluezSim({ temporaryTimeoutMs: TEMPORARY_TIMEOUT_MS, connectTimeoutMs: CONNECT_TIMEOUT_MS, scanIntervalMs: 100 });

type Bluetooth = ReturnType<typeof NodeBle.createBluetooth>;
type Adapter = Awaited<ReturnType<Bluetooth['bluetooth']['defaultAdapter']>>;
type Device = Awaited<ReturnType<Adapter['getDevice']>>;
type Characteristic = Awaited<ReturnType<Awaited<ReturnType<Awaited<ReturnType<Device['gatt']>>['getPrimaryService']>>['getCharacteristic']>>;

let ble: Bluetooth;
let adapter: Adapter;
/** A second client, for what node-ble does not expose. */
let watcher: MessageBus;
let objectManager: ClientInterface;
/** Every InterfacesAdded / InterfacesRemoved since the start, as 'added' / 'removed' events. */
const treeEvents = new EventEmitter();
/** The tree as the signals describe it: path → interface names. */
const signalledTree = new Map<string, Set<string>>();

beforeAll(async () => {
  process.env.DBUS_SYSTEM_BUS_ADDRESS = sim.address;
  ble = NodeBle.createBluetooth();
  adapter = await ble.bluetooth.defaultAdapter();
  watcher = sessionBus({ busAddress: sim.address });
  objectManager = (await watcher.getProxyObject('org.bluez', '/')).getInterface('org.freedesktop.DBus.ObjectManager');
  objectManager.on('InterfacesAdded', (path: string, ifaces: Record<string, unknown>) => {
    const s = signalledTree.get(path) ?? new Set<string>();
    for (const i of Object.keys(ifaces)) s.add(i);
    signalledTree.set(path, s);
    treeEvents.emit('added', path);
  });
  objectManager.on('InterfacesRemoved', (path: string, ifaces: string[]) => {
    const s = signalledTree.get(path);
    for (const i of ifaces) s?.delete(i);
    if (s?.size === 0) signalledTree.delete(path);
    treeEvents.emit('removed', path);
  });
  // The snapshot after the match rules are in place (they were sent first): signals add to it.
  for (const [path, ifaces] of Object.entries(await managedObjects())) signalledTree.set(path, new Set(Object.keys(ifaces)));
});

afterAll(() => {
  ble?.destroy();
  watcher?.disconnect();
});

const links: BleLink[] = [];
afterEach(async () => {
  if (await adapter.isDiscovering()) await adapter.stopDiscovery().catch(() => undefined);
  await Promise.all(links.splice(0).map((l) => l.stop()));
});

// ---------------------------------------------------------------- helpers

async function managedObjects(): Promise<Record<string, Record<string, Record<string, Variant>>>> {
  return (await objectManager.GetManagedObjects!()) as Record<string, Record<string, Record<string, Variant>>>;
}

async function props(path: string, iface: string): Promise<Record<string, unknown>> {
  const p = (await watcher.getProxyObject('org.bluez', path)).getInterface('org.freedesktop.DBus.Properties');
  const all = (await p.GetAll!(iface)) as Record<string, Variant>;
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.value]));
}

/** PropertiesChanged of one interface on one path, until `until` returns true for a change. */
async function propertyChange(
  path: string,
  iface: string,
  until: (changed: Record<string, unknown>) => boolean,
): Promise<{ ready: Promise<void>; changed: Promise<Record<string, unknown>> }> {
  const p = (await watcher.getProxyObject('org.bluez', path)).getInterface('org.freedesktop.DBus.Properties');
  let resolve!: (c: Record<string, unknown>) => void;
  const changed = new Promise<Record<string, unknown>>((res) => (resolve = res));
  const listener = (i: string, c: Record<string, Variant>): void => {
    if (i !== iface) return;
    const values = Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v.value]));
    if (!until(values)) return;
    p.off('PropertiesChanged', listener);
    resolve(values);
  };
  p.on('PropertiesChanged', listener);
  // A round trip after AddMatch: the daemon applies the rule before answering.
  await p.GetAll!(iface);
  return { ready: Promise.resolve(), changed };
}

function treeEvent(kind: 'added' | 'removed', path: string): Promise<void> {
  return new Promise((resolve) => {
    const l = (p: string): void => {
      if (p !== path) return;
      treeEvents.off(kind, l);
      resolve();
    };
    treeEvents.on(kind, l);
  });
}

/** The D-Bus error a call rejects with. */
async function dbusError(p: Promise<unknown>): Promise<{ type: string; text: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof DBusError) return { type: e.type, text: e.text };
    throw e;
  }
  throw new Error('expected a D-Bus error');
}

interface Wearable {
  dev: TestDevice;
  link: BleLink;
  path: string;
  /** Records n heart-rate frames of `samples` samples each and enqueues them. */
  record(n: number, samples?: number): { seq: bigint; raw: Uint8Array }[];
}

let clockMs = 1_700_000_000_000;
function wearable(name: string, o: Partial<BleLinkOptions> = {}): Wearable {
  const dev = testDevice(name);
  const link = new BleLink({ bluez: sim.bluez, deviceId: dev.id, publicKey: dev.keys.publicKey, outbox: dev.core.outbox, ...o });
  links.push(link);
  return {
    dev,
    link,
    path: devicePathFor(ADAPTER_PATH, staticRandomAddress(dev.id)),
    record(n, samples = 5) {
      return Array.from({ length: n }, () => {
        const f = dev.core.record(
          heartRate(
            clockMs,
            Array.from({ length: samples }, (_, i) => 60 + (i % 30)),
          ),
        );
        clockMs += samples * 1000;
        link.enqueueFrame(f.seq, f.raw);
        return f;
      });
    },
  };
}

/** node-ble's view of a connected wearable: its three characteristics. */
async function connectGatt(w: Wearable): Promise<{ device: Device; frame: Characteristic; control: Characteristic; info: Characteristic }> {
  const device = await adapter.getDevice(w.link.peripheral.address);
  await device.connect();
  const service = await (await device.gatt()).getPrimaryService(VITALPROOF_SERVICE_UUID);
  return {
    device,
    frame: await service.getCharacteristic(GATT_PROFILE.frame.uuid),
    control: await service.getCharacteristic(GATT_PROFILE.control.uuid),
    info: await service.getCharacteristic(GATT_PROFILE.info.uuid),
  };
}

/** Reassembles a characteristic's notifications; `frames(n)` resolves once n frames have come. */
function reassemble(frame: Characteristic): {
  notifications: Buffer[];
  verdicts: ReassemblyVerdict[];
  frames(n: number): Promise<{ frame: Uint8Array; retransmit: boolean }[]>;
} {
  const r = new Reassembler();
  const notifications: Buffer[] = [];
  const verdicts: ReassemblyVerdict[] = [];
  const done: { frame: Uint8Array; retransmit: boolean }[] = [];
  const progress = new EventEmitter();
  frame.on('valuechanged', (v: Buffer) => {
    notifications.push(v);
    const verdict = r.push(v);
    verdicts.push(verdict);
    if (verdict.status === 'frame') done.push({ frame: verdict.frame, retransmit: verdict.retransmit });
    progress.emit('verdict');
  });
  return {
    notifications,
    verdicts,
    frames: async (n) => {
      while (done.length < n) await once(progress, 'verdict');
      return done.slice(0, n);
    },
  };
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

async function withDiscovery<T>(f: () => Promise<T>): Promise<T> {
  await adapter.startDiscovery();
  try {
    return await f();
  } finally {
    await adapter.stopDiscovery();
  }
}

// ---------------------------------------------------------------- tests

describe('the simulated BlueZ, as node-ble sees it', () => {
  it('has the adapter hci0, powered, with the objects BlueZ has', async () => {
    expect(await ble.bluetooth.adapters()).toEqual(['hci0']);
    expect(await adapter.isPowered()).toBe(true);
    expect(await adapter.isDiscovering()).toBe(false);
    expect(await adapter.getAddressType()).toBe('public');
    const tree = await managedObjects();
    expect(Object.keys(tree['/org/bluez']!)).toEqual(expect.arrayContaining(['org.bluez.AgentManager1', 'org.bluez.ProfileManager1']));
    expect(tree[ADAPTER_PATH]!['org.bluez.Adapter1']!.Powered!.value).toBe(true);
  });

  it('reports advertising peripherals only, and applies each client its own discovery filter', async () => {
    const silent = wearable('disc-silent');
    const other = wearable('disc-other', { advertisedUuids: ['180d'] });
    const vp = wearable('disc-vp');
    other.link.start();
    vp.link.start();

    // Another client scans for the VitalProof service only.
    const a = (await watcher.getProxyObject('org.bluez', ADAPTER_PATH)).getInterface('org.bluez.Adapter1');
    await a.SetDiscoveryFilter!({ UUIDs: new Variant('as', [VITALPROOF_SERVICE_UUID]), Transport: new Variant('s', 'le') });
    await a.StartDiscovery!();
    let devices = await adapter.devices();
    expect(devices).toContain(vp.link.peripheral.address);
    expect(devices).not.toContain(other.link.peripheral.address);
    expect(devices).not.toContain(silent.link.peripheral.address);
    expect(await dbusError(a.StartDiscovery!())).toMatchObject({ type: 'org.bluez.Error.InProgress' });
    expect(await dbusError(a.SetDiscoveryFilter!({ Colour: new Variant('s', 'red') }))).toMatchObject({ type: 'org.bluez.Error.InvalidArguments' });

    // It starts advertising: it is reported at once.
    const added = treeEvent('added', silent.path);
    silent.link.start();
    await added;
    expect(await adapter.devices()).toContain(silent.link.peripheral.address);

    await a.StopDiscovery!();
    expect(await adapter.isDiscovering()).toBe(false);
    expect(await dbusError(a.StopDiscovery!())).toEqual({ type: 'org.bluez.Error.Failed', text: 'No discovery started' });

    // node-ble sets Transport only: every LE peripheral is reported.
    devices = await withDiscovery(() => adapter.devices());
    expect(devices).toContain(other.link.peripheral.address);
    expect(await a.GetDiscoveryFilters!()).toEqual(['UUIDs', 'RSSI', 'Pathloss', 'Transport', 'DuplicateData', 'Discoverable', 'Pattern']);
  });

  it('shows the advertisement in Device1: address, name, service UUID, service data with the device id, RSSI that moves', async () => {
    const w = wearable('adv');
    w.link.start();
    await adapter.startDiscovery();
    const device = await adapter.getDevice(w.link.peripheral.address);
    expect(await device.getAddress()).toBe(staticRandomAddress(w.dev.id));
    expect(parseInt((await device.getAddress()).slice(0, 2), 16) >> 6).toBe(0b11); // random static
    expect(await device.getAddressType()).toBe('random');
    expect(await device.getName()).toBe(`VP-${w.dev.id.slice(0, 4)}`);
    expect(await device.isConnected()).toBe(false);
    expect(await device.isPaired()).toBe(false);
    const data = await device.getServiceData();
    expect(Object.keys(data)).toEqual([VITALPROOF_SERVICE_UUID]);
    expect(hex(data[VITALPROOF_SERVICE_UUID] as Buffer)).toBe(`01${w.dev.id}`);
    const p = await props(w.path, 'org.bluez.Device1');
    expect(p.UUIDs).toEqual([VITALPROOF_SERVICE_UUID]);
    expect(p.Adapter).toBe(ADAPTER_PATH);
    expect(p.ServicesResolved).toBe(false);
    expect(hex(p.AdvertisingFlags as Buffer)).toBe('06');
    const rssi = Number(await device.getRSSI());
    expect(rssi).toBeGreaterThanOrEqual(-77);
    expect(rssi).toBeLessThanOrEqual(-43);
    const moved = await propertyChange(w.path, 'org.bluez.Device1', (c) => 'RSSI' in c);
    expect(Math.abs(Number((await moved.changed).RSSI) - rssi)).toBeLessThanOrEqual(4);
  });

  it('connects, resolves services, reads info, and streams exactly the enqueued frames after the first ACK', async () => {
    const w = wearable('stream', { mtu: 23 });
    const acked: bigint[] = [];
    w.link.onAck((seq) => acked.push(seq));
    const frames = w.record(3, 30); // 253 bytes: 13 notifications each at ATT_MTU 23
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    // Connect returned after all of it was signalled.
    const dp = await props(w.path, 'org.bluez.Device1');
    expect(dp.Connected).toBe(true);
    expect(dp.ServicesResolved).toBe(true);
    expect(w.link.connected).toBe(true);
    expect(await g.frame.getFlags()).toEqual(['notify']);
    expect(await g.control.getFlags()).toEqual(['write']);
    expect(await g.info.getFlags()).toEqual(['read']);
    const frameProps = await props(`${w.path}/service000a/char000b`, 'org.bluez.GattCharacteristic1');
    expect(frameProps).toMatchObject({ UUID: GATT_PROFILE.frame.uuid, MTU: 23, Notifying: false, Service: `${w.path}/service000a` });

    const info = decodeInfo(await g.info.readValue());
    expect(info.deviceId).toBe(w.dev.id);
    expect(infoMatchesKey(info, w.dev.keys.publicKey)).toBe(true);

    const rx = reassemble(g.frame);
    await g.frame.startNotifications();
    expect(w.link.peripheral.notifying).toBe(true);
    expect(await g.frame.isNotifying()).toBe(true);
    expect(rx.notifications).toEqual([]); // nothing before the first ACK (§10.7 step 3)
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const more = w.record(2, 30); // recorded while connected: they follow
    const got = await rx.frames(5);
    expect(got.map((f) => hex(f.frame))).toEqual([...frames, ...more].map((f) => hex(f.raw)));
    expect(got.every((f) => !f.retransmit)).toBe(true);
    expect(rx.notifications.every((n) => n.length <= 20)).toBe(true);
    expect(rx.verdicts.every((v) => v.rejections.length === 0)).toBe(true);

    // ACK 3 removes seqs 1 … 3 from the outbox: onAck fires for each, the backlog shrinks.
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(frames[2]!.seq)));
    expect(acked).toEqual(frames.map((f) => f.seq));
    expect(w.link.backlog).toBe(2);
    expect(w.link.counters).toMatchObject({ connects: 1, sent: 5, acked: 3, retransmitted: 0 });

    // The unacknowledged frames come again on the next connection, with R = 1.
    await g.device.disconnect();
    const again = await connectGatt(w);
    const rx2 = reassemble(again.frame);
    await again.frame.startNotifications();
    await again.control.writeValueWithResponse(Buffer.from(encodeAck(frames[2]!.seq)));
    const resent = await rx2.frames(2);
    expect(resent.map((f) => hex(f.frame))).toEqual(more.map((f) => hex(f.raw)));
    expect(resent.every((f) => f.retransmit)).toBe(true);
    await again.device.disconnect();
  });

  it('refuses what a device refuses, with the D-Bus errors BlueZ gives', async () => {
    const w = wearable('refuse');
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    const opcode = await dbusError(g.control.writeValueWithResponse(Buffer.from([0x02, 0, 0, 0, 0, 0, 0, 0, 0])));
    expect(opcode).toEqual({ type: 'org.bluez.Error.Failed', text: 'Operation failed with ATT error: 0x80' });
    expect(await dbusError(g.control.writeValueWithResponse(Buffer.from([0x01, 0x00])))).toMatchObject({ type: 'org.bluez.Error.InvalidValueLength' });
    expect(await dbusError(g.frame.readValue())).toMatchObject({ type: 'org.bluez.Error.NotPermitted' });
    expect(await dbusError(g.info.writeValueWithResponse(Buffer.from([1])))).toMatchObject({ type: 'org.bluez.Error.NotPermitted' });
    expect(await dbusError(g.info.startNotifications())).toMatchObject({ type: 'org.bluez.Error.NotSupported' });
    await g.frame.startNotifications();
    expect(await dbusError(g.frame.startNotifications())).toMatchObject({ type: 'org.bluez.Error.InProgress' });
    const raw = (await watcher.getProxyObject('org.bluez', `${w.path}/service000a/char000b`)).getInterface('org.bluez.GattCharacteristic1');
    expect(await dbusError(raw.AcquireNotify!({}))).toMatchObject({ type: 'org.bluez.Error.NotSupported' });
    expect(await dbusError(raw.StopNotify!())).toEqual({ type: 'org.bluez.Error.Failed', text: 'No notify session started' });
    expect(await dbusError(g.device.pair())).toMatchObject({ type: 'org.bluez.Error.NotSupported' });
    // A Write Command on a characteristic without write-without-response is dropped, as by a real server.
    await g.control.writeValueWithoutResponse(Buffer.from(encodeAck(0n)));
    expect(w.link.counters.sent).toBe(0);
    expect(w.link.counters.acked).toBe(0);
    await g.device.disconnect();
    expect(await dbusError(g.device.disconnect())).toMatchObject({ type: 'org.bluez.Error.NotConnected' });
  });

  it('removes the GATT objects on disconnect, and keeps GetManagedObjects in step with the signals', async () => {
    const w = wearable('tree');
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    const gattPaths = [`${w.path}/service000a`, `${w.path}/service000a/char000b`, `${w.path}/service000a/char000e`, `${w.path}/service000a/char0010`];
    expect(Object.keys(await managedObjects())).toEqual(expect.arrayContaining(gattPaths));
    const removed = gattPaths.map((p) => treeEvent('removed', p));
    const disconnected = await propertyChange(w.path, 'org.bluez.Device1', (c) => c.Connected === false);
    await g.device.disconnect();
    await Promise.all(removed);
    await disconnected.changed;
    expect(w.link.connected).toBe(false);
    const tree = await managedObjects();
    for (const p of gattPaths) expect(tree[p]).toBeUndefined();
    expect(tree[w.path]!['org.bluez.Device1']!.ServicesResolved!.value).toBe(false);
    // The signals since the start describe the same tree.
    expect(new Map(Object.entries(tree).map(([p, i]) => [p, new Set(Object.keys(i))]))).toEqual(signalledTree);
  });

  it('a radio drop emits Connected = false, and the link counts the reconnection', async () => {
    const w = wearable('drop');
    w.record(2);
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    const rx = reassemble(g.frame);
    await g.frame.startNotifications();
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const [f1, f2] = await rx.frames(2);
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(decodeFrame(f2!.frame).seq)));
    expect(f1).toBeDefined();
    const dropped = once(g.device, 'disconnect');
    const reconnected = w.link.abruptDisconnect();
    await dropped;
    expect(await g.device.isConnected()).toBe(false);
    expect(w.link.connected).toBe(false);
    await g.device.connect();
    expect(await reconnected).toBe(true);
    expect(w.link.counters).toMatchObject({ connects: 2, abruptDisconnects: 1, acked: 2 });
    await g.device.disconnect();
  });

  it('out of range: the connection drops, the RSSI falls, connects fail until it is back, then the backlog follows', async () => {
    const w = wearable('range');
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    await g.frame.startNotifications();
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const dropped = once(g.device, 'disconnect');
    const weak = await propertyChange(w.path, 'org.bluez.Device1', (c) => Number(c.RSSI) <= -95);
    const back = new Promise<void>((resolve) => w.link.peripheral.on('range', (inRange) => inRange && resolve()));
    const returned = w.link.outOfRange(6 * CONNECT_TIMEOUT_MS);
    await dropped;
    const backlog = w.record(3); // the wearable keeps measuring
    await weak.changed;
    expect(await dbusError(g.device.connect())).toEqual({ type: 'org.bluez.Error.Failed', text: 'le-connection-abort-by-local' });
    await back;
    const again = await connectGatt(w);
    const rx = reassemble(again.frame);
    await again.frame.startNotifications();
    await again.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    expect((await rx.frames(3)).map((f) => hex(f.frame))).toEqual(backlog.map((f) => hex(f.raw)));
    expect(await returned).toBe(true);
    await again.device.disconnect();
  });

  it('vanish: the device leaves the tree at once and is discovered again when it is back', async () => {
    const w = wearable('vanish');
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    await g.frame.startNotifications();
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const removed = treeEvent('removed', w.path);
    const returned = w.link.vanish(200);
    await removed;
    expect(await adapter.devices()).not.toContain(w.link.peripheral.address);
    await treeEvent('added', w.path);
    const again = await connectGatt(w);
    expect(await returned).toBe(true);
    await again.device.disconnect();
  });

  it('RemoveDevice disconnects and removes a device; an unknown path is InvalidArguments', async () => {
    const w = wearable('remove');
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    await adapter.stopDiscovery(); // else its next advertisement reports it again at once
    const a = (await watcher.getProxyObject('org.bluez', ADAPTER_PATH)).getInterface('org.bluez.Adapter1');
    const dropped = once(w.link.peripheral, 'disconnected');
    const removed = treeEvent('removed', w.path);
    await a.RemoveDevice!(w.path);
    await removed;
    expect(await dropped).toEqual(['central']);
    expect(await adapter.devices()).not.toContain(w.link.peripheral.address);
    expect(await dbusError(a.RemoveDevice!(w.path))).toMatchObject({ type: 'org.bluez.Error.InvalidArguments' });
    expect(await g.device.isConnected().catch(() => false)).toBe(false);
  });

  it('removes a device that is neither connected nor heard after the temporary timeout', async () => {
    const w = wearable('temporary');
    w.link.start();
    const added = treeEvent('added', w.path);
    await withDiscovery(() => added);
    const since = Date.now();
    await treeEvent('removed', w.path);
    expect(Date.now() - since).toBeGreaterThanOrEqual(TEMPORARY_TIMEOUT_MS - 150);
  });

  it('ends the sessions of a client that leaves the bus', async () => {
    const w = wearable('leaver');
    w.link.start();
    const other = sessionBus({ busAddress: sim.address });
    const a = (await other.getProxyObject('org.bluez', ADAPTER_PATH)).getInterface('org.bluez.Adapter1');
    await a.StartDiscovery!();
    const d = (await other.getProxyObject('org.bluez', w.path)).getInterface('org.bluez.Device1');
    await d.Connect!();
    const c = (await other.getProxyObject('org.bluez', `${w.path}/service000a/char000b`)).getInterface('org.bluez.GattCharacteristic1');
    await c.StartNotify!();
    expect(w.link.peripheral.notifying).toBe(true);
    const stopped = await propertyChange(ADAPTER_PATH, 'org.bluez.Adapter1', (x) => x.Discovering === false);
    const quiet = once(w.link.peripheral, 'notifying');
    other.disconnect();
    await stopped.changed;
    expect(await quiet).toEqual([false]);
    await (await adapter.getDevice(w.link.peripheral.address)).disconnect();
  });

  it('sends faulty copies as their own transmissions before the honest frame, and settles them by the ACK after', async () => {
    const w = wearable('extras');
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    const rx = reassemble(g.frame);
    await g.frame.startNotifications();
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const [h] = w.record(1);
    const tampered = h!.raw.slice();
    tampered[40] = tampered[40]! ^ 1;
    const peer = testDevice('extras-peer').id;
    const copy = w.link.sendExtra(tampered);
    const wrong = w.link.sendExtra(h!.raw, { asDevice: peer });
    const got = await rx.frames(3);
    expect(got.map((f) => hex(f.frame))).toEqual([
      hex(tampered),
      hex(Buffer.concat([h!.raw.subarray(0, 1), Buffer.from(peer, 'hex'), h!.raw.subarray(9)])),
      hex(h!.raw),
    ]);
    expect(got.every((f) => !f.retransmit)).toBe(true); // a replay must reach the gateway without R
    expect(rx.verdicts.flatMap((v) => v.rejections)).toEqual([]); // the counter runs on across extras
    expect(w.link.backlog).toBe(3);
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(h!.seq)));
    expect(await copy).toBe(true);
    expect(await wrong).toBe(true);
    expect(w.link.counters).toMatchObject({ extrasSent: 2, extrasAcked: 2, extrasLost: 0 });
    await g.device.disconnect();
  });

  it.each([
    ['out_of_order', 'FRAGMENT_OUT_OF_ORDER'],
    ['too_short', 'FRAGMENT_TOO_SHORT'],
    ['retransmit_flip', 'FRAGMENT_MALFORMED'],
  ] as const)('a %s fragment stream is refused once as %s; the disconnect settles it, and nothing honest is lost', async (variant, reason) => {
    const w = wearable(`bad-${variant}`);
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    const rx = reassemble(g.frame);
    await g.frame.startNotifications();
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const [h] = w.record(1, 30);
    const bad = w.link.sendBadFragments(h!.raw, variant);
    expect(bad.expected).toBe(reason);
    const verdict = await new Promise<ReassemblyVerdict>((resolve) => {
      g.frame.on('valuechanged', () => {
        const v = rx.verdicts[rx.verdicts.length - 1]!;
        if (v.lost) resolve(v);
      });
    });
    expect(verdict.rejections.map((r) => r.reason)).toEqual([reason]);
    await g.device.disconnect(); // as the gateway must on a loss (§10.6)
    expect(await bad.sent).toBe(true);
    const again = await connectGatt(w);
    const rx2 = reassemble(again.frame);
    await again.frame.startNotifications();
    await again.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const [resent] = await rx2.frames(1);
    expect(hex(resent!.frame)).toBe(hex(h!.raw));
    expect(rx2.verdicts.flatMap((v) => v.rejections)).toEqual([]);
    await again.device.disconnect();
  });

  it('a stalled stream: the first fragments of a frame, then silence until the central disconnects; nothing honest is lost', async () => {
    const w = wearable('stall');
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    const rx = reassemble(g.frame);
    await g.frame.startNotifications();
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const [h1, h2] = w.record(2);
    const stall = w.link.stallFrame(h2!.raw);
    expect(stall.expected).toBe('FRAGMENT_STALLED');
    expect(hex((await rx.frames(1))[0]!.frame)).toBe(hex(h1!.raw));
    expect(await stall.holding).toBe(true);
    // Silence, whatever the device records and the central acknowledges meanwhile.
    const [h3] = w.record(1);
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(h1!.seq)));
    await g.device.disconnect(); // the gateway's stall timer would do this after stallMs
    expect(await stall.sent).toBe(true);
    // Signals and the Disconnect reply come in order: every notification of that connection is in.
    // h1 (one notification at ATT_MTU 247), then the first 3 of the copy's 7 fragments of 20 bytes.
    expect(rx.notifications.map((n) => n.length)).toEqual([4 + h1!.raw.length, 20, 20, 20]);
    expect(rx.verdicts.map((v) => v.status)).toEqual(['frame', 'incomplete', 'incomplete', 'incomplete']);
    const again = await connectGatt(w);
    const rx2 = reassemble(again.frame);
    await again.frame.startNotifications();
    await again.control.writeValueWithResponse(Buffer.from(encodeAck(h1!.seq)));
    expect((await rx2.frames(2)).map((f) => [hex(f.frame), f.retransmit])).toEqual([
      [hex(h2!.raw), false],
      [hex(h3!.raw), false],
    ]);
    expect(rx2.verdicts.flatMap((v) => v.rejections)).toEqual([]);
    await again.device.disconnect();
  });

  it('an oversized frame is refused on its declared length (FRAGMENT_OVERSIZED) before anything is allocated', async () => {
    const w = wearable('oversized');
    w.link.start();
    await adapter.startDiscovery();
    const g = await connectGatt(w);
    const rx = reassemble(g.frame);
    await g.frame.startNotifications();
    await g.control.writeValueWithResponse(Buffer.from(encodeAck(0n)));
    const [h] = w.record(1);
    const sent = w.link.sendExtra(oversize(h!.raw, Rng.for('oversized-test')));
    await once(g.frame, 'valuechanged');
    expect(rx.verdicts[0]!.rejections.map((r) => r.reason)).toEqual(['FRAGMENT_OVERSIZED']);
    await g.device.disconnect();
    expect(await sent).toBe(true);
  });

  it('a rogue wearable advertises and answers info with an id no one enrolled', async () => {
    const rogue = addRogueWearable(sim.bluez, { seed: 'bluez-sim', n: 0 });
    links.push(rogue.link);
    expect(rogue.deviceId).toBe(deviceIdFromKey(rogueDevice('bluez-sim', 0).keys.publicKey));
    await adapter.startDiscovery();
    const device = await adapter.getDevice(rogue.peripheral.address);
    await device.connect();
    const service = await (await device.gatt()).getPrimaryService(VITALPROOF_SERVICE_UUID);
    const info = decodeInfo(await (await service.getCharacteristic(GATT_PROFILE.info.uuid)).readValue());
    expect(info.deviceId).toBe(rogue.deviceId);
    await device.disconnect();
    expect(rogue.peripheral.stats).toEqual({ connections: 1, notifyStarts: 0 });
    expect(rogue.link.backlog).toBe(3);
  });
});

// ---------------------------------------------------------------- a whole fleet, with faults

/**
 * A reference receiver, slow and obviously correct, in the order of PROTOCOL.md §5.3: decode,
 * device known, sender, signature, sequence / retransmission, clock skew, time overlap. It
 * returns the seq it settled when the signature verified: only such a seq may be acknowledged.
 */
class Judge {
  readonly reasons: Partial<Record<FrameReason, number>> = {};
  readonly accepted = new Map<string, bigint[]>();
  seqGaps = 0;
  private readonly keys = new Map<string, KeyObject>();
  private readonly state = new Map<string, { highest: bigint; lastEnd: Map<number, bigint>; hashes: Map<bigint, string> }>();
  constructor(publicKeys: ReadonlyMap<string, Uint8Array>) {
    for (const [id, pub] of publicKeys)
      this.keys.set(id, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pub).toString('base64url') }, format: 'jwk' }));
  }
  submit(raw: Uint8Array, sender: string, retransmit: boolean): bigint | undefined {
    let f;
    try {
      f = decodeFrame(raw);
    } catch (e) {
      if (isError(e, ProtocolError)) return this.reject(e.code);
      throw e;
    }
    const key = this.keys.get(f.deviceId);
    if (!key) return this.reject('UNKNOWN_DEVICE');
    if (f.deviceId !== sender) return this.reject('DEVICE_MISMATCH');
    if (!verify(null, concat(FRAME_TAG, f.body), key, f.signature)) return this.reject('BAD_SIGNATURE');
    const st = this.state.get(f.deviceId) ?? { highest: 0n, lastEnd: new Map<number, bigint>(), hashes: new Map<bigint, string>() };
    this.state.set(f.deviceId, st);
    const sha = createHash('sha256').update(raw).digest('hex');
    if (f.seq <= st.highest) {
      if (retransmit && st.hashes.get(f.seq) === sha) return f.seq;
      this.reject('REPLAY');
      return f.seq;
    }
    if (Number(f.timestampMs) > Date.now() + 30_000) {
      this.reject('CLOCK_SKEW');
      return f.seq;
    }
    const last = st.lastEnd.get(f.sensor);
    if (last !== undefined && f.timestampMs <= last) {
      this.reject('TIME_OVERLAP');
      return f.seq;
    }
    if (st.highest > 0n && f.seq > st.highest + 1n) this.seqGaps += Number(f.seq - st.highest - 1n);
    st.highest = f.seq;
    st.lastEnd.set(f.sensor, frameEndMs(f));
    st.hashes.set(f.seq, sha);
    this.accepted.set(f.deviceId, [...(this.accepted.get(f.deviceId) ?? []), f.seq]);
    return f.seq;
  }
  private reject(r: FrameReason): undefined {
    this.reasons[r] = (this.reasons[r] ?? 0) + 1;
    return undefined;
  }
}

/**
 * A minimal central written from PROTOCOL.md §10.7, on node-ble (not the gateway's): for every
 * device the discovery reports, connect, read info, subscribe only to enrolled devices with the
 * enrolled key, ACK the highest settled seq, judge every reassembled frame, disconnect on a loss,
 * and reconnect after every drop until stopped.
 */
class ReferenceCentral {
  readonly judge: Judge;
  readonly fragmentRejections: Partial<Record<FragmentReason, number>> = {};
  readonly subscribedTo = new Set<string>();
  private readonly settled = new Map<string, bigint>();
  private readonly serving = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(
    private readonly adapter: Adapter,
    private readonly tree: EventEmitter,
    private readonly enrolled: ReadonlyMap<string, Uint8Array>,
  ) {
    this.judge = new Judge(enrolled);
    tree.on('added', (path: string) => {
      if (/\/dev_[0-9A-F_]+$/.test(path) && !this.serving.has(path)) this.serving.set(path, this.serve(path));
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.tree.emit('stop');
    await Promise.all(this.serving.values());
  }

  /** Resolves when `path` is added again, or the central stops; `cancel` drops the listeners. */
  private reappears(path: string): { promise: Promise<void>; cancel(): void } {
    let cancel!: () => void;
    const promise = new Promise<void>((resolve) => {
      const added = (p: string): void => {
        if (p === path) done();
      };
      const done = (): void => {
        cancel();
        resolve();
      };
      cancel = () => {
        this.tree.off('added', added);
        this.tree.off('stop', done);
      };
      this.tree.on('added', added);
      this.tree.on('stop', done);
    });
    return { promise, cancel };
  }

  private async serve(path: string): Promise<void> {
    const address = path.slice(path.lastIndexOf('dev_') + 4).replace(/_/g, ':');
    while (!this.stopped) {
      const back = this.reappears(path); // listening before looking: an addition in between is not missed
      let device: Device;
      try {
        device = await this.adapter.getDevice(address);
        back.cancel();
      } catch {
        await back.promise; // vanished: wait until it is discovered again
        continue;
      }
      try {
        await device.connect();
      } catch {
        continue; // out of range: the attempt itself took the connect timeout
      }
      const disconnected = once(device, 'disconnect');
      const frame = await this.session(device);
      if (frame === false) return;
      await Promise.race([disconnected, new Promise((resolve) => this.tree.once('stop', resolve))]);
      // node-ble keeps the characteristic's PropertiesChanged subscription after a disconnect, and the
      // next connection's characteristic has the same path: this connection's listener must go.
      frame?.removeAllListeners('valuechanged');
    }
  }

  /** One connection; false when the device is not to be served (not enrolled, another key). */
  private async session(device: Device): Promise<Characteristic | undefined | false> {
    let frame: Characteristic | undefined;
    try {
      const service = await (await device.gatt()).getPrimaryService(VITALPROOF_SERVICE_UUID);
      const info = decodeInfo(await (await service.getCharacteristic(GATT_PROFILE.info.uuid)).readValue());
      const key = this.enrolled.get(info.deviceId);
      if (!key || !infoMatchesKey(info, key)) {
        await device.disconnect();
        return false;
      }
      const id = info.deviceId;
      frame = await service.getCharacteristic(GATT_PROFILE.frame.uuid);
      const control = await service.getCharacteristic(GATT_PROFILE.control.uuid);
      const r = new Reassembler();
      let lost = false;
      let writing = false;
      let written = -1n;
      const ack = async (): Promise<void> => {
        if (writing) return;
        writing = true;
        while (!lost && (this.settled.get(id) ?? 0n) > written) {
          const n = this.settled.get(id) ?? 0n;
          await control.writeValueWithResponse(Buffer.from(encodeAck(n))).catch(() => (lost = true));
          written = n;
        }
        writing = false;
      };
      frame.on('valuechanged', (v: Buffer) => {
        if (lost) return;
        const verdict = r.push(v);
        for (const x of verdict.rejections) this.fragmentRejections[x.reason] = (this.fragmentRejections[x.reason] ?? 0) + 1;
        if (verdict.lost) {
          lost = true;
          void device.disconnect().catch(() => undefined);
          return;
        }
        if (verdict.status !== 'frame') return;
        const seq = this.judge.submit(verdict.frame, id, verdict.retransmit);
        if (seq !== undefined && seq > (this.settled.get(id) ?? 0n)) this.settled.set(id, seq);
        void ack();
      });
      await frame.startNotifications();
      this.subscribedTo.add(id);
      await control.writeValueWithResponse(Buffer.from(encodeAck(this.settled.get(id) ?? 0n)));
    } catch {
      // The connection dropped during the set-up: the caller waits for the disconnect and retries.
    }
    return frame;
  }
}

describe('a BLE fleet with every BLE fault kind, against a reference central', () => {
  const bus = usePrivateBus();
  let fleetBle: Bluetooth;
  let fleetWatcher: MessageBus;

  beforeAll(() => {
    process.env.DBUS_SYSTEM_BUS_ADDRESS = bus.address;
    fleetBle = NodeBle.createBluetooth();
    fleetWatcher = sessionBus({ busAddress: bus.address });
  });
  afterAll(() => {
    fleetBle?.destroy();
    fleetWatcher?.disconnect();
  });

  it('delivers every honest frame, and the central counts exactly what the report expects', async () => {
    const seed = 'ble-fleet';
    const devices = fleetDevices(seed, 3, 'heart_rate,spo2;ecg');
    const enrolled = new Map(devices.map((d) => [d.deviceId, d.keys.publicKey]));
    let central: Promise<ReferenceCentral> | undefined;
    /** Once the run's simulated BlueZ is up: the central discovers and serves every device it reports. */
    const startCentral = async (): Promise<ReferenceCentral> => {
      const tree = new EventEmitter();
      const om = (await fleetWatcher.getProxyObject('org.bluez', '/')).getInterface('org.freedesktop.DBus.ObjectManager');
      om.on('InterfacesAdded', (path: string) => tree.emit('added', path));
      const a = await fleetBle.bluetooth.defaultAdapter();
      const rc = new ReferenceCentral(a, tree, enrolled);
      await a.startDiscovery();
      for (const path of Object.keys((await om.GetManagedObjects!()) as object)) tree.emit('added', path);
      return rc;
    };
    const report = await runFleet({
      transport: 'ble',
      ble: {
        busAddress: bus.address,
        mtu: 64,
        appearOverMs: 300,
        temporaryTimeoutMs: 5_000,
        connectTimeoutMs: 200,
        scanIntervalMs: 200,
        outOfRangeMs: [200, 500],
        vanishMs: [100, 300],
        rogues: 1,
      },
      devices: 3,
      seed,
      sensors: 'heart_rate,spo2;ecg',
      frames: 80,
      faults:
        'tamper=0.04,bad_signature=0.03,malformed=0.04,oversized=0.03,wrong_topic=0.03,replay=0.03,skew=0.03,gap=0.03,disconnect=0.03,vanish=0.03,out_of_range=0.03,bad_fragment=0.05',
      drainTimeoutMs: 30_000,
      onProgress: () => {
        central ??= startCentral();
      },
      progressIntervalMs: 20,
    });
    expect(central).toBeDefined();
    const c = await central!;
    await c.stop();
    expect(report.transport).toBe('ble');
    expect(report.drained).toBe(true);
    expect(report.faults).toMatchObject({ pending: 0, lost: 0, unexpected: 0 });
    for (const k of ['bad_fragment', 'oversized', 'out_of_range', 'vanish', 'disconnect', 'tamper'] as const)
      expect(report.faults.injected[k], k).toBeGreaterThan(0);
    expect(c.judge.reasons).toEqual(report.faults.expectedRejections);
    const nonZero = (o: Partial<Record<string, number>>) => Object.fromEntries(Object.entries(o).filter(([, n]) => n));
    expect(nonZero(c.fragmentRejections)).toEqual(nonZero(report.faults.expectedFragmentRejections));
    expect(c.judge.seqGaps).toBe(report.faults.expectedSeqGaps);
    for (const d of report.perDevice) expect(c.judge.accepted.get(d.deviceId)?.length, d.deviceId).toBe(d.recorded);
    expect(report.frames.unacked).toBe(0);
    expect(report.rogues).toHaveLength(1);
    expect(report.rogues![0]!.notifyStarts).toBe(0);
    expect(c.subscribedTo.has(report.rogues![0]!.deviceId)).toBe(false);
    expect(report.connections.abruptDisconnects).toBe(report.faults.injected.disconnect);
  });
});
