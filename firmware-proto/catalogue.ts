/**
 * The sensor catalogue (PROTOCOL.md §4): what each sensor code means, its unit, its
 * LOINC code where one exists, how many channels a sample has, and the physical range a
 * decoded value must lie in. Knows nothing of frames, keys or storage.
 */
export interface SensorSpec {
  readonly code: number;
  /** Also the InfluxDB measurement name. */
  readonly name: string;
  readonly unit: string;
  /** UCUM unit code. */
  readonly ucum: string;
  readonly loinc: string | null;
  readonly channels: readonly string[];
  /** The scale exponent devices use by default: value = raw × 10^scale. */
  readonly defaultScale: number;
  /** Inclusive physical range of a decoded value, per channel. */
  readonly min: number;
  readonly max: number;
  /** Default sampling interval in microseconds and samples per frame. */
  readonly defaultIntervalUs: number;
  readonly defaultSamplesPerFrame: number;
}

const specs: readonly SensorSpec[] = [
  {
    code: 1,
    name: 'heart_rate',
    unit: 'beats/min',
    ucum: '/min',
    loinc: '8867-4',
    channels: ['value'],
    defaultScale: 0,
    min: 0,
    max: 300,
    defaultIntervalUs: 1_000_000,
    defaultSamplesPerFrame: 5,
  },
  {
    code: 2,
    name: 'spo2',
    unit: '%',
    ucum: '%',
    loinc: '59408-5',
    channels: ['value'],
    defaultScale: -1,
    min: 0,
    max: 100,
    defaultIntervalUs: 1_000_000,
    defaultSamplesPerFrame: 5,
  },
  {
    code: 3,
    name: 'skin_temperature',
    unit: '°C',
    ucum: 'Cel',
    loinc: '39106-0',
    channels: ['value'],
    defaultScale: -2,
    min: 0,
    max: 50,
    defaultIntervalUs: 10_000_000,
    defaultSamplesPerFrame: 1,
  },
  {
    code: 4,
    name: 'respiration_rate',
    unit: 'breaths/min',
    ucum: '/min',
    loinc: '9279-1',
    channels: ['value'],
    defaultScale: -1,
    min: 0,
    max: 120,
    defaultIntervalUs: 4_000_000,
    defaultSamplesPerFrame: 1,
  },
  {
    code: 5,
    name: 'accelerometer',
    unit: 'm/s²',
    ucum: 'm/s2',
    loinc: null,
    channels: ['x', 'y', 'z'],
    defaultScale: -3,
    min: -160,
    max: 160,
    defaultIntervalUs: 40_000,
    defaultSamplesPerFrame: 25,
  },
  {
    code: 6,
    name: 'ecg',
    unit: 'mV',
    ucum: 'mV',
    loinc: null,
    channels: ['value'],
    defaultScale: -3,
    min: -10,
    max: 10,
    defaultIntervalUs: 4_000,
    defaultSamplesPerFrame: 250,
  },
  {
    code: 7,
    name: 'steps',
    unit: 'steps',
    ucum: '{steps}',
    loinc: '55423-8',
    channels: ['value'],
    defaultScale: 0,
    min: 0,
    max: 1000,
    defaultIntervalUs: 60_000_000,
    defaultSamplesPerFrame: 1,
  },
];

const byCode = new Map(specs.map((s) => [s.code, s]));
const byName = new Map(specs.map((s) => [s.name, s]));

export const SENSORS: readonly SensorSpec[] = specs;

export function sensorByCode(code: number): SensorSpec | undefined {
  return byCode.get(code);
}

/** @throws TypeError for a name that is not in the catalogue. */
export function sensorByName(name: string): SensorSpec {
  const s = byName.get(name);
  if (!s) throw new TypeError(`unknown sensor "${name}"; known: ${specs.map((x) => x.name).join(', ')}`);
  return s;
}
