import { Variant } from 'dbus-next';
import { describe, expect, it } from 'vitest';
import { VITALPROOF_SERVICE_UUID } from '../../firmware-proto/gatt.js';
import { privateBusConfig } from '../../device-sim/bluez/bus-daemon.js';
import { filterPasses, normaliseUuid, parseDiscoveryFilter, type Sighting } from '../../device-sim/bluez/discovery-filter.js';
import { advertisedName, serviceDataFor, staticRandomAddress } from '../../device-sim/bluez/radio.js';
import {
  ALL_FAULT_KINDS,
  checkFaultsForTransport,
  FAULT_KINDS,
  FaultPlanner,
  OVERSIZED_EXPECTED,
  parseFaultRates,
  RADIO_FAULT_KINDS,
  SOLO_RADIO_FAULT_KINDS,
  type FaultRates,
} from '../../device-sim/faults.js';
import { Rng } from '../../device-sim/rng.js';
import { runFleet } from '../../device-sim/run.js';
import { FaultTally } from '../../device-sim/tally.js';

const HEART_RATE_SERVICE = '0000180d-0000-1000-8000-00805f9b34fb';
const sighting: Sighting = { address: 'C1:02:03:04:05:06', name: 'VP-8154', uuids: [VITALPROOF_SERVICE_UUID], rssi: -60, txPower: 0 };

function dbusName(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { type?: string }).type;
  }
  return undefined;
}

describe('discovery filters (Adapter1.SetDiscoveryFilter)', () => {
  it('expands short UUIDs with the Bluetooth Base UUID and lowercases', () => {
    expect(normaliseUuid('180D')).toBe(HEART_RATE_SERVICE);
    expect(normaliseUuid('0000180d')).toBe(HEART_RATE_SERVICE);
    expect(normaliseUuid(VITALPROOF_SERVICE_UUID.toUpperCase())).toBe(VITALPROOF_SERVICE_UUID);
    expect(dbusName(() => normaliseUuid('not-a-uuid'))).toBe('org.bluez.Error.InvalidArguments');
  });

  it('parses what node-ble sends, and an empty dict clears the filter', () => {
    expect(parseDiscoveryFilter({ Transport: new Variant('s', 'le') })).toEqual({ uuids: [], transport: 'le', duplicateData: true, discoverable: false });
    expect(parseDiscoveryFilter({})).toBeUndefined();
  });

  it.each([
    ['an unknown key', { Colour: new Variant('s', 'red') }],
    ['a wrong type', { RSSI: new Variant('s', '-60') }],
    ['an unknown transport', { Transport: new Variant('s', 'usb') }],
    ['RSSI together with Pathloss', { RSSI: new Variant('n', -70), Pathloss: new Variant('q', 40) }],
  ])('refuses %s with InvalidArguments', (_what, dict) => {
    expect(dbusName(() => parseDiscoveryFilter(dict))).toBe('org.bluez.Error.InvalidArguments');
  });

  it('passes a peripheral that advertises one of the UUIDs; no list passes all', () => {
    const uuids = (list: string[]) => parseDiscoveryFilter({ UUIDs: new Variant('as', list) });
    expect(filterPasses(uuids([VITALPROOF_SERVICE_UUID]), sighting)).toBe(true);
    expect(filterPasses(uuids(['180d']), sighting)).toBe(false);
    expect(filterPasses(uuids(['180d']), { ...sighting, uuids: [HEART_RATE_SERVICE] })).toBe(true);
    expect(filterPasses(uuids([]), sighting)).toBe(true);
    expect(filterPasses(undefined, sighting)).toBe(true);
  });

  it('applies transport, RSSI, pathloss and pattern', () => {
    const f = (dict: Record<string, Variant>) => parseDiscoveryFilter(dict);
    expect(filterPasses(f({ Transport: new Variant('s', 'bredr') }), sighting)).toBe(false);
    expect(filterPasses(f({ RSSI: new Variant('n', -50) }), sighting)).toBe(false);
    expect(filterPasses(f({ RSSI: new Variant('n', -70) }), sighting)).toBe(true);
    expect(filterPasses(f({ Pathloss: new Variant('q', 50) }), sighting)).toBe(false);
    expect(filterPasses(f({ Pathloss: new Variant('q', 60) }), sighting)).toBe(true);
    expect(filterPasses(f({ Pattern: new Variant('s', 'c1:02') }), sighting)).toBe(true);
    expect(filterPasses(f({ Pattern: new Variant('s', 'VP-') }), sighting)).toBe(true);
    expect(filterPasses(f({ Pattern: new Variant('s', 'XX') }), sighting)).toBe(false);
  });
});

