import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkPublicKey, deviceIdFromKey } from '../../firmware-proto/signing.js';
import { assignSensors, enrolmentFile, fleetDevices, rogueDevice, SIM_FIRMWARE, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { checkEnrolment } from '../../gateway/registry/registry.js';
import { parseEnrolmentFile } from '../../gateway/registry/enrolment.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-sim-fleet-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('fleetDevices', () => {
  it('derives the same fleet from the same seed, and another from another seed', () => {
    const a = fleetDevices('42', 20);
    const b = fleetDevices('42', 20);
    const c = fleetDevices('43', 20);
    expect(a.map((d) => [d.deviceId, hex(d.keys.publicKey), d.patient, d.sensors.map((s) => s.name)])).toEqual(
      b.map((d) => [d.deviceId, hex(d.keys.publicKey), d.patient, d.sensors.map((s) => s.name)]),
    );
    expect(new Set([...a, ...c].map((d) => d.deviceId)).size).toBe(40);
  });

  it('keeps existing devices when the fleet grows', () => {
    const small = fleetDevices('42', 3);
    const large = fleetDevices('42', 10);
    expect(large.slice(0, 3).map((d) => d.deviceId)).toEqual(small.map((d) => d.deviceId));
  });

  it('gives each device an acceptable key, the id derived from it, and a pseudonym that is not a name', () => {
    const fleet = fleetDevices('pseudo', 50);
    for (const d of fleet) {
      expect(checkPublicKey(d.keys.publicKey)).toBeNull();
      expect(d.deviceId).toBe(deviceIdFromKey(d.keys.publicKey));
      expect(d.patient).toMatch(/^pt-[0-9a-f]{12}$/);
      expect(d.deviceId).not.toContain(d.patient.slice(3));
    }
    expect(new Set(fleet.map((d) => d.patient)).size).toBe(50);
  });

  it('derives rogue devices that are not in the fleet', () => {
    const ids = new Set(fleetDevices('rogue', 20).map((d) => d.deviceId));
    for (let i = 0; i < 20; i++) expect(ids.has(rogueDevice('rogue', i).deviceId)).toBe(false);
    expect(rogueDevice('rogue', 3).deviceId).toBe(rogueDevice('rogue', 3).deviceId);
  });

  it.each([0, -1, 1.5])('refuses %s devices', (n) => {
    expect(() => fleetDevices('42', n)).toThrow(RangeError);
  });
});

describe('assignSensors', () => {
  it('mix: the vitals everywhere, accelerometer and ECG on some devices', () => {
    const sets = assignSensors('mix', 60, '42').map((s) => s.map((x) => x.name));
    for (const s of sets) expect(s).toEqual(expect.arrayContaining(['heart_rate', 'spo2', 'skin_temperature', 'respiration_rate', 'steps']));
    const acc = sets.filter((s) => s.includes('accelerometer')).length;
    const ecg = sets.filter((s) => s.includes('ecg')).length;
    expect(acc).toBeGreaterThan(10);
    expect(acc).toBeLessThan(50);
    expect(ecg).toBeGreaterThan(5);
    expect(ecg).toBeLessThan(40);
  });

  it('deals ";"-separated sets in turn, in catalogue order, without duplicates', () => {
    const sets = assignSensors('spo2,heart_rate,spo2;ecg', 3, 'x').map((s) => s.map((x) => x.name));
    expect(sets).toEqual([['heart_rate', 'spo2'], ['ecg'], ['heart_rate', 'spo2']]);
    expect(assignSensors('all', 1, 'x')[0]!.length).toBe(7);
  });

  it.each(['pulse', '', 'heart_rate;'])('refuses "%s"', (spec) => {
    expect(() => assignSensors(spec, 2, 'x')).toThrow(TypeError);
  });
});

describe('enrolment export', () => {
  it('writes { version: 1, devices: [...] } that the gateway reads and accepts', () => {
    const fleet = fleetDevices('enrol', 5, 'heart_rate,spo2;ecg');
    const path = join(dir, 'fleet.json');
    writeEnrolmentFile(path, fleet);
    expect(readdirSync(dir)).toEqual(['fleet.json']); // no temporary file left behind
    const doc = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    expect(doc).toEqual(enrolmentFile(fleet));
    expect(Object.keys(doc).sort()).toEqual(['devices', 'version']);
    expect(doc.version).toBe(1);
    const devices = doc.devices as Record<string, unknown>[];
    expect(devices).toHaveLength(5);
    devices.forEach((e, i) => {
      expect(Object.keys(e).sort()).toEqual(['deviceId', 'firmware', 'patient', 'publicKey', 'sensors']);
      expect(e).toEqual({
        deviceId: fleet[i]!.deviceId,
        publicKey: hex(fleet[i]!.keys.publicKey),
        patient: fleet[i]!.patient,
        sensors: i % 2 === 0 ? ['heart_rate', 'spo2'] : ['ecg'],
        firmware: SIM_FIRMWARE,
      });
      expect(e.publicKey).toMatch(/^[0-9a-f]{64}$/);
    });
    // The gateway's own reader and enrolment rules accept every entry.
    const { entries, refused } = parseEnrolmentFile(readFileSync(path, 'utf8'));
    expect(refused).toEqual([]);
    expect(entries.map((e) => e.deviceId)).toEqual(fleet.map((d) => d.deviceId));
    for (const e of entries) expect(checkEnrolment(e)).toBeUndefined();
  });

  it('never writes a secret key', () => {
    const fleet = fleetDevices('secret', 3);
    const text = JSON.stringify(enrolmentFile(fleet));
    for (const d of fleet) expect(text).not.toContain(hex(d.keys.secretKey));
  });
});
