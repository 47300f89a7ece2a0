/**
 * The object tree of the simulated BlueZ, with org.freedesktop.DBus.ObjectManager on `/` as
 * BlueZ has it: every object is added and removed whole, and each addition or removal is
 * signalled (InterfacesAdded / InterfacesRemoved) in the same step, so that GetManagedObjects and
 * the signals never disagree.
 */
import type { MessageBus } from 'dbus-next';
import { emitChanged, Interface, interfaceName, propertiesOf, STANDARD_INTERFACES, unexportPath, type Variant } from './dbus.js';

export type ManagedObjects = Record<string, Record<string, Record<string, Variant>>>;

class ObjectManager1 extends Interface {
  constructor(private readonly tree: ObjectTree) {
    super('org.freedesktop.DBus.ObjectManager');
  }
  GetManagedObjects(): ManagedObjects {
    return this.tree.managedObjects();
  }
  InterfacesAdded(path: string, interfaces: Record<string, Record<string, Variant>>): [string, Record<string, Record<string, Variant>>] {
    return [path, interfaces];
  }
  InterfacesRemoved(path: string, interfaces: string[]): [string, string[]] {
    return [path, interfaces];
  }
}
ObjectManager1.configureMembers({
  methods: { GetManagedObjects: { outSignature: 'a{oa{sa{sv}}}' } },
  signals: { InterfacesAdded: { signature: 'oa{sa{sv}}' }, InterfacesRemoved: { signature: 'oas' } },
});

function withStandard(interfaces: Record<string, Record<string, Variant>>): Record<string, Record<string, Variant>> {
  const out: Record<string, Record<string, Variant>> = {};
  for (const s of STANDARD_INTERFACES) out[s] = {};
  return Object.assign(out, interfaces);
}

export class ObjectTree {
  private readonly objects = new Map<string, Interface[]>();
  private readonly manager: ObjectManager1;

  constructor(private readonly bus: MessageBus) {
    this.manager = new ObjectManager1(this);
    bus.export('/', this.manager);
  }

  has(path: string): boolean {
    return this.objects.has(path);
  }

  /** Exports an object with all its interfaces, then signals InterfacesAdded with their properties. */
  add(path: string, interfaces: readonly Interface[]): void {
    if (this.objects.has(path)) throw new RangeError(`object ${path} is already exported`);
    for (const i of interfaces) this.bus.export(path, i);
    this.objects.set(path, [...interfaces]);
    this.manager.InterfacesAdded(path, withStandard(this.snapshot(interfaces)));
  }

  /** Signals InterfacesRemoved, then unexports the object. False when it was not there. */
  remove(path: string): boolean {
    const interfaces = this.objects.get(path);
    if (!interfaces) return false;
    this.objects.delete(path);
    this.manager.InterfacesRemoved(path, [...STANDARD_INTERFACES, ...interfaces.map(interfaceName)]);
    unexportPath(this.bus, path);
    return true;
  }

  /** Property changes of an exported object; a no-op once it is gone (no signal from a dead path). */
  changed(path: string, iface: Interface, props: Record<string, unknown>): void {
    if (this.objects.get(path)?.includes(iface)) emitChanged(iface, props);
  }

  managedObjects(): ManagedObjects {
    const out: ManagedObjects = {};
    for (const [path, interfaces] of this.objects) out[path] = withStandard(this.snapshot(interfaces));
    return out;
  }

  /** Removes every object, deepest first, then the ObjectManager itself. */
  close(): void {
    for (const path of [...this.objects.keys()].sort((a, b) => b.length - a.length)) this.remove(path);
    unexportPath(this.bus, '/');
  }

  private snapshot(interfaces: readonly Interface[]): Record<string, Record<string, Variant>> {
    const out: Record<string, Record<string, Variant>> = {};
    for (const i of interfaces) out[interfaceName(i)] = propertiesOf(i);
    return out;
  }
}
