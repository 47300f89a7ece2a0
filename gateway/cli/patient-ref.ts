/**
 * A pseudonym's patientRef as the device registry and the gateway's consent view know it
 * (gateway/registry/directory.ts): the ref its devices were enrolled with, else the HMAC of
 * the pseudonym with the data dir's patient-ref key.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fallbackPseudonym, loadOrCreatePatientRefKey, PATIENT_REF_KEY_FILE, PseudonymDirectory, DIRECTORY_FILE } from '../registry/directory.js';
import { patientRefOf } from '../chain/ids.js';

export interface ResolvedPatientRef {
  patientRef: string;
  /** Where it came from: the devices' enrolment, or the HMAC with the data dir's key. */
  source: 'enrolled devices' | 'patient-ref key' | 'ref- pseudonym';
}

/**
 * The patientRef of `pseudonym` as the device registry and the gateway's consent view know it:
 * the ref its devices were enrolled with (dataDir/registry/directory.json), else the HMAC with
 * the data dir's patient-ref key (created when `create` and there is none), else undefined.
 * A `ref-…` fallback pseudonym has no ref of its own (undefined: the caller matches it against
 * a known ref with `fallbackPseudonym`).
 */
export function resolvePatientRef(dataDir: string, pseudonym: string, opts: { create: true }): ResolvedPatientRef;
export function resolvePatientRef(dataDir: string, pseudonym: string, opts?: { create?: boolean }): ResolvedPatientRef | undefined;
export function resolvePatientRef(dataDir: string, pseudonym: string, opts: { create?: boolean } = {}): ResolvedPatientRef | undefined {
  const dir = join(dataDir, 'registry');
  if (existsSync(join(dir, DIRECTORY_FILE))) {
    for (const e of new PseudonymDirectory(join(dir, DIRECTORY_FILE)).all().values()) {
      if (e.patient === pseudonym) return { patientRef: e.patientRef, source: 'enrolled devices' };
    }
  }
  if (!opts.create && !existsSync(join(dir, PATIENT_REF_KEY_FILE))) return undefined;
  return { patientRef: patientRefOf(pseudonym, loadOrCreatePatientRefKey(dir).key), source: 'patient-ref key' };
}

/** True when `pseudonym` is the `ref-…` fallback pseudonym of `patientRef`. */
export function isFallbackOf(pseudonym: string, patientRef: string): boolean {
  try {
    return fallbackPseudonym(patientRef) === pseudonym;
  } catch {
    return false;
  }
}
