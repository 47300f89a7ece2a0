/**
 * gateway/registry/file-registry.ts: the shared DeviceRegistry suite (test/support/device-registry-suite.ts)
 * against the registry file in a temp dir; a follower is a registry that watches the file.
 */
import { afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileRegistry } from '../../../gateway/registry/file-registry.js';
import { deviceRegistrySuite } from '../../support/device-registry-suite.js';

const dirs: string[] = [];
const fileOf = (dir: string): string => join(dir, 'registry.json');

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

deviceRegistrySuite<string>('FileRegistry', {
  newStore: async () => {
    const d = mkdtempSync(join(tmpdir(), 'vp-file-registry-'));
    dirs.push(d);
    return d;
  },
  open: (dir, { follow }) => new FileRegistry(fileOf(dir), { watch: follow }),
  // The file edited by hand: an entry appended as the registry stores it.
  plant: async (dir, e) => {
    const doc = existsSync(fileOf(dir))
      ? (JSON.parse(readFileSync(fileOf(dir), 'utf8')) as { version: number; devices: unknown[] })
      : { version: 1, devices: [] };
    doc.devices.push({ deviceId: e.deviceId, publicKey: e.publicKey, patient: e.patient, sensors: e.sensors ?? [], enrolledAtMs: Date.now() });
    writeFileSync(fileOf(dir), `${JSON.stringify(doc, null, 2)}\n`);
  },
});
