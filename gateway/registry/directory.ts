/**
 * The off-chain half of on-chain enrolment, kept in the registry's data dir:
 *
 *   directory.json    deviceId → { patient, patientRef, sensors, firmware }: the pseudonym the
 *                     gateway tags stored points with, and the sensor list. Neither may go on
 *                     chain (everything there is public forever); the chain holds only the
 *                     keyed `patientRef` (gateway/chain/ids.ts).
 *   patient-ref.key   the hospital's 32-byte HMAC key that turns a pseudonym into its
 *                     `patientRef`. Whoever holds it can test guesses of pseudonyms against
 *                     the chain, so it is created with mode 0600 and never logged.
 *
 * WARNING: losing patient-ref.key does not lose data, but devices enrolled later get other
 * patientRefs for the same pseudonyms, so the chain no longer shows that they belong to
 * the same patient. Back it up with the pseudonym list; give the same key to every gateway
 * of the hospital.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MIN_PATIENT_REF_KEY_BYTES } from '../chain/ids.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { PSEUDONYM } from './registry.js';

export const DIRECTORY_FILE = 'directory.json';
export const PATIENT_REF_KEY_FILE = 'patient-ref.key';

/** What the directory knows of one device; `patientRef` ties the entry to the chain's record. */
export interface DirectoryEntry {
  patient: string;
  /** patientRefOf(patient, key), 0x + 64 lowercase hex digits. */
  patientRef: string;
  sensors: string[];
  firmware?: string;
}

const PATIENT_REF = /^0x[0-9a-f]{64}$/;
const DEVICE_ID = /^[0-9a-f]{16}$/;

/**
 * The pseudonym a device gets when the directory has no (matching) entry for it: `ref-` and
 * the first 16 hex digits of its on-chain patientRef, e.g. `ref-3f2a9c0d4e5b6a71`.
 *
 * Still a pseudonym: the patientRef is a keyed HMAC of the real pseudonym, so without the
 * enrolling hospital's key nobody can link it to the pseudonym, let alone to a person; it is
 * public on chain already, so tagging points with it discloses nothing new; and it is the
 * same for every device of one patient enrolled with the same key, so that patient's points
 * still group together. 64 bits make an accidental collision between patients negligible.
 * It matches PSEUDONYM (registry.ts).
 */
export function fallbackPseudonym(patientRef: string): string {
  const hex = patientRef.toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new TypeError(`patientRef must be 32 bytes of hex, got "${patientRef}"`);
  return `ref-${hex.slice(0, 16)}`;
}

/**
 * directory.json, read into memory. Another process (the CLI's `enrol`) may rewrite the file
 * while a gateway runs: `refresh()` re-reads it when it changed on disk.
 */
export class PseudonymDirectory {
  private entries = new Map<string, DirectoryEntry>();
  private stamp = '';

