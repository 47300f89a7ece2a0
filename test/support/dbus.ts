/**
 * A private D-Bus bus, and the simulated BlueZ on it, for a test file: started in beforeAll,
 * stopped in afterAll. Point node-ble at it with `process.env.DBUS_SYSTEM_BUS_ADDRESS =
 * fixture.address` before createBluetooth().
 *
 * @example
 *   const sim = useBluezSim({ temporaryTimeoutMs: 1000 });
 *   beforeAll(() => { process.env.DBUS_SYSTEM_BUS_ADDRESS = sim.address; });
 *   it('…', () => { const link = new BleLink({ bluez: sim.bluez, … }); … });
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startPrivateBus, type PrivateBus } from '../../device-sim/bluez/bus-daemon.js';
import { startSimulatedBluez, type SimulatedBluez, type SimulatedBluezOptions } from '../../device-sim/bluez/service.js';

export interface PrivateBusFixture {
  /** The bus address; throws outside the file's tests (before beforeAll ran). */
  readonly address: string;
}

export interface BluezSimFixture extends PrivateBusFixture {
  readonly bluez: SimulatedBluez;
}

function started<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is not started: use it inside a test or a hook after beforeAll`);
  return value;
}

/** A private dbus-daemon in a temporary directory, for the current test file. */
export function usePrivateBus(): PrivateBusFixture {
  let dir: string | undefined;
  let bus: PrivateBus | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vp-bus-'));
    bus = await startPrivateBus({ dir });
  });
  afterAll(async () => {
    await bus?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get address() {
      return started(bus, 'the private bus').address;
    },
  };
}

/** A private bus with the simulated BlueZ on it, for the current test file. */
export function useBluezSim(o: Omit<SimulatedBluezOptions, 'busAddress'> = {}): BluezSimFixture {
  const bus = usePrivateBus();
  let bluez: SimulatedBluez | undefined;
  beforeAll(async () => {
    bluez = await startSimulatedBluez({ ...o, busAddress: bus.address });
  });
  afterAll(async () => {
    await bluez?.close();
  });
  return {
    get address() {
      return bus.address;
    },
    get bluez() {
      return started(bluez, 'the simulated BlueZ');
    },
  };
}
