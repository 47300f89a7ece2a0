/**
 * `vitalproof enrol` on a file with malformed entries, as an operator runs it: the built CLI on
 * the data dir's embedded chain. Each bad entry is refused with its coded reason, the good ones
 * are enrolled, the exit code is 1, and nothing prints a stack trace (docs/enrolment.md).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from '../support/gateway-process.js';
import { enrolmentFile, fleetDevices } from '../../device-sim/fleet.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-enrol-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--dataDir', join(dir, 'gw')], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const STACK = /^\s+at /m;

describe('vitalproof enrol with malformed entries', () => {
  it('refuses each bad entry with its code, enrols the others, exits 1, and prints no stack', () => {
    const fleet = fleetDevices('enrol-refusal', 4);
    const doc = enrolmentFile(fleet) as unknown as { version: number; devices: Record<string, unknown>[] };
    doc.devices[1]!.sensors = [1, 2]; // codes, not names
    delete doc.devices[2]!.patient;
    const file = join(dir, 'fleet.json');
    writeFileSync(file, JSON.stringify(doc));

    const r = cli('enrol', file);
    expect(r.stderr).not.toMatch(STACK);
    expect(r.status).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^enrolled 2, already enrolled 0, refused 2 \(on chain \d+, DeviceRegistry 0x[0-9a-fA-F]{40}\)$/);
    expect(lines.slice(1)).toEqual([
      `  refused ${fleet[1]!.deviceId}: ENROL_UNKNOWN_SENSOR (devices[1].sensors[0]: expected a sensor name (heart_rate, spo2, skin_temperature, respiration_rate, accelerometer, ecg, steps), found 1, the code of heart_rate: give its name)`,
      `  refused ${fleet[2]!.deviceId}: ENROL_MISSING_FIELD (devices[2].patient: expected a string, found no such field)`,
    ]);

    const listed = cli('devices');
    expect(listed.status).toBe(0);
    expect(
      listed.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(/\s+/)[0])
        .sort(),
    ).toEqual([fleet[0]!.deviceId, fleet[3]!.deviceId].sort());
  });

  it('refuses a file that is not an enrolment file as a whole, with one coded line and no stack', () => {
    const file = join(dir, 'v2.json');
    writeFileSync(file, JSON.stringify({ version: 2, devices: [] }));
    const r = cli('enrol', file);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('error: ENROL_BAD_VERSION: the enrolment file\'s "version" must be 1 {"expected":1,"found":2}\n');
  });
});
