/** Real device identities and signed frames for tests (no mocks: the firmware-proto code signs). */
import { createHash } from 'node:crypto';
import { DeviceCore, MemorySeqStore, SequenceCounter, type Measurement } from '../../firmware-proto/device.js';
import { deviceIdFromKey, generateKeys, type DeviceKeys } from '../../firmware-proto/signing.js';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import type { EnrolmentEntry } from '../../gateway/registry/registry.js';

export interface TestDevice {
  id: string;
  keys: DeviceKeys;
  core: DeviceCore;
  patient: string;
  enrolment: EnrolmentEntry;
}

export function testDevice(name: string, patient = `pt-${name}`): TestDevice {
  const keys = generateKeys(createHash('sha256').update(`test-device:${name}`).digest());
  const id = deviceIdFromKey(keys.publicKey);
  const core = new DeviceCore(id, keys.secretKey, new SequenceCounter(new MemorySeqStore()));
  return { id, keys, core, patient, enrolment: { deviceId: id, publicKey: Buffer.from(keys.publicKey).toString('hex'), patient, sensors: ['heart_rate'] } };
}

/** A heart-rate measurement of `n` samples at 1 Hz starting at `startMs`. */
export function heartRate(startMs: number, values: number[]): Measurement {
  const spec = sensorByName('heart_rate');
  return { timestampMs: BigInt(startMs), sensor: spec.code, scale: 0, intervalUs: 1_000_000, samples: Int32Array.from(values) };
}
