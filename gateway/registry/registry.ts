/**
 * The device registry seam. Ingest reads it synchronously from a local view and never
 * waits on its backing store; the file registry backs it here, the on-chain
 * DeviceRegistry contract will back it behind the same interface.
 */
import { EventEmitter } from 'node:events';
import { checkPublicKey, deviceIdFromKey, type KeyProblem } from '../../firmware-proto/signing.js';
import { isDeviceId } from '../../firmware-proto/frame.js';

export interface DeviceRecord {
  deviceId: string;
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
  /** Patient pseudonym: never a name or a medical record number. */
  patient: string;
  sensors: string[];
  firmware?: string;
  enrolledAtMs: number;
  /** Frames timestamped at or after this instant are refused (DEVICE_REVOKED). */
  revokedAtMs?: number;
}

export interface DeviceRegistry extends EventEmitter<{ revoked: [DeviceRecord]; changed: [] }> {
  /** The device, only when its key passes the enrolment rule (§2.2); a refused key is no enrolment. */
  get(deviceId: string): DeviceRecord | undefined;
  /** Enrolled devices whose key passes the rule, revoked ones included. */
  list(): DeviceRecord[];
  /**
   * Devices whose backing store (the chain, a hand-edited file) holds a key that breaks the
   * enrolment rule of PROTOCOL.md §2.2: never served by get() or list(), so CONNECT and
   * ingest treat them as unknown. Non-empty is an alarm for the operator (docs/contracts.md).
   */
  refusedKeys(): RefusedKey[];
  enrol(records: EnrolmentEntry[]): Promise<EnrolResult>;
  revoke(deviceId: string, atMs: number): Promise<DeviceRecord>;
  close(): Promise<void>;
}

export interface EnrolmentEntry {
  deviceId: string;
  publicKey: string;
  patient: string;
  sensors?: string[];
  firmware?: string;
}

export interface EnrolResult {
  enrolled: string[];
  unchanged: string[];
  refused: { deviceId: string; reason: EnrolRefusal; detail: string }[];
}

/** A device whose enrolled key the gateway refuses to trust (§2.2), and why. */
export interface RefusedKey {
  deviceId: string;
  reason: KeyProblem;
  /** The key as enrolled, 64 hex digits (or what the store held). */
  publicKey: string;
  /** The block of its DeviceEnrolled event, for a key that came from the chain. */
  block?: number;
}

/** Counts refused keys by reason, for status pages and metrics. */
export function refusedKeysBy(refused: readonly RefusedKey[]): Partial<Record<KeyProblem, number>> {
  const by: Partial<Record<KeyProblem, number>> = {};
  for (const r of refused) by[r.reason] = (by[r.reason] ?? 0) + 1;
  return by;
}

/**
 * checkPublicKey (PROTOCOL.md §2.2) memoised by key: the torsion check is a 253-bit scalar
 * multiplication in JavaScript, about 2.3 ms on the reference machine, and registries re-check
 * every key each time they rebuild their view. Bounded: cleared when full.
 */
export class KeyRuleCache {
  private readonly problems = new Map<string, KeyProblem | null>();
  constructor(private readonly max = 100_000) {}
  /** The key's problem, or null when it passes; `key` is raw bytes or lowercase hex. */
  check(key: Uint8Array | string): KeyProblem | null {
    const hex = typeof key === 'string' ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
    let p = this.problems.get(hex);
    if (p === undefined) {
      p = /^(?:[0-9a-f]{2})*$/.test(hex) ? checkPublicKey(Buffer.from(hex, 'hex')) : 'WRONG_LENGTH';
      if (this.problems.size >= this.max) this.problems.clear();
      this.problems.set(hex, p);
    }
    return p;
  }
}

export type EnrolRefusal = 'BAD_DEVICE_ID' | 'DEVICE_ID_MISMATCH' | 'BAD_PSEUDONYM' | 'KEY_CONFLICT' | `KEY_${KeyProblem}`;

/**
 * A patient pseudonym: 3 to 64 characters of [A-Za-z0-9._-]. The rule keeps names with
 * spaces and anything shaped like free text out; it cannot tell a pseudonym from an MRN,
 * so the hospital's enrolment process must supply pseudonyms.
 */
export const PSEUDONYM = /^[A-Za-z0-9._-]{3,64}$/;

/** Checks one enrolment entry; undefined when acceptable. */
export function checkEnrolment(e: EnrolmentEntry): { reason: EnrolRefusal; detail: string } | undefined {
  if (!isDeviceId(e.deviceId)) return { reason: 'BAD_DEVICE_ID', detail: `"${e.deviceId}" is not 16 lowercase hex digits` };
  if (!/^[0-9a-f]{64}$/.test(e.publicKey)) return { reason: 'KEY_WRONG_LENGTH', detail: 'publicKey must be 64 lowercase hex digits' };
  const key = Buffer.from(e.publicKey, 'hex');
  const problem = checkPublicKey(key);
  if (problem) return { reason: `KEY_${problem}`, detail: `public key refused: ${problem}` };
  if (deviceIdFromKey(key) !== e.deviceId) return { reason: 'DEVICE_ID_MISMATCH', detail: `device id must be ${deviceIdFromKey(key)} for this key` };
  if (!PSEUDONYM.test(e.patient)) return { reason: 'BAD_PSEUDONYM', detail: 'patient must be a pseudonym of 3-64 characters [A-Za-z0-9._-]' };
  return undefined;
}

/** Whether a frame with this device timestamp is refused because the device was revoked. */
export function revokedAt(rec: DeviceRecord, timestampMs: number): boolean {
  return rec.revokedAtMs !== undefined && timestampMs >= rec.revokedAtMs;
}
