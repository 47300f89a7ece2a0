/**
 * The boundary to dbus-next's service side: the few things its typings do not describe, each
 * behind one narrow cast, so the BlueZ objects stay typed.
 *
 * dbus-next facts relied on (lib/service/*.js, lib/bus.js, 0.10.2):
 * - A property is read as `iface[name]` on every Get/GetAll, and an `undefined` value fails the
 *   whole GetAll: every declared property must always have a value.
 * - A method is called as `fn.apply(iface, body)`, without the message, so the caller's unique
 *   name is not passed; method handlers added with `addMethodHandler` run first, synchronously,
 *   on the same message (see Callers).
 * - `unexport(path, iface)` removes the whole object whatever `iface` is (it tests
 *   `interfaces.length` on an object), so objects are only ever removed whole.
 * - Introspection lists as child nodes every exported path below the one asked, which is how
 *   node-ble finds adapters, devices, services and characteristics.
 */
import { interface as dbusInterface, Variant, type Message, type MessageBus } from 'dbus-next';

export const Interface = dbusInterface.Interface;
export type Interface = dbusInterface.Interface;

/** Interfaces every BlueZ object also implements; BlueZ lists them, empty, in InterfacesAdded. */
export const STANDARD_INTERFACES = ['org.freedesktop.DBus.Introspectable', 'org.freedesktop.DBus.Properties'] as const;

interface ServiceSide {
  $name: string;
  $properties?: Record<string, { signature: string; access: string }>;
}

export function interfaceName(iface: Interface): string {
  return (iface as unknown as ServiceSide).$name;
}

/** Every readable property of an interface, as D-Bus variants: one entry of GetManagedObjects. */
export function propertiesOf(iface: Interface): Record<string, Variant> {
  const table = (iface as unknown as ServiceSide).$properties ?? {};
  const values = iface as unknown as Record<string, unknown>;
  const out: Record<string, Variant> = {};
  for (const [name, p] of Object.entries(table)) if (p.access !== 'write') out[name] = new Variant(p.signature, values[name]);
  return out;
}

/** Emits org.freedesktop.DBus.Properties.PropertiesChanged for properties already updated. */
export function emitChanged(iface: Interface, changed: Record<string, unknown>): void {
  Interface.emitPropertiesChanged(iface, changed, []);
}

/** Removes every interface of an object (see the note on `unexport` above). */
export function unexportPath(bus: MessageBus, path: string): void {
  (bus as unknown as { unexport(path: string): void }).unexport(path);
}

/**
 * The unique bus name of whoever made the method call being dispatched. BlueZ keeps discovery
 * sessions, discovery filters and notification sessions per client, so the simulated one must
 * know the caller; dbus-next does not pass it. A method handler sees every message just before
 * dbus-next calls the method, synchronously, so a method reads `sender` before its first await.
 */
export class Callers {
  private current = '';
  private readonly handler = (msg: Message): boolean => {
    this.current = msg.sender;
    return false; // let dbus-next dispatch it
  };
  constructor(private readonly bus: MessageBus) {
    bus.addMethodHandler(this.handler);
  }
  get sender(): string {
    return this.current;
  }
  close(): void {
    this.bus.removeMethodHandler(this.handler);
  }
}

export { Variant };
