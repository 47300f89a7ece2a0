/**
 * A fleet of simulated wearables from one seed: keys, device ids, patient pseudonyms and
 * sensor sets are all derived from it, so the same seed always yields the same fleet and
 * its enrolment file can be written before, and apart from, any run.
 *
 * Patients are pseudonyms ("pt-" + 12 hex digits from the seed), never names: the gateway
 * puts pseudonyms on a public ledger.
 */
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { SENSORS, sensorByName, type SensorSpec } from '../firmware-proto/catalogue.js';
import { deviceIdFromKey, generateKeys, type DeviceKeys } from '../firmware-proto/signing.js';
import { SIMULATED_SENSORS } from './physiology.js';
import { Rng, seedBytes } from './rng.js';

/** Firmware version the simulator declares at enrolment. */
export const SIM_FIRMWARE = 'sim-1.0';

export interface SimDevice {
  /** Position in the fleet, 0-based. */
  index: number;
  deviceId: string;
  keys: DeviceKeys;
  /** Patient pseudonym. */
  patient: string;
  /** Seed of the patient's physiology. */
  patientSeed: Uint8Array;
  sensors: SensorSpec[];
}

/** The enrolment file `vitalproof enrol` reads. */
export interface EnrolmentFile {
  version: 1;
  devices: EnrolmentRecord[];
}

export interface EnrolmentRecord {
  /** 16 lowercase hex digits, derived from the public key. */
  deviceId: string;
  /** Raw 32-byte Ed25519 public key, 64 lowercase hex digits. */
  publicKey: string;
  patient: string;
  /** Catalogue sensor names. */
  sensors: string[];
  firmware: string;
}

const VITALS = ['heart_rate', 'spo2', 'skin_temperature', 'respiration_rate', 'steps'];

/**
 * Sensor sets for `count` devices from a spec:
 * - `mix` (default): every device has the vitals (heart_rate, spo2, skin_temperature,
 *   respiration_rate, steps); about half also an accelerometer, about a third an ECG;
 * - `all`: every simulated sensor on every device;
 * - `heart_rate,spo2`: this set on every device;
 * - `heart_rate,spo2;ecg`: sets separated by `;`, dealt to devices in turn.
 * Sets are in catalogue order.
 * @throws TypeError for an unknown or unsimulated sensor name, or an empty set.
 */
export function assignSensors(spec: string, count: number, seed: string): SensorSpec[][] {
  const ordered = (names: Iterable<string>): SensorSpec[] => {
    const specs = [...new Set(names)].map((n) => {
      const s = sensorByName(n);
      if (!SIMULATED_SENSORS.includes(s.name)) throw new TypeError(`sensor "${n}" has no simulated signal`);
      return s;
    });
    if (specs.length === 0) throw new TypeError('a device needs at least one sensor');
    return specs.sort((a, b) => a.code - b.code);
  };
  const s = spec.trim();
  if (s === 'mix') {
    return Array.from({ length: count }, (_, i) => {
      const r = Rng.for('sensors', seed, i);
      const extra = [...(r.float() < 0.5 ? ['accelerometer'] : []), ...(r.float() < 0.33 ? ['ecg'] : [])];
      return ordered([...VITALS, ...extra]);
    });
  }
  if (s === 'all') return Array.from({ length: count }, () => ordered(SENSORS.map((x) => x.name).filter((n) => SIMULATED_SENSORS.includes(n))));
  const groups = s.split(';').map((g) =>
    ordered(
      g
        .split(',')
        .map((n) => n.trim())
        .filter(Boolean),
    ),
  );
  return Array.from({ length: count }, (_, i) => groups[i % groups.length]!);
}

/**
 * The fleet of a seed. Device i's key comes from SHA-256 of the seed and i (rng.ts
 * seedBytes), so adding devices never changes the existing ones.
 * @throws RangeError for a count that is not a positive integer.
 * @example fleetDevices('42', 20)[0].deviceId // the same 16 hex digits on every machine
 */
export function fleetDevices(seed: string, count: number, sensors = 'mix'): SimDevice[] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`device count must be a positive integer, got ${count}`);
  const sets = assignSensors(sensors, count, seed);
  return sets.map((set, index) => {
    const keys = generateKeys(seedBytes('device-key', seed, index));
    return {
      index,
      deviceId: deviceIdFromKey(keys.publicKey),
      keys,
      patient: `pt-${Buffer.from(seedBytes('patient-pseudonym', seed, index))
        .toString('hex')
        .slice(0, 12)}`,
      patientSeed: seedBytes('patient', seed, index),
      sensors: set,
    };
  });
}

/** The n-th non-enrolled device of a seed, for the unknown_device fault. */
export function rogueDevice(seed: string, n: number): { deviceId: string; keys: DeviceKeys } {
  const keys = generateKeys(seedBytes('rogue-key', seed, n));
  return { deviceId: deviceIdFromKey(keys.publicKey), keys };
}

export function enrolmentFile(devices: readonly SimDevice[]): EnrolmentFile {
  return {
    version: 1,
    devices: devices.map((d) => ({
      deviceId: d.deviceId,
      publicKey: Buffer.from(d.keys.publicKey).toString('hex'),
      patient: d.patient,
      sensors: d.sensors.map((s) => s.name),
      firmware: SIM_FIRMWARE,
    })),
  };
}

/** Writes the enrolment file atomically (write, fsync, rename): a watcher never reads half of it. */
export function writeEnrolmentFile(path: string, devices: readonly SimDevice[]): EnrolmentFile {
  const doc = enrolmentFile(devices);
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, `${JSON.stringify(doc, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return doc;
}
