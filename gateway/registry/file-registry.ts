/**
 * Device registry kept in one JSON file in the data dir. The running gateway watches the
 * file, so `vitalproof enrol` and `vitalproof revoke` from another process take effect
 * without a restart. Writes are atomic (write, fsync, rename).
 *
 * `enrol` refuses keys that break the rule of PROTOCOL.md §2.2; the file can also be edited by
 * hand, so every key is checked again when the file is loaded, and a device whose key breaks
 * the rule is left out of get() and list() and reported by refusedKeys() (and logged at error
 * level, once per device and key).
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.js';
import { checkEnrolment, KeyRuleCache, type DeviceRecord, type DeviceRegistry, type EnrolResult, type EnrolmentEntry, type RefusedKey } from './registry.js';

/** The log method used (a pino Logger fits). */
export interface FileRegistryLog {
  error(obj: object, msg?: string): void;
}

interface StoredRecord {
  deviceId: string;
  publicKey: string;
  patient: string;
  sensors: string[];
  firmware?: string;
  enrolledAtMs: number;
  revokedAtMs?: number;
}

export class FileRegistry extends EventEmitter<{ revoked: [DeviceRecord]; changed: [] }> implements DeviceRegistry {
  private devices = new Map<string, DeviceRecord>();
  private refused = new Map<string, RefusedKey>();
  /** The refused entries as the file has them: kept in it on save, as the operator's evidence. */
  private refusedStored: StoredRecord[] = [];
  /** device id ‖ key of refusals already logged: one error line each, not one per reload. */
  private readonly alarmed = new Set<string>();
  private readonly keyRule = new KeyRuleCache();
  private readonly log: FileRegistryLog | undefined;
  private watcher: FSWatcher | undefined;
  private lastText = '';

  constructor(
    readonly path: string,
    opts: { watch?: boolean; log?: FileRegistryLog } = {},
  ) {
    super();
    this.log = opts.log;
    mkdirSync(dirname(path), { recursive: true });
    this.load();
    if (opts.watch) {
      // Watch the directory: an atomic rename replaces the file's inode.
      this.watcher = watch(dirname(path), (_ev, name) => {
        if (name === basename(path)) this.load();
      });
      this.watcher.unref();
    }
  }

  private load(): void {
    if (!existsSync(this.path)) return;
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      return;
    }
    if (text === this.lastText) return;
    let doc: { devices: StoredRecord[] };
    try {
      doc = JSON.parse(text) as { devices: StoredRecord[] };
    } catch {
      return; // half-written by a non-atomic editor; the next change event reloads it
    }
    this.lastText = text;
    const next = new Map<string, DeviceRecord>();
    const refused = new Map<string, RefusedKey>();
    const refusedStored: StoredRecord[] = [];
    for (const s of doc.devices) {
      const problem = this.keyRule.check(typeof s.publicKey === 'string' ? s.publicKey.toLowerCase() : '');
      if (problem) {
        refused.set(s.deviceId, { deviceId: s.deviceId, reason: problem, publicKey: String(s.publicKey) });
        if (!this.alarmed.has(`${s.deviceId}:${s.publicKey}`)) {
          this.alarmed.add(`${s.deviceId}:${s.publicKey}`);
          this.log?.error(
            { event: 'registry_key_refused', device: s.deviceId, reason: problem, source: 'file', path: this.path },
            'enrolled key breaks the key rule (PROTOCOL.md §2.2): device refused',
          );
        }
        refusedStored.push(s);
        continue;
      }
      next.set(s.deviceId, fromStored(s));
    }
    const before = this.devices;
    this.devices = next;
    this.refused = refused;
    this.refusedStored = refusedStored;
    for (const rec of next.values()) {
      const old = before.get(rec.deviceId);
      if (rec.revokedAtMs !== undefined && old?.revokedAtMs === undefined) this.emit('revoked', rec);
    }
    this.emit('changed');
  }

  get(deviceId: string): DeviceRecord | undefined {
    return this.devices.get(deviceId);
  }

  list(): DeviceRecord[] {
    return [...this.devices.values()];
  }

  refusedKeys(): RefusedKey[] {
    return [...this.refused.values()];
  }

  async enrol(entries: EnrolmentEntry[]): Promise<EnrolResult> {
    this.load();
    const result: EnrolResult = { enrolled: [], unchanged: [], refused: [] };
    for (const e of entries) {
      const bad = checkEnrolment(e);
      if (bad) {
        result.refused.push({ deviceId: e.deviceId, ...bad });
        continue;
      }
      if (this.refused.has(e.deviceId)) {
        result.refused.push({
          deviceId: e.deviceId,
          reason: 'KEY_CONFLICT',
          detail: `the file holds this device id with a refused key (${this.refused.get(e.deviceId)!.reason}): remove that entry first`,
        });
        continue;
      }
      const existing = this.devices.get(e.deviceId);
      if (existing) {
        if (Buffer.from(existing.publicKey).toString('hex') !== e.publicKey) {
          result.refused.push({ deviceId: e.deviceId, reason: 'KEY_CONFLICT', detail: 'device id already enrolled with another key' });
        } else result.unchanged.push(e.deviceId);
        continue;
      }
      this.devices.set(e.deviceId, {
        deviceId: e.deviceId,
        publicKey: Buffer.from(e.publicKey, 'hex'),
        patient: e.patient,
        sensors: e.sensors ?? [],
        ...(e.firmware ? { firmware: e.firmware } : {}),
        enrolledAtMs: Date.now(),
      });
      result.enrolled.push(e.deviceId);
    }
    if (result.enrolled.length) this.save();
    return result;
  }

  async revoke(deviceId: string, atMs: number): Promise<DeviceRecord> {
    this.load();
    const rec = this.devices.get(deviceId);
    if (!rec) throw new Error(`device ${deviceId} is not enrolled`);
    if (rec.revokedAtMs !== undefined) return rec;
    rec.revokedAtMs = atMs;
    this.save();
    this.emit('revoked', rec);
    return rec;
  }

  private save(): void {
    const doc = { version: 1, devices: [...[...this.devices.values()].map(toStored), ...this.refusedStored] };
    const text = `${JSON.stringify(doc, null, 2)}\n`;
    writeFileAtomic(this.path, text);
    this.lastText = text;
  }

  async close(): Promise<void> {
    this.watcher?.close();
  }
}

function toStored(r: DeviceRecord): StoredRecord {
  return { ...r, publicKey: Buffer.from(r.publicKey).toString('hex') };
}

function fromStored(s: StoredRecord): DeviceRecord {
  return { ...s, publicKey: Buffer.from(s.publicKey, 'hex') };
}
