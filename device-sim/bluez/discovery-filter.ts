/**
 * Adapter1.SetDiscoveryFilter as BlueZ implements it (doc/org.bluez.Adapter.rst, src/adapter.c):
 * parsing the a{sv} a client sends, and deciding whether an advertising peripheral passes it.
 * Pure: the adapter keeps one filter per client and reports a device when any discovering
 * client's filter passes it (BlueZ merges the clients' filters into one scan).
 */
import { bluezError } from './errors.js';
import type { Variant } from './dbus.js';

export type Transport = 'auto' | 'bredr' | 'le';

export interface DiscoveryFilter {
  /** Lowercase 128-bit UUIDs; empty: every device. */
  uuids: string[];
  /** Report only devices heard at least this strong (dBm). */
  rssi?: number;
  /** Report only devices whose TxPower − RSSI is at most this (dB). */
  pathloss?: number;
  transport: Transport;
  duplicateData: boolean;
  discoverable: boolean;
  /** Prefix of the address or the name. */
  pattern?: string;
}

/** The keys GetDiscoveryFilters lists, in BlueZ's order. */
export const DISCOVERY_FILTER_KEYS = ['UUIDs', 'RSSI', 'Pathloss', 'Transport', 'DuplicateData', 'Discoverable', 'Pattern'] as const;

/** The part of the Bluetooth Base UUID after the 32-bit prefix (Core Vol 3 Part B §2.5.1). */
const BASE_UUID_TAIL = '-0000-1000-8000-00805f9b34fb';
const UUID128 = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * A UUID as BlueZ compares it: lowercase 128-bit; a 16- or 32-bit short form ("180d",
 * "0000180d") is expanded with the Bluetooth Base UUID.
 * @throws DBusError org.bluez.Error.InvalidArguments for anything else.
 */
export function normaliseUuid(uuid: string): string {
  const u = uuid.trim().toLowerCase();
  if (/^[0-9a-f]{4}$/.test(u)) return `0000${u}${BASE_UUID_TAIL}`;
  if (/^[0-9a-f]{8}$/.test(u)) return `${u}${BASE_UUID_TAIL}`;
  if (UUID128.test(u)) return u;
  throw bluezError('org.bluez.Error.InvalidArguments', `Invalid UUID "${uuid}"`);
}

function expect<T>(key: string, v: Variant, signature: string, check: (x: unknown) => x is T): T {
  if (v.signature !== signature || !check(v.value)) throw bluezError('org.bluez.Error.InvalidArguments', `${key} must have D-Bus type ${signature}`);
  return v.value;
}
const isString = (x: unknown): x is string => typeof x === 'string';
const isNumber = (x: unknown): x is number => typeof x === 'number';
const isBoolean = (x: unknown): x is boolean => typeof x === 'boolean';
const isStrings = (x: unknown): x is string[] => Array.isArray(x) && x.every(isString);

/**
 * Parses SetDiscoveryFilter's argument. An empty dict clears the filter (undefined).
 * @throws DBusError org.bluez.Error.InvalidArguments for an unknown key, a wrong type, a bad
 *   transport, or RSSI together with Pathloss (BlueZ refuses both at once).
 */
export function parseDiscoveryFilter(dict: Record<string, Variant>): DiscoveryFilter | undefined {
  const keys = Object.keys(dict);
  if (keys.length === 0) return undefined;
  const f: DiscoveryFilter = { uuids: [], transport: 'auto', duplicateData: true, discoverable: false };
  for (const key of keys) {
    const v = dict[key]!;
    switch (key) {
      case 'UUIDs':
        f.uuids = expect(key, v, 'as', isStrings).map(normaliseUuid);
        break;
      case 'RSSI':
        f.rssi = expect(key, v, 'n', isNumber);
        break;
      case 'Pathloss':
        f.pathloss = expect(key, v, 'q', isNumber);
        break;
      case 'Transport': {
        const t = expect(key, v, 's', isString);
        if (t !== 'auto' && t !== 'bredr' && t !== 'le')
          throw bluezError('org.bluez.Error.InvalidArguments', `Transport must be auto, bredr or le, got "${t}"`);
        f.transport = t;
        break;
      }
      case 'DuplicateData':
        f.duplicateData = expect(key, v, 'b', isBoolean);
        break;
      case 'Discoverable':
        f.discoverable = expect(key, v, 'b', isBoolean);
        break;
      case 'Pattern':
        f.pattern = expect(key, v, 's', isString);
        break;
      default:
        throw bluezError('org.bluez.Error.InvalidArguments', `Unknown discovery filter key "${key}"`);
    }
  }
  if (f.rssi !== undefined && f.pathloss !== undefined) throw bluezError('org.bluez.Error.InvalidArguments', 'RSSI and Pathloss cannot be set together');
  return f;
}

/** What a scan hears of an LE peripheral. */
export interface Sighting {
  address: string;
  name: string;
  /** Lowercase 128-bit service UUIDs it advertises. */
  uuids: readonly string[];
  rssi: number;
  txPower: number;
}

/**
 * Whether a client with this filter is told of the peripheral. No filter: everything. An LE
 * peripheral never passes a BR/EDR-only filter; it passes a UUID list when it advertises one of
 * them. `discoverable` is accepted and ignored: a VitalProof wearable always advertises as
 * general-discoverable (AdvertisingFlags 0x06).
 */
export function filterPasses(f: DiscoveryFilter | undefined, s: Sighting): boolean {
  if (!f) return true;
  if (f.transport === 'bredr') return false;
  if (f.uuids.length > 0 && !s.uuids.some((u) => f.uuids.includes(u))) return false;
  if (f.rssi !== undefined && s.rssi < f.rssi) return false;
  if (f.pathloss !== undefined && s.txPower - s.rssi > f.pathloss) return false;
  if (f.pattern !== undefined && f.pattern !== '' && !s.address.startsWith(f.pattern.toUpperCase()) && !s.name.startsWith(f.pattern)) return false;
  return true;
}