  /** @throws Error when the file exists and is not a valid directory (it is written atomically: a bad file was damaged or edited). */
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.refresh(true);
  }

  get(deviceId: string): DirectoryEntry | undefined {
    return this.entries.get(deviceId);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Every entry by device id, as last read (a new map after each refresh; never changed in place). */
  all(): ReadonlyMap<string, DirectoryEntry> {
    return this.entries;
  }

  /**
   * Re-reads the file if it changed since the last read (or always, with `force`).
   * @returns true when the entries were re-read.
   * @throws Error for an unreadable file; the entries read before stay.
   */
  refresh(force = false): boolean {
    if (!existsSync(this.path)) return false;
    const st = statSync(this.path);
    // The inode changes with every atomic rename, so the stamp catches writes within one mtime tick.
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (!force && stamp === this.stamp) return false;
    this.entries = parseDirectory(readFileSync(this.path, 'utf8'), this.path);
    this.stamp = stamp;
    return true;
  }

  /**
   * Adds or replaces entries and writes the file atomically (temp file, fsync, rename). The
   * file is re-read first, so entries another process wrote meanwhile are kept.
   */
  put(updates: ReadonlyMap<string, DirectoryEntry>): void {
    for (const [id, e] of updates) checkEntry(id, e, 'put');
    this.refresh(true);
    const next = new Map(this.entries);
    for (const [id, e] of updates)
      next.set(id, { patient: e.patient, patientRef: e.patientRef, sensors: [...e.sensors], ...(e.firmware ? { firmware: e.firmware } : {}) });
    const devices = Object.fromEntries([...next].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    writeFileAtomic(this.path, `${JSON.stringify({ version: 1, devices }, null, 2)}\n`);
    this.entries = next;
    const st = statSync(this.path);
    this.stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
  }
}

function parseDirectory(text: string, path: string): Map<string, DirectoryEntry> {
  let doc: { version?: unknown; devices?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (e) {
    throw new Error(`pseudonym directory ${path} is not JSON: ${(e as Error).message}`, { cause: e });
  }
  if (doc.version !== 1 || !doc.devices || typeof doc.devices !== 'object' || Array.isArray(doc.devices)) {
    throw new Error(`pseudonym directory ${path} must be { "version": 1, "devices": { "<deviceId>": {...} } }`);
  }
  const out = new Map<string, DirectoryEntry>();
  for (const [id, raw] of Object.entries(doc.devices as Record<string, unknown>)) {
    const e = raw as Partial<DirectoryEntry>;
    checkEntry(id, e, path);
    out.set(id, { patient: e.patient!, patientRef: e.patientRef!, sensors: [...e.sensors!], ...(e.firmware ? { firmware: e.firmware } : {}) });
  }
  return out;
}

function checkEntry(id: string, e: Partial<DirectoryEntry>, where: string): void {
  const ok =
    DEVICE_ID.test(id) &&
    typeof e.patient === 'string' &&
    PSEUDONYM.test(e.patient) &&
    typeof e.patientRef === 'string' &&
    PATIENT_REF.test(e.patientRef) &&
    Array.isArray(e.sensors) &&
    e.sensors.every((s) => typeof s === 'string') &&
    (e.firmware === undefined || typeof e.firmware === 'string');
  if (!ok) throw new Error(`pseudonym directory ${where}: entry "${id}" needs a device id, a pseudonym, a 0x-hex patientRef and a sensor list`);
}

/**
 * The hospital's patient-ref key in `dir`/patient-ref.key (64 hex digits and a newline),
 * created from 32 random bytes with mode 0600 if there is none. Creation is atomic and
 * exclusive (temp file, fsync, hard link): two processes starting at once end up with the
 * same key, never with two.
 *
 * @returns the key, the file's path, whether it was created now, and `insecureMode` when the
 *   file is readable or writable by group or others (the caller should warn).
 * @throws Error when the file exists but does not hold a 32-byte hex key.
 * @example
 *   const { key, created, path } = loadOrCreatePatientRefKey(join(dataDir, 'registry'));
 *   if (created) log.info({ path }, 'new patient-ref key: back it up with the pseudonym list');
 */
export function loadOrCreatePatientRefKey(dir: string): { key: Buffer; path: string; created: boolean; insecureMode?: number } {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, PATIENT_REF_KEY_FILE);
  let created = false;
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${randomBytes(MIN_PATIENT_REF_KEY_BYTES).toString('hex')}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path); // fails with EEXIST when another process created the key first: use theirs
      created = true;
      const d = openSync(dir, 'r');
      try {
        fsyncSync(d);
      } finally {
        closeSync(d);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      unlinkSync(tmp);
    }
  }
  const text = readFileSync(path, 'utf8').trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new Error(`patient-ref key file ${path} must hold ${MIN_PATIENT_REF_KEY_BYTES} bytes as 64 hex digits`);
  const mode = statSync(path).mode & 0o777;
  return { key: Buffer.from(text, 'hex'), path, created, ...(mode & 0o077 ? { insecureMode: mode } : {}) };
}