describe('advertisement identity', () => {
  it('gives each device a stable random static address (two top bits set)', () => {
    const a = staticRandomAddress('8154e161025692be');
    expect(a).toMatch(/^[0-9A-F]{2}(:[0-9A-F]{2}){5}$/);
    expect(parseInt(a.slice(0, 2), 16) >> 6).toBe(0b11);
    expect(staticRandomAddress('8154e161025692be')).toBe(a);
    expect(staticRandomAddress('8154e161025692bf')).not.toBe(a);
  });
  it('advertises "VP-" and 4 hex digits, and service data = version 1 ‖ device id', () => {
    expect(advertisedName('8154e161025692be')).toBe('VP-8154');
    expect(serviceDataFor('8154e161025692be').toString('hex')).toBe('018154e161025692be');
  });
});

describe('private bus configuration', () => {
  it('listens on one socket in the directory, with EXTERNAL authentication, and lets anyone own org.bluez', () => {
    const c = privateBusConfig('/tmp/x');
    expect(c).toContain('<listen>unix:path=/tmp/x/bus</listen>');
    expect(c).toContain('<auth>EXTERNAL</auth>');
    expect(c).toContain('<allow own="*"/>');
    expect(c).not.toContain('<type>system</type>');
  });
});

describe('radio faults and the seed contract', () => {
  it('draws the radio kinds from their own stream: every old kind keeps its choices', () => {
    const old: FaultRates = { tamper: 0.2, disconnect: 0.1, malformed: 0.1 };
    const a = new FaultPlanner(old, Rng.for('plan', 7));
    const b = new FaultPlanner({ ...old, vanish: 0.3, out_of_range: 0.3, bad_fragment: 0.3 }, Rng.for('plan', 7), Rng.for('radio', 7));
    const radio = Rng.for('radio', 7);
    let radioPicks = 0;
    for (let frame = 0; frame < 300; frame++) {
      const picksB = b.next();
      expect(picksB.filter((k) => (FAULT_KINDS as readonly string[]).includes(k))).toEqual(a.next());
      const wantRadio = RADIO_FAULT_KINDS.filter(() => radio.float() < 0.3);
      expect(picksB.filter((k) => (RADIO_FAULT_KINDS as readonly string[]).includes(k))).toEqual(wantRadio);
      radioPicks += wantRadio.length;
    }
    expect(radioPicks).toBeGreaterThan(0);
  });

  it('draws stall from a stream of its own: with it, or its stream, no old seed chooses differently', () => {
    // The closed lists: a kind added to either would add a draw to every frame of its stream.
    expect(FAULT_KINDS).toHaveLength(10);
    expect(RADIO_FAULT_KINDS).toEqual(['vanish', 'out_of_range', 'bad_fragment']);
    expect(SOLO_RADIO_FAULT_KINDS).toEqual(['stall']);
    expect(ALL_FAULT_KINDS.slice(-1)).toEqual(['stall']);
    const old: FaultRates = { tamper: 0.2, gap: 0.1, vanish: 0.2, out_of_range: 0.2, bad_fragment: 0.2 };
    const before = new FaultPlanner(old, Rng.for('plan', 8), Rng.for('radio', 8));
    const streamOnly = new FaultPlanner(old, Rng.for('plan', 8), Rng.for('radio', 8), { stall: Rng.for('stall', 8) });
    const withStall = new FaultPlanner({ ...old, stall: 0.4 }, Rng.for('plan', 8), Rng.for('radio', 8), { stall: Rng.for('stall', 8) });
    const own = Rng.for('stall', 8);
    let stalls = 0;
    for (let frame = 0; frame < 300; frame++) {
      const want = before.next();
      expect(streamOnly.next()).toEqual(want);
      const got = withStall.next();
      expect(got.filter((k) => k !== 'stall')).toEqual(want);
      const stall = own.float() < 0.4;
      expect(got.includes('stall')).toBe(stall);
      if (stall) expect(got.at(-1)).toBe('stall');
      stalls += Number(stall);
    }
    expect(stalls).toBeGreaterThan(0);
    expect(() => new FaultPlanner({ stall: 0.1 }, Rng.for('x'), Rng.for('y'))).toThrow(/stream of its own/);
    expect(() => checkFaultsForTransport(parseFaultRates('stall=0.1'), 'mqtt')).toThrow(/needs a radio/);
    expect(() => checkFaultsForTransport(parseFaultRates('stall=0.1'), 'ble')).not.toThrow();
  });

  it('refuses radio rates without a radio stream, and kinds a transport cannot carry out', () => {
    expect(() => new FaultPlanner({ vanish: 0.1 }, Rng.for('x'))).toThrow(TypeError);
    expect(() => checkFaultsForTransport(parseFaultRates('bad_fragment=0.1'), 'mqtt')).toThrow(/needs a radio/);
    expect(() => checkFaultsForTransport(parseFaultRates('unknown_device=0.1'), 'ble')).toThrow(/not supported over BLE/);
    expect(() => checkFaultsForTransport(parseFaultRates('unknown_device=0,tamper=0.1,out_of_range=0.2'), 'ble')).not.toThrow();
    expect(OVERSIZED_EXPECTED).toEqual({ mqtt: 'FRAME_OVERSIZED', ble: 'FRAGMENT_OVERSIZED' });
  });

  it('tallies fragment rejections apart from frame rejections', () => {
    const t = new FaultTally();
    t.inject('bad_fragment', 'FRAGMENT_OUT_OF_ORDER')('confirmed');
    t.inject('oversized', 'FRAGMENT_OVERSIZED')('confirmed');
    t.inject('bad_fragment', 'FRAGMENT_TOO_SHORT')('lost');
    t.inject('tamper', 'BAD_SIGNATURE')('confirmed');
    const r = t.report();
    expect(r.expectedFragmentRejections).toEqual({ FRAGMENT_OUT_OF_ORDER: 1, FRAGMENT_OVERSIZED: 1, FRAGMENT_TOO_SHORT: 0 });
    expect(r.expectedRejections).toEqual({ BAD_SIGNATURE: 1 });
    expect(r.lost).toBe(1);
  });
});

describe('runFleet options by transport', () => {
  const base = { devices: 1, seed: 'opts', frames: 1 };
  it.each([
    ['BLE without a bus address', { ...base, transport: 'ble' as const }, TypeError, /ble.busAddress/],
    [
      'unknown_device over BLE',
      { ...base, transport: 'ble' as const, ble: { busAddress: 'unix:path=/nonexistent/bus' }, faults: 'unknown_device=0.1' },
      TypeError,
      /not supported over BLE/,
    ],
    ['a radio kind over MQTT', { ...base, brokerUrl: 'mqtt://127.0.0.1:1', faults: 'vanish=0.1' }, TypeError, /needs a radio/],
    ['MQTT without a broker', { ...base }, TypeError, /broker URL/],
    ['an impossible MTU', { ...base, transport: 'ble' as const, ble: { busAddress: 'unix:path=/nonexistent/bus', mtu: 20 } }, RangeError, /ATT_MTU/],
  ])('refuses %s before starting anything', async (_what, options, type, message) => {
    const run = runFleet(options);
    await expect(run).rejects.toThrow(type);
    await expect(run).rejects.toThrow(message);
  });
});
